package engine

import (
	"context"
	"reflect"
	"testing"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/rules/dict"
)

// The export's tables mark a column a row lacks as the rules read it.
func TestTableAbsentIsRulesAbsent(t *testing.T) {
	if redcap.Absent != rules.Absent {
		t.Fatalf("redcap.Absent = %d, rules.Absent = %d", redcap.Absent, rules.Absent)
	}
}

// A REDCap without ExportTable is exported through ExportRecords, and its
// records group as the rows do.
func TestExportTableFallback(t *testing.T) {
	d := dict.New([]dict.Field{{Name: "pid", Form: "f", Type: "text"}, {Name: "cell", Form: "f", Type: "text"}})
	o := &OfflineRecords{Dict: d, Rows: []map[string]string{
		{"pid": "2", "cell": "+14155550100"},
		{"pid": "1", "cell": ""},
		{"pid": "2", "cell": "x", "redcap_repeat_instrument": "f", "redcap_repeat_instance": "1"},
	}}
	p := redcap.ExportParams{Fields: []string{"pid", "cell"}}
	tab, err := exportTable(context.Background(), o, p)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := o.ExportRecords(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tab.Rows(), rows) {
		t.Errorf("table rows %v, want %v", tab.Rows(), rows)
	}
	flat := make([]map[string]string, len(rows))
	for i, r := range rows {
		flat[i] = r
	}
	got, want := rules.GroupTable("pid", tab), rules.GroupRows("pid", flat)
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID || len(got[i].Rows) != len(want[i].Rows) {
			t.Errorf("record %d = %s with %d rows, want %s with %d", i, got[i].ID, len(got[i].Rows), want[i].ID, len(want[i].Rows))
		}
	}
}
