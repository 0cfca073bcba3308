package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// TestPlanEachMatchesPlan checks that a streamed plan decides exactly as
// Plan does: the same decisions with the same reasons and messages, Plan's
// in rule order, and a pass's counts (Plan.keep) summing to Plan's.
func TestPlanEachMatchesPlan(t *testing.T) {
	e, study, recs, snaps, now := benchPlanFixture(t, 600)
	recs[8].Rows[0].Values["phone"] = "not a number" // a skipped row (selected by welcome)
	ctx := context.Background()
	plan, err := e.Plan(ctx, snaps, now, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	describe := func(d *Decision) string {
		s := fmt.Sprintf("%s/%s/%s/%d: %v %s %q", d.Rule, d.Record, d.Event, d.Instance, d.Selected, d.Outcome, d.Reason)
		if d.Message != nil {
			s += fmt.Sprintf(" %s %s %q %s", d.Message.Key, d.Message.To, d.Message.Body, d.Message.NotBefore)
		}
		return s
	}
	want := map[string]int{}
	rule := 0
	for i := range plan.Decisions {
		d := &plan.Decisions[i]
		want[describe(d)]++
		for rule < len(study.Rules) && study.Rules[rule].Name != d.Rule {
			rule++
		}
		if rule == len(study.Rules) {
			t.Fatalf("decision %d (%s) is out of rule order", i, describe(d))
		}
	}
	kept := &Plan{}
	n := 0
	err = e.PlanEach(ctx, snaps, now, PlanOptions{}, func(d *Decision) error {
		n++
		if want[describe(d)] == 0 {
			t.Errorf("streamed decision %s is not Plan's", describe(d))
		}
		want[describe(d)]--
		kept.keep(e, d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(plan.Decisions) {
		t.Errorf("%d decisions streamed, Plan has %d", n, len(plan.Decisions))
	}
	if got, want := kept.Summaries(e), plan.Summaries(e); !reflect.DeepEqual(got, want) {
		t.Errorf("summaries of the streamed plan:\n%+v\nwant\n%+v", got, want)
	}
	skipped := 0
	for _, d := range kept.Decisions {
		if d.Outcome != Skipped {
			t.Errorf("a pass kept %s", describe(&d))
		}
		skipped++
	}
	if skipped == 0 {
		t.Error("no skipped decision kept")
	}
}

// TestPlanEachKeepsRecordOrder checks that a streamed plan, worked out on
// several cores in chunks of records, hands its decisions on record by
// record, each record's in rule order, as one planner alone would.
func TestPlanEachKeepsRecordOrder(t *testing.T) {
	e, study, recs, snaps, now := benchPlanFixture(t, 3*planChunk+7)
	place := map[string]int{}
	for i, r := range study.Rules {
		place[r.Name] = i
	}
	var got []string
	err := e.PlanEach(context.Background(), snaps, now, PlanOptions{}, func(d *Decision) error {
		got = append(got, d.Record+"/"+d.Rule)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, rec := range recs {
		for _, r := range study.Rules {
			if r.Enabled && !r.OnSave {
				want = append(want, rec.ID+"/"+r.Name)
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		n := 0
		for n < len(got) && n < len(want) && got[n] == want[n] {
			n++
		}
		t.Fatalf("%d decisions streamed, want %d; the first that differs is number %d", len(got), len(want), n)
	}
}

// TestPlanUnexplainedDecidesTheSame checks that a plan leaving decisions
// unexplained (as a pass plans) decides exactly as one that explains
// them: only the reasons of decisions not skipped are blank.
func TestPlanUnexplainedDecidesTheSame(t *testing.T) {
	study, err := rules.Load(filepath.Join("testdata", "bench", "nudge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e := benchEngineFor(t, study)
	recs := benchRecords(5000)                       // more distinct emails than a Pass remembers verdicts for
	recs[8].Rows[0].Values["phone"] = "not a number" // a skipped row (selected by welcome)
	snaps := map[string]*Snapshot{"main": {Project: "main", Records: recs}}
	now := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	ctx := context.Background()
	plan, err := e.Plan(ctx, snaps, now, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bare, err := e.Plan(ctx, snaps, now, PlanOptions{Unexplained: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(bare.Decisions) != len(plan.Decisions) {
		t.Fatalf("%d decisions unexplained, %d explained", len(bare.Decisions), len(plan.Decisions))
	}
	excluded, skipped := 0, 0
	for i := range plan.Decisions {
		want, got := plan.Decisions[i], bare.Decisions[i]
		if want.Outcome == Excluded {
			excluded++
			if want.Reason == "" {
				t.Fatalf("excluded decision %d: no reason explained", i)
			}
		}
		if want.Outcome == Skipped {
			skipped++
		} else {
			if got.Reason != "" {
				t.Fatalf("decision %d (%s): reason %q unexplained", i, got.Outcome, got.Reason)
			}
			want.Reason = ""
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decision %d unexplained:\n%+v\nexplained:\n%+v", i, got, want)
		}
	}
	if excluded == 0 || skipped == 0 {
		t.Fatalf("%d decisions excluded, %d skipped", excluded, skipped)
	}
}

// TestSafetyPassEnqueuesWhatItPlanned checks that a pass stores exactly
// the messages Plan plans, each whole: the planner reuses its messages
// chunk after chunk, so a pass keeping the planner's messages instead of
// copies would store some twice (under one key: the outbox keeps one) and
// lose others, or store one participant's text to another's number. The
// records span many chunks and enqueue batches, with a few skipped; the
// pass plans on one core (as with caps), then on every core.
func TestSafetyPassEnqueuesWhatItPlanned(t *testing.T) {
	for _, cores := range []int{1, runtime.GOMAXPROCS(0)} {
		t.Run(fmt.Sprintf("%d cores", cores), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(cores))
			testPassEnqueuesWhatItPlanned(t)
		})
	}
}

func testPassEnqueuesWhatItPlanned(t *testing.T) {
	e, study, recs, snaps, now := benchPlanFixture(t, max(12*planChunk, 3000)+7)
	recs[8].Rows[0].Values["phone"] = "not a number"
	ctx := context.Background()
	plan, err := e.Plan(ctx, snaps, now, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, m := range plan.Messages() {
		want[m.Key] = describeMessage(m)
	}
	if len(want) < 3*enqueueBatch {
		t.Fatalf("only %d messages planned: the test needs several enqueue batches", len(want))
	}
	id, err := e.Store.StartRun(ctx, "run", now)
	if err != nil {
		t.Fatal(err)
	}
	res := &RunResult{RunID: id}
	if err := e.planAndEnqueue(ctx, snaps, now, PlanOptions{}, res); err != nil {
		t.Fatal(err)
	}
	if res.Enqueued != len(want) {
		t.Errorf("the pass enqueued %d messages, Plan planned %d", res.Enqueued, len(want))
	}
	got := 0
	for _, r := range study.Rules {
		ms, err := e.Store.ByRule(ctx, r.Name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ms {
			m := &ms[i]
			got++
			if m.RunID != res.RunID {
				t.Errorf("message %s stored with run %d, want %d", m.Key, m.RunID, res.RunID)
			}
			if w, ok := want[m.Key]; !ok {
				t.Errorf("message %s stored, not planned", m.Key)
			} else if d := describeMessage(m); d != w {
				t.Errorf("message %s stored as\n%s\nplanned as\n%s", m.Key, d, w)
			}
		}
	}
	if got != len(want) {
		t.Errorf("%d messages stored, %d planned", got, len(want))
	}
	if len(res.Plan.Decisions) == 0 {
		t.Error("the pass kept no skipped decision")
	}
	// The pass counts the excluded decisions it is not handed.
	if got, want := res.Plan.Summaries(e), plan.Summaries(e); !reflect.DeepEqual(got, want) {
		t.Errorf("the pass's summaries:\n%+v\nPlan's:\n%+v", got, want)
	}
}

// describeMessage is what of a planned message must be stored as planned.
func describeMessage(m *storage.Message) string {
	return fmt.Sprintf("%s %s/%s/%s/%s#%d occ %d %s: to %s from %s %q %q %q segs %d; not before %s, expires %s, %s",
		m.Key, m.Project, m.Rule, m.Record, m.Event, m.Instance, m.Occurrence, m.Channel, m.To, m.From,
		m.Subject, m.Body, m.HTML, m.Segments, m.NotBefore.UTC(), m.ExpiresAt.UTC(), m.Zone)
}

// TestSafetyParsedNumbersReusedUntilCorrected checks that a plan takes the
// numbers the last plan parsed instead of parsing them again, and that a
// number corrected in REDCap is parsed and used at once: the reuse goes by
// the value as typed, never by participant.
func TestSafetyParsedNumbersReusedUntilCorrected(t *testing.T) {
	e, _, recs, snaps, now := benchPlanFixture(t, 300)
	ctx := context.Background()
	// Record 3 gets the welcome text.
	welcomeTo := func() string {
		t.Helper()
		plan, err := e.Plan(ctx, snaps, now, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range plan.Messages() {
			if m.Rule == "welcome" && m.Record == recs[2].ID {
				return m.To
			}
		}
		t.Fatal("no welcome text for record 3")
		return ""
	}
	steps := []struct {
		phone      string // record 3's number as typed; "" leaves it
		wantTo     string
		wantParsed func(n int) bool
		what       string
	}{
		{"", "+13125550002", func(n int) bool { return n > 100 }, "every number, the first time"},
		{"", "+13125550002", func(n int) bool { return n == 0 }, "none, the numbers unchanged"},
		{"312-555-0199", "+13125550199", func(n int) bool { return n == 1 }, "only the corrected number"},
		{"", "+13125550199", func(n int) bool { return n == 0 }, "none, the correction already parsed"},
	}
	for i, s := range steps {
		if s.phone != "" {
			recs[2].Rows[0].Values["phone"] = s.phone
		}
		if got := welcomeTo(); got != s.wantTo {
			t.Errorf("plan %d: welcome text to %s, want %s", i+1, got, s.wantTo)
		}
		if n := e.parsed.Load().parsed; !s.wantParsed(n) {
			t.Errorf("plan %d parsed %d numbers, want %s", i+1, n, s.what)
		}
	}
}

// TestSafetySharedTemplateRenderedPerRow checks every planned text against
// its template rendered afresh for its own participant: rules sharing a
// template render it once per row (rowContent), and a participant must
// never get a text rendered for another. Each of the bench study's rules
// is there four times, so many rows get one template from several rules.
func TestSafetySharedTemplateRenderedPerRow(t *testing.T) {
	study := benchStudy20(t) // the bench study's rules four times over
	e := benchEngineFor(t, study)
	recs := benchRecords(3*planChunk + 5)
	byID := map[string]*rules.Record{}
	for _, rec := range recs {
		byID[rec.ID] = rec
	}
	snaps := map[string]*Snapshot{"main": {Project: "main", Records: recs}}
	now := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	var err error
	plan, err := e.Plan(context.Background(), snaps, now, PlanOptions{Unexplained: true})
	if err != nil {
		t.Fatal(err)
	}
	shared := 0
	templates := map[string]int{} // record/template → messages
	for _, m := range plan.Messages() {
		r := study.Rule(m.Rule)
		rec := byID[m.Record]
		scope := rules.NewScope(rec, rec.Rows[0], now, nil)
		dict := e.Dicts[r.Project]
		var want storage.Message
		switch r.Channel {
		case rules.ChannelSMS:
			want.Body, err = r.SMS.Body.Render(scope, dict)
		case rules.ChannelEmail:
			if want.Subject, err = r.Email.Subject.Render(scope, dict); err == nil {
				want.Body, err = r.Email.Text.Render(scope, dict)
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", m.Key, err)
		}
		if m.Body != want.Body || m.Subject != want.Subject {
			t.Errorf("%s: planned %q / %q, its template renders %q / %q", m.Key, m.Subject, m.Body, want.Subject, want.Body)
		}
		k := m.Record + "/" + r.Channel + "/" + r.Template
		if templates[k]++; templates[k] == 2 {
			shared++
		}
	}
	if shared < 100 {
		t.Fatalf("only %d rows got one template from two rules: the test needs many", shared)
	}
}

// benchPlanFixture is the bench study (its five rules) with n of
// benchRecords' records, planned at the benchmarks' moment.
func benchPlanFixture(t *testing.T, n int) (*Engine, *rules.Study, []*rules.Record, map[string]*Snapshot, time.Time) {
	t.Helper()
	study, err := rules.Load(filepath.Join("testdata", "bench", "nudge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	recs := benchRecords(n)
	snaps := map[string]*Snapshot{"main": {Project: "main", Records: recs}}
	return benchEngineFor(t, study), study, recs, snaps, time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
}
