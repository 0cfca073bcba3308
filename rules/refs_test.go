package rules

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
	"github.com/nudge-study/nudge/templates"
)

// lookupOnly hides a Scope's RefSource methods: templates render it
// through Lookup alone, the slow path.
type lookupOnly struct{ s *Scope }

func (l lookupOnly) Lookup(r logic.Ref) (string, bool) { return l.s.Lookup(r) }

// linked is a scope with survey links, as the engine's linkedScope is:
// it keeps the Scope's RefSource methods.
type linked struct{ *Scope }

func (l linked) SurveyLink(s templates.SurveyRef) (string, error) {
	return fmt.Sprintf("https://redcap.example.edu/surveys/?s=%s-%s-%s-%s", l.Record().ID, s.Instrument, s.Event, s.Instance), nil
}

// linked reads through the fast path, as the engine's linkedScope does.
var _ templates.RefSource = linked{}

// linkedLookupOnly is linked through Lookup alone.
type linkedLookupOnly struct {
	lookupOnly
	l linked
}

func (l linkedLookupOnly) SurveyLink(s templates.SurveyRef) (string, error) { return l.l.SurveyLink(s) }

// refsDict is the data dictionary of refsRecords.
func refsDict() *dict.Dictionary {
	return dict.New([]dict.Field{
		{Name: "record_id", Form: "enrol", Type: "text"},
		{Name: "first_name", Form: "enrol", Type: "text"},
		{Name: "html_name", Form: "enrol", Type: "text"},
		{Name: "blank_name", Form: "enrol", Type: "text"},
		{Name: "visit_date", Form: "enrol", Type: "text", Validation: "date_ymd"},
		{Name: "arm", Form: "enrol", Type: "radio", Choices: []dict.Choice{{Code: "1", Label: "Walking"}, {Code: "2", Label: "Yoga & Tai chi"}}},
		{Name: "site", Form: "enrol", Type: "dropdown", Choices: []dict.Choice{{Code: "bos", Label: "Boston"}, {Code: "sfo", Label: "San Francisco"}}},
		{Name: "sms_ok", Form: "enrol", Type: "yesno"},
		{Name: "fasting", Form: "enrol", Type: "truefalse"},
		{Name: "race", Form: "enrol", Type: "checkbox", Choices: []dict.Choice{{Code: "1", Label: "Asian"}, {Code: "2", Label: "Black"}, {Code: "3", Label: "White"}}},
		{Name: "bp_sys", Form: "bp", Type: "text"},
	})
}

// refsRecords are records of a longitudinal project as an export gives
// them: record 1's rows share one column list; record 2's rows have
// another (no site column), so a template is read on two column lists.
func refsRecords() []*Record {
	row := func(id, event, instrument, instance string, kv ...string) map[string]string {
		m := exportRow(id, event, instrument, instance)
		for _, c := range []string{"first_name", "html_name", "blank_name", "visit_date", "arm", "site", "sms_ok", "fasting",
			"race___1", "race___2", "race___3", "bp_sys"} {
			m[c] = ""
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	one := GroupRows("record_id", []map[string]string{
		row("1", "baseline_arm_1", "", "", "first_name", "Ana", "html_name", `<b>Ana</b> & "co"`, "blank_name", "  ",
			"visit_date", "2026-03-02", "arm", "2", "site", "sfo", "sms_ok", "1", "fasting", "0",
			"race___1", "1", "race___2", "0", "race___3", "1"),
		row("1", "baseline_arm_1", "bp", "1", "bp_sys", "119"),
		row("1", "baseline_arm_1", "bp", "2", "bp_sys", "128", "first_name", "Anita"),
		row("1", "visit_arm_1", "", "1", "visit_date", "2026-04-06", "arm", "1"),
		row("1", "visit_arm_1", "", "2", "visit_date", "2026-05-04"),
	})
	two := row("2", "baseline_arm_1", "", "", "first_name", "Ben", "visit_date", "2026-03-09", "arm", "1",
		"sms_ok", "0", "fasting", "1", "race___2", "1", "race___1", "0", "race___3", "0", "arm", "7")
	delete(two, "site")
	return append(one, GroupRows("record_id", []map[string]string{two})...)
}

// refsTemplates are templates that pipe every kind of tag.
var refsTemplates = []string{
	"Hi [first_name]!",
	"[first_name]",
	"no tags at all",
	"Arm: [arm] / [arm:label] / [arm:value]",
	"Site: [site] ([site:value])",
	"OK? [sms_ok]; fasting? [fasting] ([sms_ok:value])",
	"Race: [race] | [race:checked] | not [race:unchecked] | codes [race:value]",
	"Black? [race(2)] White? [race(3)]",
	"Visit [visit_arm_1][visit_date|none] then [visit_arm_1][visit_date][2]",
	"BP [bp_sys][1] last [bp_sys][last-instance] now [bp_sys|-] before [bp_sys|-][previous-instance]",
	"Record [record-name] at [event-name], #[current-instance]",
	"Hi [nickname|there], [blank_name|friend], [first_name|there] [middle_name|]!",
	"On [week_1_arm_1][visit_date:value|soon]",
	"Hi [first_name:hideunderscore], [html_name]",
	"Take [survey-url:baseline] or [survey-link:diary:Go][current-instance] or [visit_arm_1][survey-link:visit][2]",
	"[blank_name]",
	"[nickname]",
	"Why [arm] [first_name:checked]",
	"Mixed [first_name] [race] [arm:value] [sms_ok] [fasting] [race:unchecked] [visit_date] [record-name] [bp_sys|?] " +
		"[race(1)] [site|?] [html_name] [first_name] [race:value] [arm] [visit_date] [sms_ok:value] [first_name]",
}

// TestRenderRefSourceAsLookup renders templates of every kind of tag on
// every row, text and HTML, through a Scope's RefSource methods (the fast
// path) and through Lookup alone, and wants the same text or the same
// error.
func TestRenderRefSourceAsLookup(t *testing.T) {
	d := refsDict()
	recs := refsRecords()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, src := range refsTemplates {
		for _, html := range []bool{false, true} {
			parse := templates.Parse
			if html {
				parse = templates.ParseHTML
			}
			text, err := parse("t.txt", src)
			if err != nil {
				t.Fatalf("Parse %q: %v", src, err)
			}
			// Rows of both column lists in turn, twice: the placement
			// of the references changes with the column list.
			for round := 0; round < 2; round++ {
				for _, rec := range recs {
					for _, row := range rec.Rows {
						scope := NewScope(rec, row, now, nil)
						name := fmt.Sprintf("%q html=%v record %s%s", src, html, rec.ID, rowLabel(row))
						fast, fastErr := text.Render(linked{scope}, d)
						slow, slowErr := text.Render(linkedLookupOnly{lookupOnly{scope}, linked{scope}}, d)
						if fast != slow || fmt.Sprint(fastErr) != fmt.Sprint(slowErr) {
							t.Errorf("%s:\nfast %q, %v\nslow %q, %v", name, fast, fastErr, slow, slowErr)
						}
						fast, fastErr = text.Render(scope, d)
						slow, slowErr = text.Render(lookupOnly{scope}, d)
						if fast != slow || fmt.Sprint(fastErr) != fmt.Sprint(slowErr) {
							t.Errorf("%s without links:\nfast %q, %v\nslow %q, %v", name, fast, fastErr, slow, slowErr)
						}
						fast, fastErr = text.Render(scope, nil)
						slow, slowErr = text.Render(lookupOnly{scope}, nil)
						if fast != slow || fmt.Sprint(fastErr) != fmt.Sprint(slowErr) {
							t.Errorf("%s without dictionary:\nfast %q, %v\nslow %q, %v", name, fast, fastErr, slow, slowErr)
						}
					}
				}
			}
		}
	}
}

// TestRenderRefSource checks what the fast path renders on chosen rows,
// so that it and the slow path cannot be wrong alike.
func TestRenderRefSource(t *testing.T) {
	d := refsDict()
	recs := refsRecords()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	base, bp1, bp2, visit2 := recs[0].Rows[0], recs[0].Rows[1], recs[0].Rows[2], recs[0].Rows[4]
	tests := []struct {
		name, src string
		html      bool
		rec       *Record
		row       *Row
		want      string
	}{
		{"plain", "Hi [first_name]!", false, recs[0], base, "Hi Ana!"},
		{"instance blank falls back to the base row", "Hi [first_name]! BP [bp_sys]", false, recs[0], bp1, "Hi Ana! BP 119"},
		{"instance value", "Hi [first_name]! BP [bp_sys]", false, recs[0], bp2, "Hi Anita! BP 128"},
		{"repeating event blank falls back to instance 1", "Arm [arm] on [visit_date]", false, recs[0], visit2, "Arm Walking on 2026-05-04"},
		{"labels", "[arm] [site] [sms_ok] [fasting] [arm:value]", false, recs[0], base, "Yoga & Tai chi San Francisco Yes False 2"},
		{"checkbox", "[race] | [race:unchecked] | [race:value] | [race(2)]", false, recs[0], base, "Asian, White | Black | 1, 3 | 0"},
		{"other column list", "[first_name] [race] [site|no site] [fasting]", false, recs[1], recs[1].Rows[0], "Ben Black no site True"},
		{"html escapes values only", "<p>[html_name] & [arm|x]</p>", true, recs[0], base, "<p>&lt;b&gt;Ana&lt;/b&gt; &amp; &#34;co&#34; & Yoga &amp; Tai chi</p>"},
		{"smart and instances", "[record-name] [event-name] [bp_sys][last-instance] [bp_sys][previous-instance]", false, recs[0], bp2, "1 baseline_arm_1 128 119"},
		{"link", "[survey-url:diary][current-instance]", false, recs[0], bp2, "https://redcap.example.edu/surveys/?s=1-diary--current-instance"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := templates.Parse
			if tt.html {
				parse = templates.ParseHTML
			}
			text, err := parse("t.txt", tt.src)
			if err != nil {
				t.Fatal(err)
			}
			got, err := text.Render(linked{NewScope(tt.rec, tt.row, now, nil)}, d)
			if err != nil || got != tt.want {
				t.Errorf("Render = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestRefListLookup reads every kind of reference through a RefList on
// rows of two column lists and of hand-built rows, and wants what
// Scope.Lookup gives.
func TestRefListLookup(t *testing.T) {
	refs := []logic.Ref{
		{Field: "first_name"}, {Field: "race", Code: "2"}, {Field: "bp_sys"}, {Field: "site"},
		{Field: "visit_date", Event: "visit_arm_1"}, {Field: "bp_sys", Instance: "1"},
		{Field: "race", Modifier: logic.ModChecked}, {Field: "record-name"}, {Field: "current-instance"},
		{Field: "nickname"}, {Field: "blank_name"},
	}
	l := NewRefList(refs)
	if l.Len() != len(refs) {
		t.Fatalf("Len = %d", l.Len())
	}
	hand := &Record{ID: "3", Rows: []*Row{{Event: "baseline_arm_1", Values: map[string]string{"first_name": "Cy", "race___2": "1"}}}}
	recs := append(refsRecords(), hand)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for round := 0; round < 2; round++ {
		for _, rec := range recs {
			for _, row := range rec.Rows {
				scope := NewScope(rec, row, now, nil)
				for i, ref := range refs {
					if l.Ref(i) != ref {
						t.Fatalf("Ref(%d) = %v", i, l.Ref(i))
					}
					v, ok := l.Lookup(scope, i)
					wv, wok := scope.Lookup(ref)
					if v != wv || ok != wok {
						t.Errorf("record %s%s %s: RefList %q %v, Lookup %q %v", rec.ID, rowLabel(row), ref, v, ok, wv, wok)
					}
				}
			}
		}
	}
}

// TestRenderRefSourceConcurrent renders one template from two goroutines
// on rows of two column lists (run with -race).
func TestRenderRefSourceConcurrent(t *testing.T) {
	d := refsDict()
	recs := refsRecords()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	text, err := templates.Parse("t.txt", "Hi [first_name|you], [arm] [race|none] [site|-] [bp_sys|-]")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				rec := recs[(i+g)%len(recs)]
				row := rec.Rows[i%len(rec.Rows)]
				scope := NewScope(rec, row, now, nil)
				fast, fastErr := text.Render(scope, d)
				slow, slowErr := text.Render(lookupOnly{scope}, d)
				if fast != slow || fmt.Sprint(fastErr) != fmt.Sprint(slowErr) {
					t.Errorf("record %s%s: fast %q, %v; slow %q, %v", rec.ID, rowLabel(row), fast, fastErr, slow, slowErr)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkRenderScope renders an SMS and an email's parts on an export's
// row, through a Scope's RefSource methods and through Lookup alone.
func BenchmarkRenderScope(b *testing.B) {
	d := refsDict()
	rec := refsRecords()[0]
	scope := NewScope(rec, rec.Rows[0], time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), nil)
	var texts []*templates.Text
	for _, src := range []string{
		"Hi [first_name], your next study visit is on [visit_date|your scheduled day]. Reply STOP to opt out.",
		"Your visit on [visit_date]",
		"Dear [first_name],\n\nWe look forward to seeing you on [visit_date] ([arm:label] arm). Race: [race].",
	} {
		text, err := templates.Parse("t.txt", src)
		if err != nil {
			b.Fatal(err)
		}
		texts = append(texts, text)
	}
	for _, bm := range []struct {
		name string
		src  templates.Source
	}{{"RefSource", scope}, {"Lookup", lookupOnly{scope}}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, text := range texts {
					if _, err := text.Render(bm.src, d); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
