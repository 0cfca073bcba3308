package engine_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
	"github.com/nudge-study/nudge/rules/dict"
)

// offlineDemo connects the fixture's study to the demo's records files
// instead of REDCap.
func offlineDemo(t *testing.T, f *fixture) *engine.Engine {
	t.Helper()
	dicts, err := engine.LoadDictionaries(f.e.Study.Config)
	if err != nil {
		t.Fatal(err)
	}
	srcs := map[string]*engine.OfflineRecords{}
	for _, p := range []string{"site_a", "site_b"} {
		rows, err := redcaptest.ReadRecords(filepath.Join("..", "testdata", "demo", "redcap", p+".records.json"))
		if err != nil {
			t.Fatal(err)
		}
		srcs[p] = &engine.OfflineRecords{Rows: rows}
	}
	e, err := engine.NewOffline(f.e.Study, dicts, srcs, engine.Options{Clock: f.clk, DBPath: filepath.Join(t.TempDir(), "offline.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// decisions lists a plan's verdicts in a comparable form.
// surveyLinkRE matches a survey link of the REDCap simulator.
var surveyLinkRE = regexp.MustCompile(`https://redcap\.example\.edu/surveys/\?s=[A-Za-z0-9]{10}`)

func decisions(p *engine.Plan) []string {
	out := make([]string, len(p.Decisions))
	for i, d := range p.Decisions {
		s := fmt.Sprintf("%s %s %s %s %d %v %s %q", d.Rule, d.Project, d.Record, d.Event, d.Instance, d.Selected, d.Outcome, d.Reason)
		if m := d.Message; m != nil {
			s += fmt.Sprintf(" %s %s %q %q %q %s %s %d", m.Key, m.To, m.Subject, m.Body, m.HTML, m.NotBefore, m.ExpiresAt, m.Segments)
		}
		out[i] = s
	}
	return out
}

// The offline path (preview --records, test rules) decides exactly what
// `nudge run` decides from REDCap over the same records: every verdict,
// reason, text and time, at several moments of the study.
func TestOfflinePlanMatchesREDCap(t *testing.T) {
	f := newFixture(t)
	off := offlineDemo(t, f)
	loc := demo.StudyTime.Location()
	for _, at := range []time.Time{
		time.Date(2026, 11, 23, 7, 0, 0, 0, loc),
		time.Date(2026, 11, 23, 10, 0, 0, 0, loc),
		time.Date(2026, 11, 25, 22, 30, 0, 0, loc),
	} {
		f.clk.Set(at)
		online, err := f.e.Export(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		want, err := f.e.Plan(f.ctx, online, at, engine.PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		offline, err := off.Export(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := off.Plan(f.ctx, offline, at, engine.PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, g := decisions(want), decisions(got)
		// Offline, survey links are a placeholder of a real link's length.
		links := 0
		for i := range w {
			if surveyLinkRE.MatchString(w[i]) {
				links++
				w[i] = surveyLinkRE.ReplaceAllString(w[i], engine.PreviewSurveyLink)
			}
		}
		if links == 0 && at.Hour() == 7 {
			t.Errorf("at %s: no real survey link in REDCap's plan", at)
		}
		if len(w) < 50 {
			t.Fatalf("at %s: only %d decisions", at, len(w))
		}
		for i := range max(len(w), len(g)) {
			if i >= len(w) || i >= len(g) || w[i] != g[i] {
				t.Fatalf("at %s, decision %d differs:\nREDCap:  %s\noffline: %s", at, i, item(w, i), item(g, i))
			}
		}
	}
}

func item(xs []string, i int) string {
	if i < len(xs) {
		return xs[i]
	}
	return "(none)"
}

// The offline export answers as REDCap's: only the columns asked for, a
// checkbox field as its field___code columns, every column on every row
// (blank where the row has none), the event and repeat columns kept.
func TestOfflineExportShape(t *testing.T) {
	d := dict.New([]dict.Field{
		{Name: "pid", Form: "contact", Type: "text"},
		{Name: "cell", Form: "contact", Type: "text"},
		{Name: "pref", Form: "contact", Type: "checkbox", Choices: []dict.Choice{{Code: "1", Label: "SMS"}, {Code: "2", Label: "Email"}}},
		{Name: "secret", Form: "contact", Type: "text"},
	})
	o := &engine.OfflineRecords{Dict: d, Rows: []map[string]string{
		{"pid": "1", "redcap_event_name": "enrollment_arm_1", "cell": "+14155550100", "pref___1": "1", "secret": "x"},
		{"pid": "1", "redcap_event_name": "week_1_arm_1", "redcap_repeat_instrument": "diary", "redcap_repeat_instance": "2"},
		{"pid": "2", "redcap_event_name": "enrollment_arm_1"},
	}}
	rows, err := o.ExportRecords(context.Background(), redcap.ExportParams{Fields: []string{"pid", "pref", "contact_complete"}, Records: []string{"1"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []redcap.Row{
		{"pid": "1", "redcap_event_name": "enrollment_arm_1", "redcap_repeat_instrument": "", "redcap_repeat_instance": "", "pref___1": "1", "pref___2": "", "contact_complete": ""},
		{"pid": "1", "redcap_event_name": "week_1_arm_1", "redcap_repeat_instrument": "diary", "redcap_repeat_instance": "2", "pref___1": "", "pref___2": "", "contact_complete": ""},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("export:\n got %v\nwant %v", rows, want)
	}
	info, _ := o.Project(context.Background())
	if !info.Longitudinal || !info.HasRepeating {
		t.Errorf("project %+v", info)
	}
}

// TestSafetyOfflineNeverWritesREDCap: records given offline are never
// written back: the import is refused.
func TestSafetyOfflineNeverWritesREDCap(t *testing.T) {
	o := &engine.OfflineRecords{Dict: dict.New([]dict.Field{{Name: "pid", Form: "f", Type: "text"}})}
	if _, err := o.ImportRecords(context.Background(), []redcap.Row{{"pid": "1"}}); !errors.Is(err, engine.ErrOffline) {
		t.Errorf("import: %v, want ErrOffline", err)
	}
}
