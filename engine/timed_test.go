package engine_test

import (
	"fmt"
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
	copyDemo(t, dir)
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
				"ema_mood,ema,,text,\"Mood\",,,integer,,,,,,,,,,\n"+
				"ema_sms_status,ema,,text,\"Prompt status\",,,,,,,,,,,,,\n")
		structure := `{"surveys": ["consent", "baseline", "ema"], "repeating": [{"event_name": "", "form_name": "ema"}]}`
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

const emaRule = `
  - name: ema
    when: "[consent_given] = '1'"
    channel: sms
    to: "[mobile_phone]"
    template: timed
    start: { field: "[ema_start]" }
    every: { days: 14, at: ["09:00", "14:00", "19:00"], instrument: ema }
    remind: { after: 30m, unless: "[ema_complete] = '2'" }
    write_back: { status: ema_sms_status }
`

// TestSafetyTimedEMASeries: 14 days x 3 prompts from [ema_start], each
// prompt its own message (occurrence k, written back to instance k of
// ema); a prompt whose survey instance was completed gets no reminder, one
// still incomplete gets it 30 minutes later, once; further passes plan
// nothing twice.
func TestSafetyTimedEMASeries(t *testing.T) {
	f := newTimedFixture(t, emaRule, "Prompt [current-instance]: how are you?\n", true)
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "ema_start": "2027-01-10"})

	d := f.planAt(t, "2027-01-09 19:15", "ema")
	wantReason(t, "the evening before", d, engine.Deferred, "occurrence 1 of 42, due 2027-01-10 09:00 PST")
	// Prompts 1-3 and reminders 1-2 fall within a day of 19:15; reminder
	// 3 at 19:30 is past the horizon.
	if n := 1 + len(d.More); n != 5 {
		t.Errorf("planned %d messages, want 5 (3 prompts, 2 reminders)", n)
	}
	f.planAt(t, "2027-01-09 20:30", "ema") // a second pass: only reminder 3 is new
	f.dispatchAt(t, "2027-01-10 09:00")
	// The participant answers prompt 1 (instance 1) at 09:10.
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "redcap_repeat_instrument": "ema",
		"redcap_repeat_instance": "1", "ema_mood": "4", "ema_complete": "2"})
	f.dispatchAt(t, "2027-01-10 09:30") // reminder 1: not needed
	f.dispatchAt(t, "2027-01-10 14:00") // prompt 2
	f.dispatchAt(t, "2027-01-10 14:30") // reminder 2: survey 2 still incomplete
	f.dispatchAt(t, "2027-01-10 14:31")
	f.planAt(t, "2027-01-10 14:35", "ema")
	f.dispatchAt(t, "2027-01-10 14:36")

	var got []string
	for _, c := range f.createsTo(visitPhone) {
		got = append(got, c.Body)
	}
	want := []string{"Prompt 1: how are you?", "Prompt 2: how are you?", "Prompt 2: how are you?"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("texts %q, want %q (no reminder for the completed prompt 1)", got, want)
	}
	byKey := map[string]storage.Message{}
	for _, m := range f.messages(t, "ema") {
		byKey[m.Key] = m
		if m.Instrument != "ema" || m.Instance != m.Occurrence {
			t.Errorf("%s: instance %s/%d, want ema/%d", m.Key, m.Instrument, m.Instance, m.Occurrence)
		}
	}
	r1 := byKey["site_a/ema/"+visitRecord+"//0/1/r"]
	if r1.State != storage.StateCanceled || !strings.Contains(r1.Reason, "remind.unless is true for occurrence 1") {
		t.Errorf("reminder 1: %s (%s), want canceled: survey 1 is complete", r1.State, r1.Reason)
	}
	r2 := byKey["site_a/ema/"+visitRecord+"//0/2/r"]
	if r2.SentAt.IsZero() || !r2.SentAt.Equal(laTime("2027-01-10 14:30")) {
		t.Errorf("reminder 2: %s sent %v, want sent at 14:30", r2.State, r2.SentAt)
	}

	// Another pass, as a second process or a restarted one would make it:
	// every planner starts from the outbox alone.
	f.planAt(t, "2027-01-10 14:40", "ema")
	f.dispatchAt(t, "2027-01-10 14:41")
	if n := len(f.createsTo(visitPhone)); n != 3 {
		t.Errorf("after another pass: %d texts, want still 3", n)
	}
	// The status of prompt k is written to instance k of ema.
	f.settle(t)
	if _, err := f.e.Track(f.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.Report(f.ctx); err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, row := range f.env.REDCap.Export(f.env.Token("site_a")) {
		if row["record_id"] == visitRecord {
			status[row["redcap_repeat_instrument"]+"/"+row["redcap_repeat_instance"]] = row["ema_sms_status"]
		}
	}
	if status["ema/1"] == "" || status["ema/2"] == "" || status["/"] != "" {
		t.Errorf("ema_sms_status by instance: %v, want it on instances 1 and 2 only", status)
	}
}

// TestSafetyTimedQuitDateMovedEarlier: a queued occurrence whose date
// moves earlier (its new time still ahead, or just due and not expired)
// goes at the new time, once, and never at the old one.
func TestSafetyTimedQuitDateMovedEarlier(t *testing.T) {
	f := newTimedFixture(t, quitRule, "Keep going!\n", false)
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-03-03"})
	f.planAt(t, "2027-03-09 11:00", "quit-support") // occurrence 1 queued for the 10th, 10:00
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-03-02"})
	d := f.planAt(t, "2027-03-09 11:05", "quit-support")
	wantReason(t, "moved a day earlier", d, engine.Send, "occurrence 1 of 3, due 2027-03-09 10:00 PST (re-timed: the start date changed)")
	f.dispatchAt(t, "2027-03-09 11:06")
	f.planAt(t, "2027-03-09 11:10", "quit-support")
	f.dispatchAt(t, "2027-03-10 10:00") // the old time
	f.dispatchAt(t, "2027-03-10 10:30")
	want := []string{"2027-03-09 11:06 PST"}
	if got := f.textTimes(t, "quit-support"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("texts sent at %v, want %v", got, want)
	}
	if got := f.createsTo(visitPhone); len(got) != 1 {
		t.Errorf("Twilio got %d texts, want 1", len(got))
	}
}

// TestSafetySeriesLinksItsOwnInstance: each prompt of an EMA series pipes
// the survey link of its own instance (occurrence k → ema instance k),
// in the planned text and in the text sent, never another prompt's link.
func TestSafetySeriesLinksItsOwnInstance(t *testing.T) {
	f := newTimedFixture(t, emaRule, "Prompt [current-instance]: [survey-url:ema]\n", true)
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "ema_start": "2027-01-10"})

	d := f.planAt(t, "2027-01-09 19:15", "ema")
	for _, m := range append([]*storage.Message{d.Message}, d.More...) {
		want := f.link(t, "site_a", visitRecord, "ema", "", m.Occurrence)
		if !strings.HasSuffix(m.Body, want) {
			t.Errorf("planned %s: %q, want the link of instance %d (%s)", m.Key, m.Body, m.Occurrence, want)
		}
	}
	f.dispatchAt(t, "2027-01-10 09:00")
	f.dispatchAt(t, "2027-01-10 14:00")
	var got []string
	for _, c := range f.createsTo(visitPhone) {
		got = append(got, c.Body)
	}
	want := []string{
		"Prompt 1: " + f.link(t, "site_a", visitRecord, "ema", "", 1),
		"Prompt 2: " + f.link(t, "site_a", visitRecord, "ema", "", 2),
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("texts %q, want %q", got, want)
	}
}

// TestSafetyTimedFallbackPlannedOnce: the email fallback of a timed rule
// (a participant without a valid number) is planned once per occurrence, every
// occurrence under the text's key plus /email; a later pass finds it
// queued, then sent, and plans nothing again.
func TestSafetyTimedFallbackPlannedOnce(t *testing.T) {
	const rule = `
  - name: quit-support
    when: "[consent_given] = '1'"
    channel: sms
    to: "[mobile_phone]"
    template: timed
    start: { field: "[baseline_date]", days: 7, at: ["10:00", "18:00"] }
    fallback: { to: "[email]", subject: "Keep going" }
`
	f := newTimedFixture(t, rule, "Keep going!\n", false)
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-03-03", "mobile_phone": "call my sister"})

	d := f.planAt(t, "2027-03-10 09:00", "quit-support")
	wantReason(t, "first pass", d, engine.Deferred, "email fallback")
	planned := append([]*storage.Message{d.Message}, d.More...)
	if len(planned) != 2 {
		t.Fatalf("planned %d messages, want the emails of occurrences 1 and 2", len(planned))
	}
	for _, m := range planned {
		if m.Channel != storage.ChannelEmail || !rules.IsFallbackKey(m.Key) {
			t.Errorf("planned %s on %s, want an email under a fallback key", m.Key, m.Channel)
		}
	}
	d = f.planAt(t, "2027-03-10 09:05", "quit-support")
	wantReason(t, "second pass", d, engine.Done, "is queued")
	f.dispatchAt(t, "2027-03-10 10:00")
	d = f.planAt(t, "2027-03-10 10:05", "quit-support")
	wantReason(t, "after the first email", d, engine.Done, "is queued")
	if n := len(f.messages(t, "quit-support")); n != 2 {
		t.Errorf("%d messages stored, want 2", n)
	}
	if n := len(f.env.SMTP.Messages()); n != 1 {
		t.Errorf("the SMTP server got %d emails, want 1", n)
	}
}

const visitEveRule = `
  - name: visit-eve
    when: "[consent_given] = '1'"
    channel: sms
    to: "[mobile_phone]"
    template: timed
    start: { field: "[baseline_date]", days: -1, at: "18:00" }
    once_per: "[baseline_date]"
`

// TestSafetyTimedOncePerRescheduledVisit: a reminder the evening before
// the visit, once per visit date. A visit rescheduled after its reminder
// went out gets a reminder for the new date; a reminder queued for a date
// that changed is canceled, never sent with the old date, and the new
// date gets its own; a date already reminded of is never reminded again.
func TestSafetyTimedOncePerRescheduledVisit(t *testing.T) {
	f := newTimedFixture(t, visitEveRule, "See you tomorrow, [baseline_date]!\n", false)
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-04-15"})
	f.planAt(t, "2027-04-14 12:00", "visit-eve")
	f.dispatchAt(t, "2027-04-14 18:00")

	// Rescheduled after the reminder went out: the new date gets one.
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-04-20"})
	d := f.planAt(t, "2027-04-19 12:00", "visit-eve")
	wantReason(t, "rescheduled", d, engine.Deferred, "occurrence 1 of 1, due 2027-04-19 18:00 PDT")
	// Moved again while that one is queued: it is canceled at its time.
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-04-22"})
	f.dispatchAt(t, "2027-04-19 18:00")
	f.planAt(t, "2027-04-21 12:00", "visit-eve")
	f.dispatchAt(t, "2027-04-21 18:00")
	want := []string{"2027-04-14 18:00 PDT", "2027-04-21 18:00 PDT"}
	if got := f.textTimes(t, "visit-eve"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("texts sent at %v, want %v", got, want)
	}
	if got := f.createsTo(visitPhone); len(got) != 2 || !strings.Contains(got[1].Body, "2027-04-22") {
		t.Errorf("Twilio got %+v, want the reminders of the 15th and the 22nd", got)
	}
	// Back to the 15th, already reminded of: nothing new.
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-04-15"})
	d = f.planAt(t, "2027-04-14 12:00", "visit-eve")
	wantReason(t, "back to the first date", d, engine.Done, "")
}

// TestSafetyTimedOncePerAddedOrRemoved: adding once_per to a timed rule
// that already sent, or removing it, changes its messages' keys; the
// occurrence already sent is never sent again either way.
func TestSafetyTimedOncePerAddedOrRemoved(t *testing.T) {
	for _, add := range []bool{true, false} {
		f := newTimedFixture(t, visitEveRule, "See you tomorrow!\n", false)
		r := f.e.Study.Rule("visit-eve")
		oncePer := r.OncePer
		if add {
			r.OncePer = logic.Ref{}
		}
		f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-04-15"})
		f.planAt(t, "2027-04-14 12:00", "visit-eve")
		f.dispatchAt(t, "2027-04-14 18:00")
		if add {
			r.OncePer = oncePer
		} else {
			r.OncePer = logic.Ref{}
		}
		d := f.planAt(t, "2027-04-14 18:05", "visit-eve")
		wantReason(t, fmt.Sprintf("once_per added %v", add), d, engine.Done, "all 1 occurrences are past")
		f.dispatchAt(t, "2027-04-14 18:10")
		if got := f.createsTo(visitPhone); len(got) != 1 {
			t.Errorf("once_per added %v: Twilio got %d texts, want 1", add, len(got))
		}
	}
}

// TestSafetyTimedFallbackNeverDoublesAText: an occurrence already texted
// is not emailed as well when the number turns invalid before that
// occurrence expires; only the later occurrences fall back to email, also
// one whose text was queued before the number was spoiled (canceled right
// before it would go, and emailed instead).
func TestSafetyTimedFallbackNeverDoublesAText(t *testing.T) {
	const rule = `
  - name: quit-support
    when: "[consent_given] = '1'"
    channel: sms
    to: "[mobile_phone]"
    template: timed
    start: { field: "[baseline_date]", days: 7, at: ["10:00", "18:00"] }
    fallback: { to: "[email]", subject: "Keep going" }
`
	f := newTimedFixture(t, rule, "Keep going!\n", false)
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "baseline_date": "2027-03-03"})
	f.planAt(t, "2027-03-10 09:00", "quit-support")
	f.dispatchAt(t, "2027-03-10 10:00")
	if n := len(f.createsTo(visitPhone)); n != 1 {
		t.Fatalf("Twilio got %d texts, want occurrence 1", n)
	}
	f.load(t, "site_a", map[string]string{"record_id": visitRecord, "mobile_phone": "call my sister"})
	f.planAt(t, "2027-03-10 10:35", "quit-support")
	f.dispatchAt(t, "2027-03-10 10:40")
	for _, m := range f.messages(t, "quit-support") {
		if m.Channel == storage.ChannelEmail && m.Occurrence == 1 {
			t.Errorf("occurrence 1 was texted, yet an email %s is stored (%s)", m.Key, m.State)
		}
	}
	if n := len(f.env.SMTP.Messages()); n != 0 {
		t.Errorf("the SMTP server got %d emails, want none before occurrence 2", n)
	}
	// At 18:00 the queued text of occurrence 2 finds the number spoiled:
	// canceled, and its email fallback queued and sent instead.
	f.dispatchAt(t, "2027-03-10 18:00")
	f.dispatchAt(t, "2027-03-10 18:01")
	if n := len(f.env.SMTP.Messages()); n != 1 {
		t.Errorf("the SMTP server got %d emails, want occurrence 2's", n)
	}
}
