package engine_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/sms"
)

// TestSafetyAnyEventRuleMessagesOnce proves that an `event: any` rule in a
// longitudinal project, whose condition is true on several event rows of
// one participant, plans one message for that participant and not one per
// event, in one pass or the next.
func TestSafetyAnyEventRuleMessagesOnce(t *testing.T) {
	dir := t.TempDir()
	copyDemo(t, dir)
	ruleFile := filepath.Join(dir, "rules", "site_b.yaml")
	data, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	// Inserted before the replies: true on every event row of an enrolled participant.
	rule := []byte(`  - name: thanks-once
    event: any
    when: "[enrollment_arm_1][enrolled] = '1'"
    channel: sms
    to: "[enrollment_arm_1][cell]"
    template: thanks

`)
	i := bytes.Index(data, []byte("replies:"))
	if i < 0 {
		t.Fatal("no replies in site_b.yaml")
	}
	data = append(append(append([]byte{}, data[:i]...), rule...), data[i:]...)
	if err := os.WriteFile(ruleFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "templates", "thanks.sms.txt"), []byte("Thanks [enrollment_arm_1][given_name] for taking part.\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	clk := sms.NewFakeClock(demo.StudyTime)
	env, err := demo.Start(demo.Options{Dir: dir, Clock: clk, DBPath: filepath.Join(t.TempDir(), "nudge.db"), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	e := env.Engine
	if err := e.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	for pass := 1; pass <= 2; pass++ {
		snaps, err := e.Export(ctx)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := e.Plan(ctx, snaps, clk.Now(), engine.PlanOptions{Rules: map[string]bool{"thanks-once": true}})
		if err != nil {
			t.Fatal(err)
		}
		events := map[string]map[string]bool{}
		for _, d := range plan.Decisions {
			if d.Selected {
				if events[d.Record] == nil {
					events[d.Record] = map[string]bool{}
				}
				events[d.Record][d.Event] = true
			}
		}
		several := 0
		for _, evs := range events {
			if len(evs) > 1 {
				several++
			}
		}
		if several == 0 {
			t.Fatalf("pass %d: no participant is selected on more than one event; the test proves nothing", pass)
		}
		if _, err := e.Store.EnqueueBatch(ctx, plan.Messages()); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
	}
	ms, err := e.Store.ByRule(ctx, "thanks-once")
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, m := range ms {
		per[m.Record]++
	}
	if len(per) == 0 {
		t.Fatal("no message planned")
	}
	for rec, n := range per {
		if n != 1 {
			t.Errorf("record %s: %d messages, want 1 whatever the number of events that select it", rec, n)
		}
	}
}
