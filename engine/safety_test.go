package engine_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/email/smtptest"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
	"github.com/nudge-study/nudge/storage"
)

var la = func() *time.Location {
	l, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		panic(err)
	}
	return l
}()

// byRecord returns a rule's messages by record id.
func (f *fixture) byRecord(t *testing.T, rule string) map[string]storage.Message {
	t.Helper()
	out := map[string]storage.Message{}
	for _, m := range f.messages(t, rule) {
		out[m.Record] = m
	}
	return out
}

// load changes participants' values in the REDCap simulator, as a
// coordinator saving a form would.
func (f *fixture) load(t *testing.T, project string, rows ...map[string]string) {
	t.Helper()
	if err := f.env.REDCap.Load(f.env.Token(project), rows); err != nil {
		t.Fatal(err)
	}
}

// redcapValue reads one field of a classic project's record from the
// REDCap simulator.
func (f *fixture) redcapValue(project, record, field string) string {
	for _, row := range f.env.REDCap.Export(f.env.Token(project)) {
		if row["record_id"] == record {
			return row[field]
		}
	}
	return ""
}

func (f *fixture) createsTo(to string) []twiliotest.Create {
	var out []twiliotest.Create
	for _, c := range f.env.Twilio.Creates() {
		if c.To == to {
			out = append(out, c)
		}
	}
	return out
}

// TestSafetyQueuedMessageFollowsCurrentData: welcome-sms is planned at
// 20:30 and held to 09:00; at 20:45 the coordinator withdraws one
// participant and corrects another's number (or disables or deletes the
// rule). At noon the withdrawn participant gets nothing (canceled, and
// REDCap says so), the corrected one is texted at the new number only, and
// Twilio is told the text is worthless after the window closes.
func TestSafetyQueuedMessageFollowsCurrentData(t *testing.T) {
	const (
		withdrawn, corrected = "5", "10"
		oldNumber, newNumber = "+15105550109", "+15105550188"
	)
	tests := []struct {
		name   string
		change func(f *fixture)
		// want is each record's outcome at noon: "canceled" or the number
		// texted.
		want map[string]string
	}{
		{"withdrawn and corrected", func(f *fixture) {
			f.load(t, "site_a", map[string]string{"record_id": withdrawn, "consent_given": "0"},
				map[string]string{"record_id": corrected, "mobile_phone": newNumber, "first_name": "Zoë"})
		}, map[string]string{withdrawn: "canceled", corrected: newNumber}},
		{"rule disabled", func(f *fixture) { f.e.Study.Rule("welcome-sms").Enabled = false },
			map[string]string{withdrawn: "canceled", corrected: "canceled"}},
		{"rule deleted", func(f *fixture) {
			rs := f.e.Study.Rules[:0]
			for _, r := range f.e.Study.Rules {
				if r.Name != "welcome-sms" {
					rs = append(rs, r)
				}
			}
			f.e.Study.Rules = rs
		}, map[string]string{withdrawn: "canceled", corrected: "canceled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.clk.Set(time.Date(2026, 11, 23, 20, 30, 0, 0, la))
			f.enqueue(t, "welcome-sms")
			before := f.byRecord(t, "welcome-sms")
			for _, rec := range []string{withdrawn, corrected} {
				if m := before[rec]; m.State != storage.StatePlanned || m.NotBefore.In(la).Hour() != 9 {
					t.Fatalf("record %s at 20:30: %s due %s, want planned for 09:00", rec, m.State, m.NotBefore.In(la))
				}
			}
			f.clk.Set(time.Date(2026, 11, 23, 20, 45, 0, 0, la))
			tt.change(f)

			noon := time.Date(2026, 11, 24, 12, 0, 0, 0, la)
			f.clk.Set(noon)
			if _, err := f.e.Dispatch(f.ctx); err != nil {
				t.Fatal(err)
			}
			after := f.byRecord(t, "welcome-sms")
			for rec, want := range tt.want {
				m := after[rec]
				if want == "canceled" {
					if m.State != storage.StateCanceled || m.SID != "" || m.Reason == "" {
						t.Errorf("record %s: %s (SID %q, reason %q), want canceled with a reason", rec, m.State, m.SID, m.Reason)
					}
					continue
				}
				if m.SID == "" || m.To != want {
					t.Errorf("record %s: %s to %s, want sent to %s", rec, m.State, m.To, want)
				}
				cs := f.createsTo(want)
				if len(cs) != 1 {
					t.Fatalf("%d texts to the new number, want 1", len(cs))
				}
				if !strings.Contains(cs[0].Body, "Zoë") || cs[0].Body != m.Body {
					t.Errorf("sent %q (stored %q), want the current text with the corrected name", cs[0].Body, m.Body)
				}
				// The window closes at 20:00: 8 hours after noon (less the
				// seconds the pacer spent on earlier texts).
				if v, _ := strconv.Atoi(cs[0].ValidityPeriod); v > 8*3600 || v < 8*3600-60 {
					t.Errorf("ValidityPeriod %q, want about %d s (until the window closes)", cs[0].ValidityPeriod, 8*3600)
				}
			}
			if n := len(f.createsTo(oldNumber)); n != 0 {
				t.Errorf("%d texts to the old number", n)
			}
			if tt.want[withdrawn] == "canceled" && len(f.createsTo("+13125550104")) != 0 {
				t.Error("the withdrawn participant was texted")
			}
			if _, err := f.e.Report(f.ctx); err != nil {
				t.Fatal(err)
			}
			if got := f.redcapValue("site_a", withdrawn, "welcome_sms_status"); got != "canceled" && tt.name != "rule deleted" {
				t.Errorf("REDCap welcome_sms_status of the withdrawn participant = %q, want canceled", got)
			}
		})
	}
}

// TestSafetyKillSwitch: `nudge pause` (stored in the database) holds a
// rule's or a project's messages in every process until `nudge resume`;
// the run summary and /healthz say so.
func TestSafetyKillSwitch(t *testing.T) {
	for _, p := range []storage.Pause{
		{Scope: storage.PauseAll, Reason: "IRB review"},
		{Scope: storage.PauseRule, Name: "diary-reminder"},
		{Scope: storage.PauseProject, Name: "site_b"},
	} {
		t.Run(p.Scope, func(t *testing.T) {
			f := newFixture(t)
			f.enqueue(t, "diary-reminder")
			p.At = f.clk.Now()
			if err := f.e.Store.SetPause(f.ctx, p); err != nil {
				t.Fatal(err)
			}
			st, err := f.e.Dispatch(f.ctx)
			if err != nil {
				t.Fatal(err)
			}
			n := len(f.messages(t, "diary-reminder"))
			if st.Sent != 0 || st.Held != n || len(f.env.Twilio.Attempts()) != 0 {
				t.Fatalf("paused: %+v, %d creates; want all %d held", st, len(f.env.Twilio.Attempts()), n)
			}
			held, err := f.e.Held(f.ctx)
			if err != nil || len(held) != 1 || !strings.Contains(held[0], "paused") {
				t.Errorf("Held = %q, %v", held, err)
			}
			if _, err := f.e.Store.Resume(f.ctx, "", ""); err != nil {
				t.Fatal(err)
			}
			if st, err = f.e.Dispatch(f.ctx); err != nil || st.Sent+st.Failed != n {
				t.Errorf("after resume: %+v, %v; want all %d settled", st, err, n)
			}
		})
	}
}

// TestSafetyUnansweredCreateNeverSentTwice: Twilio takes a create but the
// answer never comes (a timeout after the request was written, or a 5xx
// from Twilio's edge after the message was created), and the message shows
// in Twilio's list only minutes later. The row stays "sending", is looked up
// after a settle delay more than once, and is found: one text.
func TestSafetyUnansweredCreateNeverSentTwice(t *testing.T) {
	for _, fault := range []twiliotest.Fault{
		{Delay: time.Second, Land: 5 * time.Minute}, // longer than the 300 ms client timeout
		{Status: 500, AfterCreate: true, Land: 5 * time.Minute},
		{Status: 502, AfterCreate: true, HTML: true},
		{Status: 503, AfterCreate: true, Land: 4 * time.Minute},
	} {
		t.Run(strconv.Itoa(fault.Status), func(t *testing.T) {
			f := newFixture(t)
			f.enqueue(t, "diary-reminder")
			f.env.Twilio.Fault(fault)
			st, err := f.e.Dispatch(f.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Unsettled != 1 {
				t.Fatalf("unsettled %d, want 1: %+v", st.Unsettled, st)
			}
			f.clk.Advance(30 * time.Second)
			if _, err := f.e.Dispatch(f.ctx); err != nil {
				t.Fatal(err)
			}
			f.settle(t)
			f.assertNoDuplicates(t)
			for _, m := range f.messages(t, "diary-reminder") {
				if m.SID == "" && m.State != storage.StateFailed {
					t.Errorf("record %s: %s without a SID", m.Record, m.State)
				}
			}
		})
	}
}

// TestSafetyCreateNeverTakenIsSentAfterLookups: a 503 that Twilio answered
// before creating anything. Repeated lookups, the last well after the
// attempt, prove it absent; only then is it sent, once.
func TestSafetyCreateNeverTakenIsSentAfterLookups(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	f.env.Twilio.Fault(twiliotest.Fault{Status: 503})
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	sending, _ := f.e.Store.Sending(f.ctx)
	if len(sending) != 1 {
		t.Fatalf("%d rows sending, want the unanswered one", len(sending))
	}
	m := sending[0]
	start := f.clk.Now()
	f.settle(t)
	cs := f.createsTo(m.To)
	if len(cs) != 1 {
		t.Fatalf("%d texts, want 1", len(cs))
	}
	if waited := cs[0].Time.Sub(start); waited < 10*time.Minute {
		t.Errorf("resent %v after the attempt; want only after lookups at least 10 minutes later", waited)
	}
}

// TestSafetyShutdownFinishesTheCreate: SIGTERM while a create is in flight.
// The create finishes on its own context and its answer is stored; the
// next process sends nothing again, even though Twilio's list would not
// show the message yet.
func TestSafetyShutdownFinishesTheCreate(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	f.env.Twilio.Fault(twiliotest.Fault{Delay: 150 * time.Millisecond, Land: time.Hour})
	ctx, cancel := context.WithCancel(f.ctx)
	go func() { // the signal comes while the first create is in flight
		for len(f.env.Twilio.Attempts()) == 0 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := f.e.Dispatch(ctx); err == nil {
		t.Log("dispatch ended before the signal")
	}
	first := f.env.Twilio.Attempts()[0]
	got, err := f.e.Store.GetBySID(f.ctx, first.SID)
	if err != nil || got.State != storage.StateSent {
		t.Fatalf("the interrupted create: %+v, %v; want stored as sent", got, err)
	}
	f.clk.Advance(time.Hour)
	f.settle(t)
	if n := len(f.createsTo(got.To)); n != 1 {
		t.Errorf("%d texts to the participant, want 1", n)
	}
}

// TestSafetyEmailLostReplyNotResent: the SMTP server takes an email but its
// final answer is lost. The email goes to review and is never sent again;
// every attempt of one outbox row carries the same Message-ID.
func TestSafetyEmailLostReplyNotResent(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "welcome-email")
	f.env.SMTP.SetFault(smtptest.FaultDrop)
	st, err := f.e.Dispatch(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Review == 0 {
		t.Fatalf("no email set aside for review: %+v", st)
	}
	f.env.SMTP.SetFault(smtptest.FaultNone)
	f.clk.Advance(time.Hour)
	f.settle(t)
	ids := map[string]int{}
	for _, m := range f.env.SMTP.Messages() {
		ids[m.Header.Get("Message-Id")]++
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("Message-ID %s received %d times", id, n)
		}
	}
	for _, m := range f.messages(t, "welcome-email") {
		if m.State == storage.StateReview && !strings.Contains(m.Reason, "check") {
			t.Errorf("review reason %q does not say what to do", m.Reason)
		}
	}
}

// TestSafetyRotatedTokenPausesNotFails: a rotated auth token (401/20003)
// pauses sending and keeps the queue; nothing is failed or written back as
// failed; when the token is right again the queue goes out.
func TestSafetyRotatedTokenPausesNotFails(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	n := len(f.messages(t, "diary-reminder"))
	f.env.Twilio.SetAuthToken("rotated0token0value")
	st, err := f.e.Dispatch(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Failed != 0 || st.Sent != 0 || len(st.Problems) == 0 || !strings.Contains(st.Problems[0], "auth token") {
		t.Fatalf("with a wrong token: %+v; want nothing failed and the cause named", st)
	}
	for range 3 { // more passes while the token is wrong: still nothing burnt
		f.clk.Advance(10 * time.Minute)
		if _, err := f.e.Dispatch(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.e.Report(f.ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range f.messages(t, "diary-reminder") {
		if !m.State.Queued() || m.Attempts > 0 {
			t.Errorf("record %s: %s after %d attempts; want queued, no attempt counted", m.Record, m.State, m.Attempts)
		}
	}
	paused, _ := f.e.Store.PausedSenders(f.ctx)
	if len(paused) != 1 || paused[0].Sender != storage.AccountSender {
		t.Errorf("paused senders %+v, want the account", paused)
	}
	f.env.Twilio.SetAuthToken(demo.AuthToken)
	f.clk.Advance(time.Hour)
	if st, err = f.e.Dispatch(f.ctx); err != nil || st.Sent+st.Failed != n {
		t.Errorf("after the token is fixed: %+v, %v; want all %d settled", st, err, n)
	}
	if paused, _ := f.e.Store.PausedSenders(f.ctx); len(paused) != 0 {
		t.Errorf("still paused: %+v", paused)
	}
	f.assertNoDuplicates(t)
}

// TestSafetyOutageNeverBurnsTheQueue: 429s for 40 minutes. Nothing fails
// for it; the sender backs off; once Twilio takes messages again each goes
// once.
func TestSafetyOutageNeverBurnsTheQueue(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	n := len(f.messages(t, "diary-reminder"))
	f.env.Twilio.Fault(twiliotest.Fault{Status: 429, Times: 1000, RetryAfter: "60"})
	start := f.clk.Now()
	var attempts int
	for f.clk.Now().Sub(start) < 40*time.Minute {
		st, err := f.e.Dispatch(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Failed != 0 || st.Sent != 0 {
			t.Fatalf("during the outage: %+v", st)
		}
		f.clk.Advance(time.Minute)
		attempts = len(f.env.Twilio.Attempts())
	}
	t.Logf("%d creates in 40 minutes of 429s", attempts)
	if attempts > 20 {
		t.Errorf("%d creates in 40 minutes of 429s: the sender did not back off", attempts)
	}
	f.env.Twilio.ClearFaults() // Twilio takes messages again
	f.clk.Advance(time.Hour)
	st, err := f.e.Dispatch(f.ctx)
	if err != nil || st.Sent+st.Failed != n {
		t.Errorf("after the outage: %+v, %v; want all %d settled", st, err, n)
	}
	f.assertNoDuplicates(t)
}

// TestSafetyPerMessageOutcomes: Twilio's per-message refusals settle that
// message alone — a bad number is flagged and skipped later, 21610 records
// the opt-out and writes it back to REDCap, 21608 fails with advice, and a
// carrier-filtered text (30007) goes to review.
func TestSafetyPerMessageOutcomes(t *testing.T) {
	f := newFixture(t)
	const optedOut, trial = "+13125550104", "+15105550109" // records 5 and 10
	f.env.Twilio.SetOutcome(optedOut, twiliotest.Outcome{CreateError: 21610})
	f.env.Twilio.SetOutcome(trial, twiliotest.Outcome{CreateError: 21608})
	if _, err := f.e.Run(f.ctx, engine.PlanOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		f.clk.Advance(time.Minute)
		if _, err := f.e.Track(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.e.Report(f.ctx); err != nil {
		t.Fatal(err)
	}
	if out, _ := f.e.Store.IsOptedOut(f.ctx, optedOut); !out {
		t.Error("21610: the opt-out was not recorded")
	}
	if got := f.redcapValue("site_a", "5", "sms_opt_in"); got != "0" {
		t.Errorf("21610: REDCap sms_opt_in = %q, want 0", got)
	}
	welcome := f.byRecord(t, "welcome-sms")
	if m := welcome["10"]; m.State != storage.StateFailed || !strings.Contains(m.Reason, "verif") {
		t.Errorf("21608: %s %q, want failed with advice to verify the number", m.State, m.Reason)
	}
	bad, err := f.e.Store.BadNumbers(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"+15105550125", "+13125550112", "+12065550134", "+16175550169"} { // 21614, 30003, 30006, 30005
		if _, ok := bad[n]; !ok {
			t.Errorf("%s not flagged as a bad number (%v)", n, bad)
		}
	}
	if m := welcome["41"]; m.State != storage.StateReview {
		t.Errorf("30007: %s, want review", m.State)
	}
	// A later plan skips the flagged number with a reason a coordinator can act on.
	snaps, err := f.e.Export(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(100 * time.Hour)
	plan, err := f.e.Plan(f.ctx, snaps, f.clk.Now(), engine.PlanOptions{Rules: map[string]bool{"baseline-reminder": true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range plan.Decisions {
		if d.Record == "13" && (d.Outcome != engine.Skipped || !strings.Contains(d.Reason, "cannot get texts")) {
			t.Errorf("record 13 (30003): %s %q, want skipped for the flagged number", d.Outcome, d.Reason)
		}
	}
}

// TestSafetyOddStatusNeverStallsThePoller: Twilio reports statuses nudge
// did not know (partially_delivered) or that nobody knows yet. The poller
// stores or skips them for that message and goes on with the others.
func TestSafetyOddStatusNeverStallsThePoller(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	due, _ := f.e.Store.Due(f.ctx, "sms", f.clk.Now(), 0)
	f.env.Twilio.SetOutcome(due[0].To, twiliotest.Outcome{Final: "partially_delivered"})
	f.env.Twilio.SetOutcome(due[1].To, twiliotest.Outcome{Final: "teleported"})
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		f.clk.Advance(time.Minute)
		if _, err := f.e.Track(f.ctx); err != nil {
			t.Fatalf("Track: %v", err)
		}
	}
	for _, m := range f.messages(t, "diary-reminder") {
		switch {
		case m.To == due[0].To:
			if m.Status != "partially_delivered" || !m.State.Final() {
				t.Errorf("partially delivered: %s/%s", m.State, m.Status)
			}
		case m.To == due[1].To:
			if m.State != storage.StateSent {
				t.Errorf("unknown status: %s, want still sent", m.State)
			}
		case m.SID != "" && !m.State.Final():
			t.Errorf("record %s never polled to its final status: %s/%s", m.Record, m.State, m.Status)
		}
	}
}

// failingFetch is the real Twilio client with every status poll failing,
// as when a message was deleted at Twilio.
type failingFetch struct{ engine.SMSSender }

func (failingFetch) Fetch(context.Context, string) (sms.Message, error) {
	return sms.Message{}, &sms.Error{Code: 20404, HTTPStatus: 404, Message: "not found", Kind: sms.Permanent}
}

// TestSafetyTrackingEnds: a message whose carrier never confirms it, or
// whose every poll fails, is polled a bounded number of times and ends with
// the final status "unknown", which is written back.
func TestSafetyTrackingEnds(t *testing.T) {
	for _, tt := range []struct {
		name string
		prep func(f *fixture, to string)
	}{
		{"never confirmed", func(f *fixture, to string) { f.env.Twilio.SetOutcome(to, twiliotest.Outcome{Final: "sent"}) }},
		{"poll fails", func(f *fixture, _ string) { f.e.SMS = failingFetch{f.e.SMS} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.enqueue(t, "diary-reminder")
			due, _ := f.e.Store.Due(f.ctx, "sms", f.clk.Now(), 1)
			target := due[0]
			tt.prep(f, target.To)
			if _, err := f.e.Dispatch(f.ctx); err != nil {
				t.Fatal(err)
			}
			polls := 0 // in the fifth day
			for i := range 24 * 5 {
				f.clk.Advance(time.Hour)
				st, err := f.e.Track(f.ctx)
				if err != nil {
					t.Fatal(err)
				}
				if i >= 24*4 {
					polls += st.Polled
				}
			}
			m, _ := f.e.Store.Get(f.ctx, target.ID)
			if m.Status != storage.StatusUnknown || m.State != storage.StateUnknown {
				t.Errorf("after 5 days: %s/%s, want unknown", m.State, m.Status)
			}
			if polls > 0 {
				t.Errorf("%d polls on the fifth day, want none: tracking must end", polls)
			}
			if _, err := f.e.Report(f.ctx); err != nil {
				t.Fatal(err)
			}
			if m, _ = f.e.Store.Get(f.ctx, target.ID); m.ReportedStatus != storage.StatusUnknown {
				t.Errorf("reported %q, want unknown written back", m.ReportedStatus)
			}
		})
	}
}

// TestSafetySegmentsArePaced: a two-segment text takes two slots of the
// sender's rate, so no sender goes above 0.95 segments a second.
func TestSafetySegmentsArePaced(t *testing.T) {
	f := newFixture(t)
	long := strings.Repeat("Ana", 60) // the welcome text becomes two segments
	for _, rec := range []string{"1", "2", "5", "10"} {
		f.load(t, "site_a", map[string]string{"record_id": rec, "first_name": long})
	}
	f.enqueue(t, "welcome-sms")
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	var last *twiliotest.Create
	for _, c := range f.env.Twilio.Creates() {
		if c.From != "+14155550100" {
			continue
		}
		if last != nil {
			if gap, min := c.Time.Sub(last.Time).Seconds(), float64(last.Segments)/0.95; gap < min-0.001 {
				t.Errorf("%.3f s after a %d-segment text, want at least %.3f s", gap, last.Segments, min)
			}
		}
		c := c
		last = &c
	}
}

// TestSafetyPacingSurvivesRestart: a new process (a fresh pacer) waits for
// the slot of the last text the database knows of before it sends.
func TestSafetyPacingSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	// Send one now and hold the rest back a second.
	due, _ := f.e.Store.Due(f.ctx, "sms", f.clk.Now(), 0)
	for _, m := range due[1:] {
		if err := f.e.Store.Snooze(f.ctx, m.ID, "later", f.clk.Now(), f.clk.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	// A restart: a fresh pacer that never saw that send.
	f.e.Pacer = sms.NewPacer(0.95, f.clk)
	f.clk.Advance(time.Second)
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	cs := f.env.Twilio.Creates()
	if len(cs) < 2 {
		t.Fatalf("%d creates", len(cs))
	}
	if gap := cs[1].Time.Sub(cs[0].Time).Seconds(); gap < 1/0.95-0.001 {
		t.Errorf("the first text after the restart went %.3f s after the last one, want ≥ %.3f s", gap, 1/0.95)
	}
}

// TestSafetySenderProblemPausesThatSender: Twilio says a sending number
// cannot send (21606). That number pauses with the cause named and its
// messages stay queued without an attempt counted; the other project's
// number goes on sending.
func TestSafetySenderProblemPausesThatSender(t *testing.T) {
	f := newFixture(t)
	f.env.Twilio.SetOutcome("+14155550100", twiliotest.Outcome{CreateError: 21606}) // record 1's number
	f.enqueue(t, "welcome-sms", "diary-reminder")
	st, err := f.e.Dispatch(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	paused, _ := f.e.Store.PausedSenders(f.ctx)
	if len(paused) != 1 || paused[0].Sender != "+14155550100" || paused[0].Code != 21606 {
		t.Fatalf("paused senders %+v, want the site A number for 21606", paused)
	}
	if len(st.Problems) == 0 || !strings.Contains(st.Problems[0], "21606") {
		t.Errorf("problems %q do not name the cause", st.Problems)
	}
	for _, m := range f.messages(t, "welcome-sms") {
		if m.State == storage.StateFailed || m.SID != "" && m.To == "+14155550100" {
			t.Errorf("record %s: %s; a sender problem must not settle the message", m.Record, m.State)
		}
		if m.State.Queued() && m.Attempts > 0 {
			t.Errorf("record %s: %d attempts counted for the sender's problem", m.Record, m.Attempts)
		}
	}
	for _, m := range f.messages(t, "diary-reminder") {
		if m.State.Queued() {
			t.Errorf("site B record %s still queued: the other sender must not be held", m.Record)
		}
	}
}

// TestSafetyHealthzShowsPauses: /healthz says, in words, that the kill
// switch is set and that a sender is paused, and why, and answers 503
// unhealthy: nothing of what is paused goes out.
func TestSafetyHealthzShowsPauses(t *testing.T) {
	s := serve(t)
	now := s.clk.Now()
	if err := s.e.Store.SetPause(s.ctx, storage.Pause{Scope: storage.PauseRule, Name: "welcome-sms", Reason: "wording under review", At: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.e.Store.PauseSender(s.ctx, storage.SenderPause{Sender: storage.AccountSender, Reason: "Twilio error 20003: check the token", Code: 20003, At: now, RetryAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	h, status := s.health()
	got := strings.Join(h.Problems, "\n")
	if status != 503 || h.Status != "unhealthy" || !strings.Contains(got, "rule welcome-sms is paused: wording under review") ||
		!strings.Contains(got, "the Twilio account is paused: Twilio error 20003") {
		t.Errorf("healthz %d %s: %q", status, h.Status, h.Problems)
	}
	if _, err := s.e.Store.Resume(s.ctx, "", ""); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.health(); h.Status != "healthy" {
		t.Errorf("after resume: %s %q", h.Status, h.Problems)
	}
}

// sendingProbe is a clock whose sleeps (the pacer's waits) first look at
// the outbox: a row "sending" while the pacer holds its send back would be
// left claimed by a kill -9 during the wait, though never sent.
type sendingProbe struct {
	*sms.FakeClock
	f       *fixture
	mu      sync.Mutex // the pacer sleeps in one goroutine per sender
	waits   int
	claimed []string
}

func (c *sendingProbe) Sleep(ctx context.Context, d time.Duration) error {
	if d > 0 {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.waits++
		rows, err := c.f.e.Store.Sending(ctx)
		if err != nil {
			return err
		}
		for _, m := range rows {
			c.claimed = append(c.claimed, m.Record)
		}
	}
	return c.FakeClock.Sleep(ctx, d)
}

// TestSafetyPacerWaitLeavesRowsQueued: a message waiting for its sender's
// pacing slot is not yet claimed. A process killed during that wait (which
// is most of a dispatch's time) leaves it queued, so the next pass sends it
// at once instead of looking it up at Twilio for ten minutes.
func TestSafetyPacerWaitLeavesRowsQueued(t *testing.T) {
	f := newFixture(t)
	probe := &sendingProbe{FakeClock: f.clk, f: f}
	f.e.Pacer = sms.NewPacer(0.95, probe)
	f.enqueue(t, "diary-reminder")
	st, err := f.e.Dispatch(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent < 2 || probe.waits == 0 {
		t.Fatalf("sent %d with %d pacer waits: the test needs a sender with two texts", st.Sent, probe.waits)
	}
	if len(probe.claimed) > 0 {
		t.Errorf("rows of records %v were claimed (sending) while the pacer held them back", probe.claimed)
	}
}
