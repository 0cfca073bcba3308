package engine_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/storage"
)

// A site B participant with an unfinished diary, who asks for a pause.
const (
	pausingPhone = "+13125550152" // B-003
)

// newReplyFixture is the demo study with site B's reply rules replaced by
// rulesYAML and extra data dictionary rows appended (on the visit form).
func newReplyFixture(t *testing.T, replies, dictRows string) *fixture {
	t.Helper()
	dir := t.TempDir()
	copyDemo(t, dir)
	ruleFile := filepath.Join(dir, "rules", "site_b.yaml")
	data, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("replies:"))
	if i < 0 {
		t.Fatal("no replies in site_b.yaml")
	}
	data = append(data[:i:i], replies...)
	if err := os.WriteFile(ruleFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dictFile := filepath.Join(dir, "redcap", "site_b.dictionary.csv")
	d, err := os.ReadFile(dictFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dictFile, append(d, dictRows...), 0o644); err != nil {
		t.Fatal(err)
	}
	return newFixtureWith(t, demo.Options{Dir: dir})
}

// TestSafetyReplySetsNowAsFieldExpects: [now] and [today] are the time and
// date the text arrived in the study's zone (not the server's), written as
// each field's validation takes them: REDCap refuses a datetime in a date
// field and a date in a datetime field.
func TestSafetyReplySetsNowAsFieldExpects(t *testing.T) {
	f := newReplyFixture(t, `replies:
  - name: visit-confirm
    keywords: [YES]
    event: week_4_arm_1
    set: { visit_confirmed: "1", confirmed_on: "[today]", confirmed_at: "[now]", confirmed_at_s: "[now]", confirmed_note: "[now]", confirmed_day: "[now]" }
`, `confirmed_on,visit,,text,"On",,,date_mdy,,,,,,,,,,
confirmed_at,visit,,text,"At",,,datetime_ymd,,,,,,,,,,
confirmed_at_s,visit,,text,"At (s)",,,datetime_seconds_dmy,,,,,,,,,,
confirmed_note,visit,,text,"Note",,,,,,,,,,,,,
confirmed_day,visit,,text,"Day",,,date_ymd,,,,,,,,,,
`)
	f.enqueue(t, "diary-reminder") // exports: the participants' numbers are known
	// 23:30 in Los Angeles is 07:30 UTC the next day: [today] is still the 23rd.
	f.clk.Advance(13*time.Hour + 30*time.Minute + 15*time.Second)
	f.inbound(t, "SMyes1", pausingPhone, "Yes!")
	f.report(t)
	row := f.redcapRow("site_b", "B-003", "week_4_arm_1", 0)
	want := map[string]string{
		"visit_confirmed": "1",
		"confirmed_on":    "2026-11-23",
		"confirmed_at":    "2026-11-23 23:30",
		"confirmed_at_s":  "2026-11-23 23:30:15",
		"confirmed_note":  "2026-11-23 23:30:15",
		"confirmed_day":   "2026-11-23",
	}
	for field, v := range want {
		if row[field] != v {
			t.Errorf("REDCap %s = %q, want %q", field, row[field], v)
		}
	}
}

// TestSafetyPausedParticipantNotTexted: a participant who texts PAUSE (a
// reply with pause: 24h) gets no text during the pause — not the message
// already queued for them (it waits, or expires by its own expiry), nor a
// new one planned meanwhile (deferred to the pause's end) — while others
// are texted as usual; after the pause they are texted again. The staff
// address is told once by email, with the record id and the text, however
// often Twilio retries the webhook.
func TestSafetyPausedParticipantNotTexted(t *testing.T) {
	f := newReplyFixture(t, `replies:
  - name: pause-me
    keywords: [PAUSE]
    pause: 24h
    notify: coordinator@example.edu
    reply: "OK, no texts for a day."
`, "")
	f.enqueue(t, "diary-reminder")
	before := f.messages(t, "diary-reminder")
	queued := 0
	for _, m := range before {
		if m.To == pausingPhone && m.State == storage.StatePlanned {
			queued++
		}
	}
	if queued == 0 {
		t.Fatal("no diary reminder queued for the participant who pauses")
	}
	pausedAt := f.clk.Now()
	for range 2 { // Twilio retries the webhook: the same MessageSid
		answer, err := f.e.HandleInbound(f.ctx, engine.InboundSMS{MessageSID: "SMpause1", From: pausingPhone, To: "+14155550100", Body: "pause"})
		if err != nil || answer != "OK, no texts for a day." {
			t.Fatalf("answer %q, %v", answer, err)
		}
	}
	end := pausedAt.Add(24 * time.Hour)

	textedDuring := func() {
		t.Helper()
		for _, c := range f.env.Twilio.Attempts() {
			if c.To == pausingPhone {
				t.Fatalf("a text went to the participant during their pause (%d attempts so far)", len(f.env.Twilio.Attempts()))
			}
		}
	}
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	textedDuring()
	others := 0
	for _, c := range f.env.Twilio.Attempts() {
		if c.To != pausingPhone {
			others++
		}
	}
	if others == 0 {
		t.Error("the pause held back another participant's text")
	}
	for _, m := range f.messages(t, "diary-reminder") {
		if m.To == pausingPhone && m.State != storage.StateRetry && m.State != storage.StateExpired {
			t.Errorf("queued message %d of the paused participant is %s, want waiting (retry) or expired", m.ID, m.State)
		}
		if m.To == pausingPhone && m.State == storage.StateRetry && m.NotBefore.Before(end) {
			t.Errorf("queued message %d waits until %v, before the pause ends at %v", m.ID, m.NotBefore, end)
		}
	}

	// The staff notification: one email, with the record id and the text.
	var notes []storage.Message
	for _, m := range f.messages(t, "reply:pause-me") {
		notes = append(notes, m)
	}
	if len(notes) != 1 {
		t.Fatalf("%d notifications queued, want 1", len(notes))
	}
	got := 0
	for _, r := range f.env.SMTP.Messages() {
		if len(r.To) == 1 && r.To[0] == "coordinator@example.edu" {
			got++
			if !strings.Contains(r.Text, "B-003") || !strings.Contains(r.Text, "pause") || !strings.Contains(r.Subject, "B-003") {
				t.Errorf("notification lacks the record id or the text: %q / %q", r.Subject, r.Text)
			}
		}
	}
	if got != 1 {
		t.Errorf("the coordinator got %d emails, want 1", got)
	}

	// A pass during the pause defers what it plans for the participant to
	// the pause's end.
	f.clk.Advance(6 * time.Hour)
	plan := f.enqueue(t, "diary-reminder")
	deferred := 0
	for _, d := range plan.Decisions {
		if d.Record != "B-003" || d.Message == nil {
			continue
		}
		if d.Outcome != engine.Deferred || !strings.Contains(d.Reason, "paused") || d.Message.NotBefore.Before(end) {
			t.Errorf("during the pause: %s %q not before %v; want deferred to after %v", d.Outcome, d.Reason, d.Message.NotBefore, end)
		}
		deferred++
	}
	if deferred == 0 {
		t.Fatal("nothing planned for the participant during the pause")
	}
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	textedDuring()

	// After the pause (and within the allowed hours) they get their text.
	f.clk.Set(end.Add(time.Minute))
	for range 3 {
		if _, err := f.e.Dispatch(f.ctx); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Hour)
	}
	after := 0
	for _, c := range f.env.Twilio.Attempts() {
		if c.To == pausingPhone {
			after++
		}
	}
	if after == 0 {
		t.Error("the participant was never texted again after the pause")
	}
	f.assertNoDuplicates(t)
}
