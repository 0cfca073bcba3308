package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/email/smtptest"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// The demo participants the fallback tests follow (site_a): Grace has no
// phone number, Ana's texts are delivered, Maya's end undelivered (30003),
// Jamal's number is changed or refused per test, Carmen has neither a
// valid number nor an email address.
const (
	fbGrace, fbGraceEmail = "7", "grace.garcia@example.org"
	fbAna, fbAnaPhone     = "1", "+14155550100"
	fbAnaEmail            = "ana.alvarez@example.org"
	fbMaya, fbMayaPhone   = "13", "+13125550112"
	fbMayaEmail           = "maya.martin@example.org"
	fbJamal, fbJamalPhone = "10", "+15105550109"
	fbJamalEmail          = "jamal.johnson@example.org"
	fbCarmen              = "29"
)

// newFallbackFixture is the demo study with an SMS rule, check-in, that
// falls back to email; fallback is the rule's fallback mapping.
func newFallbackFixture(t *testing.T, fallback string) *fixture {
	t.Helper()
	dir := t.TempDir()
	copyDemo(t, dir)
	rule := `
  - name: check-in
    when: "[consent_given] = '1'"
    channel: sms
    to: "[mobile_phone]"
    template: check-in
    fallback: ` + fallback + "\n"
	ruleFile := filepath.Join(dir, "rules", "site_a.yaml")
	data, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ruleFile, append(data, rule...), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl := "Hi [first_name], please call the study team this week.\n"
	if err := os.WriteFile(filepath.Join(dir, "templates", "check-in.sms.txt"), []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	return newFixtureWith(t, demo.Options{Dir: dir})
}

// planCheckIn exports, plans and enqueues check-in for some records and
// returns the decisions by record.
func (f *fixture) planCheckIn(t *testing.T, records ...string) map[string]engine.Decision {
	t.Helper()
	snaps, err := f.e.Export(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	only := map[string]bool{}
	for _, r := range records {
		only[r] = true
	}
	plan, err := f.e.Plan(f.ctx, snaps, f.clk.Now(), engine.PlanOptions{Rules: map[string]bool{"check-in": true}, Records: only})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.Store.EnqueueBatch(f.ctx, plan.Messages()); err != nil {
		t.Fatal(err)
	}
	out := map[string]engine.Decision{}
	for _, d := range plan.Decisions {
		out[d.Record] = d
	}
	return out
}

// sendAndTrack dispatches what is due (with data older than the planner's
// read, so the recheck reads REDCap again) and polls Twilio a few times.
func (f *fixture) sendAndTrack(t *testing.T) {
	t.Helper()
	for range 4 {
		f.clk.Advance(5 * time.Minute)
		if _, err := f.e.Dispatch(f.ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := f.e.Track(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// emailsTo are the emails the SMTP server received for addr.
func (f *fixture) emailsTo(addr string) []smtptest.Received {
	var out []smtptest.Received
	for _, m := range f.env.SMTP.Messages() {
		for _, to := range m.To {
			if strings.EqualFold(to, addr) {
				out = append(out, m)
			}
		}
	}
	return out
}

// TestSafetyFallbackWhenNoValidNumber: a participant with no number, with an
// invalid one, or with one Twilio flagged gets one email instead of the
// text — under a key of its own, with a reason that names the fallback and
// never the address in full — and nothing more at the next plans. Without
// an email address, or when fallback.on leaves the reason out, the row is
// skipped and nothing is sent.
func TestSafetyFallbackWhenNoValidNumber(t *testing.T) {
	cases := []struct {
		name, fallback, record, email string
		setup                         func(t *testing.T, f *fixture)
		reason                        string // in the decision's reason
	}{
		{name: "missing", fallback: `{ to: "[email]" }`, record: fbGrace, email: fbGraceEmail,
			reason: "no phone number in [mobile_phone]; email fallback to "},
		{name: "invalid", fallback: `{ to: "[email]" }`, record: fbJamal, email: fbJamalEmail,
			setup: func(t *testing.T, f *fixture) {
				f.load(t, "site_a", map[string]string{"record_id": fbJamal, "mobile_phone": "555-12"})
			},
			reason: "invalid phone number in [mobile_phone]"},
		{name: "flagged by Twilio", fallback: `{ to: "[email]", on: [invalid] }`, record: fbAna, email: fbAnaEmail,
			setup: func(t *testing.T, f *fixture) {
				if err := f.e.Store.FlagBadNumber(f.ctx, storage.BadNumber{Phone: fbAnaPhone, Code: 21614, At: f.clk.Now()}); err != nil {
					t.Fatal(err)
				}
			},
			reason: "cannot get texts"},
		{name: "no email either", fallback: `{ to: "[email]" }`, record: fbCarmen,
			reason: "; no email fallback: no email address in [email]"},
		{name: "reason not listed in on", fallback: `{ to: "[email]", on: [invalid, undelivered] }`, record: fbGrace,
			reason: "no phone number in [mobile_phone]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFallbackFixture(t, tc.fallback)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			d := f.planCheckIn(t, tc.record)[tc.record]
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q, want it to hold %q", d.Reason, tc.reason)
			}
			if strings.Contains(d.Reason, "@") && tc.email != "" && strings.Contains(d.Reason, tc.email) {
				t.Errorf("reason %q shows the address in full", d.Reason)
			}
			if tc.email == "" {
				if d.Outcome != engine.Skipped || d.Message != nil {
					t.Fatalf("outcome %s, want skipped without a message", d.Outcome)
				}
			} else {
				if d.Outcome != engine.Send || d.Message == nil {
					t.Fatalf("outcome %s (%s), want send", d.Outcome, d.Reason)
				}
				if m := d.Message; m.Channel != storage.ChannelEmail || m.To != tc.email || !rules.IsFallbackKey(m.Key) {
					t.Errorf("message %s to %s key %s, want an email to %s under a fallback key", m.Channel, m.To, m.Key, tc.email)
				}
			}
			f.sendAndTrack(t)
			d2 := f.planCheckIn(t, tc.record)[tc.record]
			if d2.Message != nil {
				t.Errorf("second plan: %s (%s), want nothing new", d2.Outcome, d2.Reason)
			}
			f.sendAndTrack(t)
			want := 0
			if tc.email != "" {
				want = 1
				if got := f.emailsTo(tc.email); len(got) == 1 && !strings.Contains(got[0].Text, "please call the study team") {
					t.Errorf("email text %q, want the SMS text", got[0].Text)
				}
			}
			if got := len(f.emailsTo(tc.email)); tc.email != "" && got != want {
				t.Errorf("%d emails to %s, want %d", got, tc.email, want)
			}
			for _, c := range f.env.Twilio.Creates() {
				if strings.Contains(c.Body, "please call the study team") {
					t.Errorf("a text went to %s", c.To)
				}
			}
		})
	}
}

// TestSafetyFallbackAfterTextDidNotArrive: a text that ends undelivered
// (polled), or that Twilio refuses at create as unable to reach the
// number, gets one email in its place, from the current data; a delivered
// text gets none. Polling again, a repeated status callback and the next
// plans add nothing: one text and one email per occurrence at most. The
// rule's write-back fields keep the text's outcome.
func TestSafetyFallbackAfterTextDidNotArrive(t *testing.T) {
	f := newFallbackFixture(t, `{ to: "[email]" }`)
	f.env.Twilio.SetOutcome(fbJamalPhone, twiliotest.Outcome{CreateError: 21614})
	ds := f.planCheckIn(t, fbAna, fbMaya, fbJamal)
	for _, r := range []string{fbAna, fbMaya, fbJamal} {
		if d := ds[r]; d.Outcome != engine.Send || d.Message.Channel != storage.ChannelSMS {
			t.Fatalf("record %s: %s on %v, want a text planned", r, d.Outcome, d.Message)
		}
	}
	// The participant's email changes after the text: the email goes to
	// the current address.
	const newMaya = "maya.m@example.org"
	f.load(t, "site_a", map[string]string{"record_id": fbMaya, "email": newMaya})
	f.sendAndTrack(t)
	maya := f.byKey(t, ds[fbMaya].Message.Key)
	if maya.State != storage.StateUndelivered {
		t.Fatalf("Maya's text is %s, want undelivered", maya.State)
	}
	// A late, repeated callback and more polls change nothing.
	if err := f.e.HandleStatus(f.ctx, maya.SID, "undelivered", 30003); err != nil {
		t.Fatal(err)
	}
	f.sendAndTrack(t)
	for _, r := range []string{fbAna, fbMaya, fbJamal} {
		if d := f.planCheckIn(t, r)[r]; d.Message != nil {
			t.Errorf("record %s planned again: %s", r, d.Reason)
		}
	}
	f.sendAndTrack(t)
	if n := len(f.emailsTo(newMaya)); n != 1 {
		t.Errorf("%d emails to Maya's current address, want 1", n)
	}
	if n := len(f.emailsTo(fbMayaEmail)); n != 0 {
		t.Errorf("%d emails to Maya's old address, want 0", n)
	}
	if n := len(f.emailsTo(fbJamalEmail)); n != 1 {
		t.Errorf("%d emails to Jamal (text refused at create), want 1", n)
	}
	if n := len(f.emailsTo(fbAnaEmail)); n != 0 {
		t.Errorf("%d emails to Ana (text delivered), want 0", n)
	}
	if n := len(f.createsTo(fbMayaPhone)); n != 1 {
		t.Errorf("%d texts to Maya, want 1", n)
	}
	fb := f.byKey(t, maya.Key+rules.FallbackKeySuffix)
	if fb.Occurrence != maya.Occurrence || fb.State != storage.StateSent {
		t.Errorf("fallback: occurrence %d state %s, want occurrence %d sent", fb.Occurrence, fb.State, maya.Occurrence)
	}
	f.assertNoDuplicates(t)
}

// TestSafetyFallbackNeverAfterStopOrWithdrawal: no email goes in place of a
// text to a participant who texted STOP (before the plan, or between the
// text's failure and the email), nor to one who withdrew meanwhile.
func TestSafetyFallbackNeverAfterStopOrWithdrawal(t *testing.T) {
	cases := []struct {
		name        string
		beforePlan  bool
		change      func(t *testing.T, f *fixture)
		wantInPlace string // the queued email's cancel reason
	}{
		{name: "STOP before the plan", beforePlan: true, change: func(t *testing.T, f *fixture) {
			if err := f.e.Store.OptOut(f.ctx, fbMayaPhone, "sms", f.clk.Now()); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "STOP after the text failed", change: func(t *testing.T, f *fixture) {
			if err := f.e.Store.OptOut(f.ctx, fbMayaPhone, "sms", f.clk.Now()); err != nil {
				t.Fatal(err)
			}
		}, wantInPlace: "opted out"},
		{name: "withdrawn after the text failed", change: func(t *testing.T, f *fixture) {
			f.load(t, "site_a", map[string]string{"record_id": fbMaya, "consent_given": "0"})
		}, wantInPlace: "condition is no longer true"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFallbackFixture(t, `{ to: "[email]" }`)
			if tc.beforePlan {
				tc.change(t, f)
				d := f.planCheckIn(t, fbMaya)[fbMaya]
				if d.Outcome != engine.Skipped || d.Message != nil || d.Reason != "opted out" {
					t.Fatalf("%s %q, want skipped: opted out", d.Outcome, d.Reason)
				}
				f.sendAndTrack(t)
			} else {
				d := f.planCheckIn(t, fbMaya)[fbMaya]
				if _, err := f.e.Dispatch(f.ctx); err != nil {
					t.Fatal(err)
				}
				// Polled until undelivered, without a dispatch between: the
				// fallback is queued, not sent.
				for range 4 {
					f.clk.Advance(time.Minute)
					if _, err := f.e.Track(f.ctx); err != nil {
						t.Fatal(err)
					}
				}
				fb := f.byKey(t, d.Message.Key+rules.FallbackKeySuffix)
				if fb.State != storage.StatePlanned {
					t.Fatalf("fallback %s, want planned", fb.State)
				}
				tc.change(t, f)
				f.sendAndTrack(t)
				fb = f.byKey(t, fb.Key)
				if fb.State != storage.StateCanceled || !strings.Contains(fb.Reason, tc.wantInPlace) {
					t.Errorf("fallback %s %q, want canceled: %s", fb.State, fb.Reason, tc.wantInPlace)
				}
			}
			if n := len(f.emailsTo(fbMayaEmail)); n != 0 {
				t.Errorf("%d emails to Maya, want 0", n)
			}
		})
	}
}

// byKey reads one outbox row by its key.
func (f *fixture) byKey(t *testing.T, key string) storage.Message {
	t.Helper()
	m, err := f.e.Store.ByKey(f.ctx, key)
	if err != nil {
		t.Fatalf("message %s: %v", key, err)
	}
	return m
}

// TestSafetyFallbackCountsAsOneOccurrence: a text and the email sent in its
// place are one occurrence of the rule's repeat schedule: the participant
// still gets the next occurrence, and only max in all.
func TestSafetyFallbackCountsAsOneOccurrence(t *testing.T) {
	f := newFallbackFixture(t, "{ to: \"[email]\" }\n    repeat: { every: 1h, max: 2 }")
	first := f.planCheckIn(t, fbMaya)[fbMaya]
	if first.Message == nil || first.Message.Occurrence != 1 {
		t.Fatalf("first plan: %s %q", first.Outcome, first.Reason)
	}
	f.sendAndTrack(t)
	if n := len(f.emailsTo(fbMayaEmail)); n != 1 {
		t.Fatalf("%d fallback emails after the first text, want 1", n)
	}
	f.clk.Advance(2 * time.Hour)
	// The undelivered text flagged the number: the second occurrence is an
	// email from the start.
	second := f.planCheckIn(t, fbMaya)[fbMaya]
	if second.Message == nil || second.Message.Occurrence != 2 {
		t.Fatalf("second plan: %s %q, want occurrence 2 planned", second.Outcome, second.Reason)
	}
	f.sendAndTrack(t)
	if n := len(f.emailsTo(fbMayaEmail)); n != 2 {
		t.Errorf("%d emails after the second occurrence, want 2", n)
	}
	f.clk.Advance(2 * time.Hour)
	if third := f.planCheckIn(t, fbMaya)[fbMaya]; third.Message != nil || third.Outcome != engine.Done {
		t.Errorf("third plan: %s %q, want done (2 of 2)", third.Outcome, third.Reason)
	}
}
