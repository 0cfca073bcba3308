package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/storage"
)

func laTime(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04", s, la)
	if err != nil {
		panic(err)
	}
	return t
}

// newTimedFixture is the demo study with one more site_a rule (rule, at
// the end of site_a.yaml) and its template; with ema, site_a gets a
// repeating instrument ema ([ema_mood], [ema_complete]) and a date field
// [ema_start].
func newTimedFixture(t *testing.T, rule, tmpl string, ema bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "testdata", "demo"))); err != nil {
		t.Fatal(err)
	}
	appendFile := func(name, text string) {
		t.Helper()
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(text); err != nil {
			t.Fatal(err)
		}
	}
	appendFile(filepath.Join("rules", "site_a.yaml"), rule)
	if err := os.WriteFile(filepath.Join(dir, "templates", "timed.sms.txt"), []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	if ema {
		appendFile(filepath.Join("redcap", "site_a.dictionary.csv"),
			"ema_start,baseline,,text,\"EMA start\",,,date_ymd,,,,,,,,,,\n"+
				"ema_mood,ema,,text,\"Mood\",,,integer,,,,,,,,,,\n")
		structure := `{"repeating": [{"event_name": "", "form_name": "ema"}]}`
		if err := os.WriteFile(filepath.Join(dir, "redcap", "site_a.structure.json"), []byte(structure), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return newFixtureWith(t, demo.Options{Dir: dir})
}

// at sets the clock, then exports, plans and enqueues rule for the
// followed participant (record 10), returning its decision.
func (f *fixture) planAt(t *testing.T, at, rule string) engine.Decision {
	t.Helper()
	f.clk.Set(laTime(at))
	snaps, err := f.e.Export(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := f.e.Plan(f.ctx, snaps, f.clk.Now(), engine.PlanOptions{
		Rules: map[string]bool{rule: true}, Records: map[string]bool{visitRecord: true}})
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

// dispatchAt sets the clock and sends what is due then.
func (f *fixture) dispatchAt(t *testing.T, at string) {
	t.Helper()
	f.clk.Set(laTime(at))
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
}

// textTimes are when the followed participant was texted, in LA.
func (f *fixture) textTimes(t *testing.T, rule string) []string {
	t.Helper()
	var out []string
	for _, m := range f.messages(t, rule) {
		if !m.SentAt.IsZero() {
			out = append(out, m.SentAt.In(la).Format("2006-01-02 15:04 MST"))
		}
	}
	return out
}

const quitRule = `
  - name: quit-support
    when: "[consent_given] = '1'"
    channel: sms
    to: "[mobile_phone]"
    template: timed
    start: { field: "[baseline_date]", days: [7, 14, 28], at: "10:00" }
`

func wantReason(t *testing.T, step string, d engine.Decision, outcome engine.Outcome, reason string) {
	t.Helper()
	if d.Outcome != outcome || !strings.Contains(d.Reason, reason) {
		t.Errorf("%s: %s (%s), want %s with %q", step, d.Outcome, d.Reason, outcome, reason)
	}
}

// TestSafetyTimedQuitDateAcrossDST: texts 7, 14 and 28 days after the
// quit date at 10:00 local, across the spring change: planned a day
// ahead, sent at 10:00 sharp (not at 09:59), never twice on a second pass,
// and an occurrence whose expiry passed unsent is missed, not sent late.
func TestSafetyTimedQuitDateAcrossDST(t *testing.T) {
	f := newTimedFixture(t, quitRule, "Day [baseline_date]: keep going!\n", false)
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-03-01"})

	wantReason(t, "two days before", f.planAt(t, "2027-03-06 11:00", "quit-support"), engine.Done,
		"next: occurrence 1 of 3, due 2027-03-08 10:00 PST")
	d := f.planAt(t, "2027-03-07 11:00", "quit-support")
	wantReason(t, "the day before", d, engine.Deferred, "occurrence 1 of 3, due 2027-03-08 10:00 PST")
	if d.Message == nil || !d.Message.NotBefore.Equal(laTime("2027-03-08 10:00")) {
		t.Fatalf("planned %+v, want NotBefore 10:00", d.Message)
	}
	wantReason(t, "a second pass", f.planAt(t, "2027-03-07 12:00", "quit-support"), engine.Done,
		"occurrence 1 of 3, due 2027-03-08 10:00 PST, is queued")
	f.dispatchAt(t, "2027-03-08 09:59")
	if got := f.textTimes(t, "quit-support"); len(got) != 0 {
		t.Fatalf("texts at 09:59: %v, want none yet", got)
	}
	f.dispatchAt(t, "2027-03-08 10:00")
	f.planAt(t, "2027-03-08 10:01", "quit-support")
	f.dispatchAt(t, "2027-03-08 10:02")
	// After the change to daylight time: 10:00 PDT is 17:00 UTC.
	f.planAt(t, "2027-03-14 11:00", "quit-support")
	f.dispatchAt(t, "2027-03-15 09:59")
	f.dispatchAt(t, "2027-03-15 10:00")
	f.planAt(t, "2027-03-15 10:30", "quit-support")
	f.dispatchAt(t, "2027-03-15 10:31")
	want := []string{"2027-03-08 10:00 PST", "2027-03-15 10:00 PDT"}
	if got := f.textTimes(t, "quit-support"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("texts sent at %v, want %v", got, want)
	}
	// Nobody ran nudge between the 27th and 13:00 on the 29th: the third
	// text is missed, not sent three hours late.
	wantReason(t, "after the expiry", f.planAt(t, "2027-03-29 13:00", "quit-support"), engine.Skipped,
		"missed: occurrence 3 of 3, due 2027-03-29 10:00 PDT and expired 2027-03-29 12:00 PDT")
	f.dispatchAt(t, "2027-03-29 13:01")
	if got := f.textTimes(t, "quit-support"); len(got) != 2 {
		t.Errorf("texts %v, want the two sent on time only", got)
	}
	if got := f.createsTo(visitPhone); len(got) != 2 {
		t.Errorf("Twilio got %d texts, want 2", len(got))
	}
}

// TestSafetyTimedQuitDateMoved: after occurrence 1 was sent the quit date
// moves. The queued occurrence 2 follows the new date: never sent at the
// old time, sent once at the new; occurrence 1 is never sent again (its
// new time is past). A date moved so far back that the queued
// occurrence's new time has expired is missed, never sent.
func TestSafetyTimedQuitDateMoved(t *testing.T) {
	f := newTimedFixture(t, quitRule, "Keep going!\n", false)
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-03-01"})
	f.planAt(t, "2027-03-07 11:00", "quit-support")
	f.dispatchAt(t, "2027-03-08 10:00")
	f.planAt(t, "2027-03-14 11:00", "quit-support") // occurrence 2 queued for the 15th
	// Later: the 3rd, so occurrence 1 would be the 10th and 2 the 17th.
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-03-03"})
	f.dispatchAt(t, "2027-03-15 10:00") // the old time: the recheck re-reads REDCap
	if got := f.textTimes(t, "quit-support"); len(got) != 1 {
		t.Fatalf("texts %v, want none at the old time", got)
	}
	d := f.planAt(t, "2027-03-16 11:00", "quit-support")
	wantReason(t, "after the move", d, engine.Done, "occurrence 2 of 3, due 2027-03-17 10:00 PDT, is queued")
	f.dispatchAt(t, "2027-03-17 09:59")
	f.dispatchAt(t, "2027-03-17 10:00")
	f.planAt(t, "2027-03-17 10:05", "quit-support")
	f.dispatchAt(t, "2027-03-17 10:06")
	want := []string{"2027-03-08 10:00 PST", "2027-03-17 10:00 PDT"}
	if got := f.textTimes(t, "quit-support"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("texts sent at %v, want %v", got, want)
	}

	// Earlier: occurrence 3, queued for the 31st, would now be due on the
	// 29th, already expired when the planner sees it.
	f.planAt(t, "2027-03-30 11:00", "quit-support")
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-03-01"})
	f.planAt(t, "2027-03-30 12:00", "quit-support")
	f.dispatchAt(t, "2027-03-31 10:00")
	f.dispatchAt(t, "2027-03-31 10:30")
	if got := f.textTimes(t, "quit-support"); len(got) != 2 {
		t.Errorf("texts %v: the moved occurrence must not be sent at its old time", got)
	}
	for _, m := range f.messages(t, "quit-support") {
		if m.Occurrence == 3 && m.State != storage.StateExpired && m.State != storage.StateCanceled {
			t.Errorf("occurrence 3 is %s (%s), want expired or canceled", m.State, m.Reason)
		}
	}
	if got := f.createsTo(visitPhone); len(got) != 2 {
		t.Errorf("Twilio got %d texts, want 2", len(got))
	}
}
