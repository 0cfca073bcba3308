package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules"
)

// TestPlanEachMatchesPlan checks that a streamed plan decides exactly as
// Plan does: the same decisions with the same reasons and messages, Plan's
// in rule order, and a pass's counts (Plan.keep) summing to Plan's.
func TestPlanEachMatchesPlan(t *testing.T) {
	study, err := rules.Load(filepath.Join("testdata", "bench", "nudge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e := benchEngineFor(t, study)
	recs := benchRecords(600)
	recs[8].Rows[0].Values["phone"] = "not a number" // a skipped row (selected by welcome)
	snaps := map[string]*Snapshot{"main": {Project: "main", Records: recs}}
	now := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
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
	study, err := rules.Load(filepath.Join("testdata", "bench", "nudge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e := benchEngineFor(t, study)
	recs := benchRecords(3*planChunk + 7)
	snaps := map[string]*Snapshot{"main": {Project: "main", Records: recs}}
	now := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	place := map[string]int{}
	for i, r := range study.Rules {
		place[r.Name] = i
	}
	var got []string
	err = e.PlanEach(context.Background(), snaps, now, PlanOptions{}, func(d *Decision) error {
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
