package engine_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/redcap"
)

// recordingREDCap keeps the rows each export returned.
type recordingREDCap struct {
	engine.REDCap
	rows []redcap.Row
}

func (r *recordingREDCap) ExportRecords(ctx context.Context, p redcap.ExportParams) ([]redcap.Row, error) {
	rows, err := r.REDCap.ExportRecords(ctx, p)
	r.rows = append(r.rows, rows...)
	return rows, err
}

// TestSafetyExportOnlyRuleFields: an export asks REDCap (the simulator, on
// the wire) for the record id and the fields the rules, templates and
// replies use — never the whole record — and no other column comes back
// than those, REDCap's own row keys and the checkbox columns of a field
// asked for. Fields of the demo's projects no rule reads (such as
// sleep_hours) are never read.
func TestSafetyExportOnlyRuleFields(t *testing.T) {
	f := newFixture(t)
	rec := map[string]*recordingREDCap{}
	for name, c := range f.e.REDCap {
		rec[name] = &recordingREDCap{REDCap: c}
		f.e.REDCap[name] = rec[name]
	}
	before := len(f.env.REDCap.Calls())
	if _, err := f.e.Export(f.ctx); err != nil {
		t.Fatal(err)
	}
	var exports [][]string
	for _, c := range f.env.REDCap.Calls()[before:] {
		if c.Content != "record" || (c.Action != "" && c.Action != "export") {
			continue
		}
		if !c.Params.Has("fields[0]") {
			t.Errorf("a record export without fields[] (the whole record): %v", c.Params)
			continue
		}
		var fields []string
		for i := 0; c.Params.Has("fields[" + strconv.Itoa(i) + "]"); i++ {
			fields = append(fields, c.Params.Get("fields["+strconv.Itoa(i)+"]"))
		}
		exports = append(exports, fields)
	}
	// Each export asks for one project's record ids (to list them), then
	// for its records in batches: always a subset of that project's
	// fields, and the whole set at least once.
	projects := f.e.Study.Config.Projects
	wants := map[string][]string{}
	for _, p := range projects {
		want := append([]string{f.e.Dicts[p.Name].RecordID()}, f.e.Study.Fields(p.Name)...)
		slices.Sort(want)
		wants[p.Name] = slices.Compact(want)
	}
	subset := func(a, b []string) bool {
		for _, x := range a {
			if !slices.Contains(b, x) {
				return false
			}
		}
		return true
	}
	full := map[string]bool{}
	for _, e := range exports {
		got := slices.Sorted(slices.Values(e))
		ok := false
		for name, want := range wants {
			if subset(got, want) {
				ok = true
				full[name] = full[name] || slices.Equal(got, want)
			}
		}
		if !ok {
			t.Errorf("an export asked for %v: more than any project's rules use (%v)", got, wants)
		}
	}
	for _, p := range projects {
		want := wants[p.Name]
		if !full[p.Name] {
			t.Errorf("project %s: no export asked for exactly %v", p.Name, want)
		}
		unused := 0
		for _, fld := range f.e.Dicts[p.Name].Fields {
			if !slices.Contains(want, fld.Name) {
				unused++
			}
		}
		if unused == 0 {
			t.Errorf("project %s: every dictionary field is used; the test proves nothing", p.Name)
		}
		allowed := func(col string) bool {
			switch col {
			case "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance":
				return true
			}
			if base, _, ok := strings.Cut(col, "___"); ok {
				col = base // a checkbox's column
			}
			return slices.Contains(want, col)
		}
		if len(rec[p.Name].rows) == 0 {
			t.Fatalf("project %s: no rows exported", p.Name)
		}
		for _, row := range rec[p.Name].rows {
			for col := range row {
				if !allowed(col) {
					t.Errorf("project %s: column %q came back though no rule uses it", p.Name, col)
				}
			}
		}
	}
	for _, sensitive := range []string{"sleep_hours"} {
		for _, e := range exports {
			if slices.Contains(e, sensitive) {
				t.Errorf("export asked for %s, which no rule reads", sensitive)
			}
		}
	}
}
