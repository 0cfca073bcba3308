package rules

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules/logic"
)

// testTable is a Table written out by hand: rows list their values by
// column place, nil for a column the row lacks; short rows lack the last
// columns.
type testTable struct {
	names []string
	rows  [][]*string
}

func (t *testTable) Columns() []string { return t.names }
func (t *testTable) Len() int          { return len(t.rows) }

// Row lays the row's values out in reverse column order, so that offsets,
// not column order, say where each value lies.
func (t *testTable) Row(i int) (string, []uint32) {
	vals := t.rows[i]
	offs := make([]uint32, 2*len(vals))
	var text string
	for c := len(vals) - 1; c >= 0; c-- {
		if vals[c] == nil {
			offs[2*c], offs[2*c+1] = Absent, Absent
			continue
		}
		offs[2*c] = uint32(len(text))
		text += *vals[c]
		offs[2*c+1] = uint32(len(text))
	}
	return text, offs
}

// maps is the table's rows as maps.
func (t *testTable) maps() []map[string]string {
	var out []map[string]string
	for _, vals := range t.rows {
		m := map[string]string{}
		for c, v := range vals {
			if v != nil {
				m[t.names[c]] = *v
			}
		}
		out = append(out, m)
	}
	return out
}

func str(s string) *string { return &s }

// flatRecord is a record as plain values, to compare groupings.
type flatRecord struct {
	ID   string
	Rows []flatRow
}

type flatRow struct {
	Event, Instrument string
	Instance          int
	Values            map[string]string
}

func flatten(recs []*Record) []flatRecord {
	var out []flatRecord
	for _, rec := range recs {
		fr := flatRecord{ID: rec.ID}
		for _, r := range rec.Rows {
			vals := map[string]string{}
			cols := r.Columns()
			if len(cols) != len(slices.Compact(slices.Sorted(slices.Values(cols)))) {
				panic("a column listed twice")
			}
			for _, c := range cols {
				v, ok := r.Value(c)
				if !ok {
					panic("a listed column without a value: " + c)
				}
				vals[c] = v
			}
			fr.Rows = append(fr.Rows, flatRow{r.Event, r.RepeatInstrument, r.Instance, vals})
		}
		out = append(out, fr)
	}
	return out
}

// GroupTable groups a table exactly as GroupRows groups the same rows as
// maps, and both keep every value: records in the order they first appear,
// the pseudo-columns read, columns a row lacks absent.
func TestGroupTableMatchesGroupRows(t *testing.T) {
	cases := []struct {
		name  string
		table *testTable
		want  []flatRecord
	}{
		{"empty", &testTable{names: []string{"record_id"}}, nil},
		{"classic", &testTable{
			names: []string{"record_id", "sms_ok", "phone"},
			rows: [][]*string{
				{str("1"), str("1"), str("+13125550100")},
				{str("2"), str(""), str("")},
			}},
			[]flatRecord{
				{"1", []flatRow{{"", "", 0, map[string]string{"record_id": "1", "sms_ok": "1", "phone": "+13125550100"}}}},
				{"2", []flatRow{{"", "", 0, map[string]string{"record_id": "2", "sms_ok": "", "phone": ""}}}},
			}},
		{"longitudinal, repeating, interleaved", &testTable{
			names: []string{"record_id", ColEvent, ColRepeatInstrument, ColRepeatInstance, "bp", "note"},
			rows: [][]*string{
				{str("7"), str("base_arm_1"), str(""), str(""), str(""), str("café")},
				{str("3"), str("base_arm_1"), str(""), str(""), str(""), str("x")},
				{str("7"), str("base_arm_1"), str("vitals"), str(" 2"), str("120"), str("")},
				{str("7"), str("visit_arm_1"), str(""), str("1"), str(""), str("v")},
			}},
			[]flatRecord{
				{"7", []flatRow{
					{"base_arm_1", "", 0, map[string]string{"record_id": "7", ColEvent: "base_arm_1", ColRepeatInstrument: "", ColRepeatInstance: "", "bp": "", "note": "café"}},
					{"base_arm_1", "vitals", 2, map[string]string{"record_id": "7", ColEvent: "base_arm_1", ColRepeatInstrument: "vitals", ColRepeatInstance: " 2", "bp": "120", "note": ""}},
					{"visit_arm_1", "", 1, map[string]string{"record_id": "7", ColEvent: "visit_arm_1", ColRepeatInstrument: "", ColRepeatInstance: "1", "bp": "", "note": "v"}},
				}},
				{"3", []flatRow{{"base_arm_1", "", 0, map[string]string{"record_id": "3", ColEvent: "base_arm_1", ColRepeatInstrument: "", ColRepeatInstance: "", "bp": "", "note": "x"}}}},
			}},
		{"rows with differing columns", &testTable{
			names: []string{"record_id", "a", "b", "c"},
			rows: [][]*string{
				{str("1"), str("x")},
				{str("1"), nil, str("y")},
				{nil, str("z"), nil, str("w")},
				{str("2"), str(""), nil, nil},
			}},
			[]flatRecord{
				{"1", []flatRow{
					{"", "", 0, map[string]string{"record_id": "1", "a": "x"}},
					{"", "", 0, map[string]string{"record_id": "1", "b": "y"}},
				}},
				{"", []flatRow{{"", "", 0, map[string]string{"a": "z", "c": "w"}}}},
				{"2", []flatRow{{"", "", 0, map[string]string{"record_id": "2", "a": ""}}}},
			}},
	}
	for _, c := range cases {
		got := flatten(GroupTable("record_id", c.table))
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: GroupTable = %+v\nwant %+v", c.name, got, c.want)
		}
		if rows := flatten(GroupRows("record_id", c.table.maps())); !reflect.DeepEqual(rows, c.want) {
			t.Errorf("%s: GroupRows = %+v\nwant %+v", c.name, rows, c.want)
		}
		for _, rec := range GroupTable("record_id", c.table) {
			for _, r := range rec.Rows {
				if v, ok := r.Value("no_such_column"); ok || v != "" {
					t.Errorf("%s: a column the table lacks = %q, %v", c.name, v, ok)
				}
			}
		}
	}
}

// A condition reads a column a row lacks as the scope does (the base row's
// value on an instance row), not as a blank of its own.
func TestLookupAtAbsentColumn(t *testing.T) {
	tab := &testTable{
		names: []string{"record_id", ColRepeatInstrument, ColRepeatInstance, "consent"},
		rows: [][]*string{
			{str("1"), str(""), str(""), str("1")},
			{str("1"), str("bp"), str("1")},
			{str("2"), str(""), str("")},
		},
	}
	rec := GroupTable("record_id", tab)[0]
	ref := logic.Ref{Field: "consent"}
	at := plainColumn(rec.Rows[1].cols, ref)
	if at < 0 {
		t.Fatal("consent is not a plain column of the table")
	}
	scope := NewScope(rec, rec.Rows[1], time.Time{}, nil)
	if v, ok := lookupAt(scope, ref, at); v != "1" || !ok {
		t.Errorf("consent on the instance row = %q, %v; want the base row's \"1\", true", v, ok)
	}
	other := GroupTable("record_id", tab)[1]
	if v, ok := lookupAt(NewScope(other, other.Rows[0], time.Time{}, nil), ref, at); v != "" || ok {
		t.Errorf("consent on a row without it = %q, %v; want \"\", false", v, ok)
	}
}
