package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/rules/logic"
	"github.com/nudge-study/nudge/storage"
)

// visitRecord is the demo participant the once_per tests follow.
const (
	visitRecord = "10"
	visitPhone  = "+15105550109"
)

// newVisitFixture is the demo study with a visit reminder in site_a keyed
// by the participant's baseline (visit) date; extra is added to the rule.
func newVisitFixture(t *testing.T, extra string) *fixture {
	t.Helper()
	dir := t.TempDir()
	copyDemo(t, dir)
	rule := `
  - name: visit-reminder
    when: "[consent_given] = '1'"
    channel: sms
    to: "[mobile_phone]"
    template: visit
    once_per: "[baseline_date]"
` + extra
	ruleFile := filepath.Join(dir, "rules", "site_a.yaml")
	data, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ruleFile, append(data, rule...), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl := "Hi [first_name], see you at your visit on [baseline_date].\n"
	if err := os.WriteFile(filepath.Join(dir, "templates", "visit.sms.txt"), []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	return newFixtureWith(t, demo.Options{Dir: dir})
}

// planVisit exports, plans and enqueues the visit reminder for the
// followed participant, returning the planner's decision.
func (f *fixture) planVisit(t *testing.T) engine.Decision {
	t.Helper()
	snaps, err := f.e.Export(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := f.e.Plan(f.ctx, snaps, f.clk.Now(), engine.PlanOptions{
		Rules: map[string]bool{"visit-reminder": true}, Records: map[string]bool{visitRecord: true}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Decisions) != 1 {
		t.Fatalf("%d decisions, want 1", len(plan.Decisions))
	}
	if _, err := f.e.Store.EnqueueBatch(f.ctx, plan.Messages()); err != nil {
		t.Fatal(err)
	}
	return plan.Decisions[0]
}

// setVisit saves a new visit date in REDCap, as a coordinator would; ""
// erases it.
func (f *fixture) setVisit(t *testing.T, date string) {
	t.Helper()
	if date != "" {
		f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": date})
		return
	}
	// A blank never erases a value in an import: the record is stored
	// again without it.
	tok := f.env.Token("site_a")
	var row map[string]string
	for _, r := range f.env.REDCap.Export(tok) {
		if r["record_id"] == visitRecord {
			row = r
		}
	}
	delete(row, "baseline_date")
	if row == nil || !f.env.REDCap.Delete(tok, visitRecord) {
		t.Fatal("record not found")
	}
	f.load(t, "site_a", row)
}

// visitTexts are the texts the participant got, oldest first.
func (f *fixture) visitTexts() []string {
	var out []string
	for _, c := range f.createsTo(visitPhone) {
		out = append(out, c.Body)
	}
	return out
}

// TestSafetyOncePerValueRescheduledVisit follows one participant's visit
// date: a reminder for the date; none again while it stands; a second when
// the visit is rescheduled; a queued reminder canceled (never sent) when the
// date moves before it went, the new date getting its own; nothing new
// when the date moves back to one already reminded; nothing at all while
// the date is blank. No key holds the date itself.
func TestSafetyOncePerValueRescheduledVisit(t *testing.T) {
	f := newVisitFixture(t, "")
	dispatch := func() {
		t.Helper()
		f.clk.Advance(5 * time.Minute) // older than the planner's read: recheck reads REDCap again
		if _, err := f.e.Dispatch(f.ctx); err != nil {
			t.Fatal(err)
		}
		f.settle(t)
	}
	wantTexts := func(step string, dates ...string) {
		t.Helper()
		got := f.visitTexts()
		if len(got) != len(dates) {
			t.Fatalf("%s: %d texts %q, want %d (for %v)", step, len(got), got, len(dates), dates)
		}
		for i, d := range dates {
			if !strings.Contains(got[i], d) {
				t.Errorf("%s: text %d is %q, want the visit on %s", step, i+1, got[i], d)
			}
		}
	}

	f.setVisit(t, "2026-12-01")
	if d := f.planVisit(t); d.Outcome != engine.Send || d.Message == nil {
		t.Fatalf("first plan: %s (%s), want a reminder", d.Outcome, d.Reason)
	} else if m := d.Message; m.OncePer == "" || strings.Contains(m.Key, "2026") || !strings.Contains(m.Key, "/v"+m.OncePer+"/") {
		t.Fatalf("key %q (once_per %q): want the value's digest in the key, never the date", m.Key, m.OncePer)
	}
	dispatch()
	wantTexts("first date", "2026-12-01")

	if d := f.planVisit(t); d.Outcome != engine.Done || !strings.Contains(d.Reason, "for this value of [baseline_date]") {
		t.Fatalf("same date again: %s (%s), want done for this value", d.Outcome, d.Reason)
	}
	dispatch()
	wantTexts("same date", "2026-12-01")

	f.setVisit(t, "2026-12-08")
	if d := f.planVisit(t); d.Outcome != engine.Send {
		t.Fatalf("rescheduled: %s (%s), want a second reminder", d.Outcome, d.Reason)
	}
	dispatch()
	wantTexts("rescheduled", "2026-12-01", "2026-12-08")

	// Planned for the 15th, the visit moves to the 22nd before it goes.
	f.setVisit(t, "2026-12-15")
	queued := f.planVisit(t)
	if queued.Outcome != engine.Send {
		t.Fatalf("moved to the 15th: %s (%s), want a reminder", queued.Outcome, queued.Reason)
	}
	f.setVisit(t, "2026-12-22")
	dispatch()
	wantTexts("moved before it went", "2026-12-01", "2026-12-08")
	var m storage.Message
	for _, x := range f.messages(t, "visit-reminder") {
		if x.Key == queued.Message.Key {
			m = x
		}
	}
	if m.State != storage.StateCanceled || !strings.Contains(m.Reason, "[baseline_date]") || strings.Contains(m.Reason, "2026") {
		t.Fatalf("the reminder for the 15th: %s (%q), want canceled naming the field, not its value", m.State, m.Reason)
	}
	if d := f.planVisit(t); d.Outcome != engine.Send {
		t.Fatalf("the 22nd: %s (%s), want its own reminder", d.Outcome, d.Reason)
	}
	dispatch()
	wantTexts("the 22nd", "2026-12-01", "2026-12-08", "2026-12-22")

	f.setVisit(t, "2026-12-01")
	if d := f.planVisit(t); d.Outcome != engine.Done || d.Message != nil {
		t.Fatalf("back to the 1st: %s (%s), want nothing new", d.Outcome, d.Reason)
	}
	dispatch()
	wantTexts("back to the 1st", "2026-12-01", "2026-12-08", "2026-12-22")

	// Planned for the 29th, the date is erased before it goes.
	f.setVisit(t, "2026-12-29")
	queued = f.planVisit(t)
	if queued.Outcome != engine.Send {
		t.Fatalf("moved to the 29th: %s (%s), want a reminder", queued.Outcome, queued.Reason)
	}
	f.setVisit(t, "")
	dispatch()
	wantTexts("erased before it went", "2026-12-01", "2026-12-08", "2026-12-22")
	for _, x := range f.messages(t, "visit-reminder") {
		if x.Key == queued.Message.Key && (x.State != storage.StateCanceled || !strings.Contains(x.Reason, "[baseline_date] is blank")) {
			t.Fatalf("the reminder for the 29th: %s (%q), want canceled: the date is blank", x.State, x.Reason)
		}
	}
	if d := f.planVisit(t); d.Outcome != engine.Skipped || !strings.Contains(d.Reason, "[baseline_date] is blank") || d.Message != nil {
		t.Fatalf("blank date: %s (%s), want skipped naming the field", d.Outcome, d.Reason)
	}
	f.assertNoDuplicates(t)
}

// TestSafetyOncePerValueRepeat: repeat counts per value: max reminders for
// each date, the count starting again for a new date.
func TestSafetyOncePerValueRepeat(t *testing.T) {
	f := newVisitFixture(t, "    repeat: { every: 1d, max: 2 }\n")
	f.setVisit(t, "2026-12-01")
	want := []engine.Outcome{engine.Send, engine.Done, engine.Send, engine.Done}
	for i, w := range want {
		if d := f.planVisit(t); d.Outcome != w {
			t.Fatalf("plan %d on the 1st: %s (%s), want %s", i+1, d.Outcome, d.Reason, w)
		}
		f.clk.Advance(12 * time.Hour)
	}
	f.setVisit(t, "2026-12-08")
	if d := f.planVisit(t); d.Outcome != engine.Send || d.Message.Occurrence != 1 {
		t.Fatalf("the 8th: %s (%s), want its first reminder", d.Outcome, d.Reason)
	}
	f.clk.Advance(24 * time.Hour)
	if d := f.planVisit(t); d.Outcome != engine.Send || d.Message.Occurrence != 2 {
		t.Fatalf("the 8th a day later: %s (%s), want its second reminder", d.Outcome, d.Reason)
	}
	f.clk.Advance(24 * time.Hour)
	if d := f.planVisit(t); d.Outcome != engine.Done || !strings.Contains(d.Reason, "(2 of 2) for this value") {
		t.Fatalf("the 8th, third time: %s (%s), want done", d.Outcome, d.Reason)
	}
}

// TestSafetyOncePerAddedOrRemoved: a participant messaged before a rule
// had once_per is not messaged again because it was added (nudge cannot
// tell which value the earlier message was for), and one messaged per
// value is not messaged again when once_per is removed.
func TestSafetyOncePerAddedOrRemoved(t *testing.T) {
	f := newVisitFixture(t, "")
	r := f.e.Study.Rule("visit-reminder")
	oncePer := r.OncePer
	f.setVisit(t, "2026-12-01")

	r.OncePer = logic.Ref{}
	if d := f.planVisit(t); d.Outcome != engine.Send || d.Message.OncePer != "" {
		t.Fatalf("without once_per: %s (%s), want a reminder without a value", d.Outcome, d.Reason)
	}
	r.OncePer = oncePer
	if d := f.planVisit(t); d.Outcome != engine.Done {
		t.Fatalf("once_per added: %s (%s), want nothing new", d.Outcome, d.Reason)
	}

	g := newVisitFixture(t, "")
	r = g.e.Study.Rule("visit-reminder")
	g.setVisit(t, "2026-12-01")
	if d := g.planVisit(t); d.Outcome != engine.Send || d.Message.OncePer != rules.ValueDigest("2026-12-01") {
		t.Fatalf("with once_per: %s (%s), want a reminder for the value", d.Outcome, d.Reason)
	}
	g.setVisit(t, "2026-12-08")
	if d := g.planVisit(t); d.Outcome != engine.Send {
		t.Fatalf("rescheduled: %s (%s), want a reminder", d.Outcome, d.Reason)
	}
	r.OncePer = logic.Ref{}
	if d := g.planVisit(t); d.Outcome != engine.Done || !strings.Contains(d.Reason, "already messaged (2 of 1)") {
		t.Fatalf("once_per removed: %s (%s), want nothing new", d.Outcome, d.Reason)
	}
}
