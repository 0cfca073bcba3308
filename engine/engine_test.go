package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
	"github.com/nudge-study/nudge/storage"
)

// The demo study is the fixture: two projects, SMS and email rules, and
// the simulators, all on a fake clock that starts at demo.StudyTime.
type fixture struct {
	env *demo.Env
	e   *engine.Engine
	clk *sms.FakeClock
	ctx context.Context
	db  string
}

func (f *fixture) dbPath() string { return f.db }

// copyDemo copies the demo study into dir without its study-wide
// quiet_hours and caps, so that a test built on it meets only the limits
// it sets itself.
func copyDemo(t testing.TB, dir string) {
	t.Helper()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "testdata", "demo"))); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nudge.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(withoutLimits(string(data))), 0o644); err != nil {
		t.Fatal(err)
	}
}

// withoutLimits drops the top-level quiet_hours and caps of a config.
func withoutLimits(config string) string {
	var keep []string
	for _, l := range strings.Split(config, "\n") {
		if !strings.HasPrefix(l, "quiet_hours:") && !strings.HasPrefix(l, "caps:") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func newFixture(t testing.TB) *fixture { return newFixtureWith(t, demo.Options{}) }

// newFixtureWith starts the demo study (or opt.Dir's) with some options set
// (Clock, DBPath and Timeout are the fixture's).
func newFixtureWith(t testing.TB, opt demo.Options) *fixture {
	t.Helper()
	clk := sms.NewFakeClock(demo.StudyTime)
	db := filepath.Join(t.TempDir(), "nudge.db")
	if opt.Dir == "" {
		opt.Dir = filepath.Join("..", "testdata", "demo")
	}
	opt.Clock, opt.DBPath, opt.Timeout = clk, db, 300*time.Millisecond
	env, err := demo.Start(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	f := &fixture{env: env, e: env.Engine, clk: clk, ctx: ctx, db: db}
	if err := f.e.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	return f
}

// enqueue exports, plans and enqueues the given rules at the clock's time.
func (f *fixture) enqueue(t *testing.T, rules ...string) *engine.Plan {
	t.Helper()
	return planAt(t, f, nil, rules...)
}

func (f *fixture) messages(t *testing.T, rule string) []storage.Message {
	t.Helper()
	ms, err := f.e.Store.ByRule(f.ctx, rule)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// createsPerNumber counts the creates the Twilio simulator accepted, by
// recipient; any count above one is a duplicate text to a participant.
func (f *fixture) createsPerNumber() map[string]int {
	n := map[string]int{}
	for _, c := range f.env.Twilio.Creates() {
		n[c.To+"|"+c.Body]++
	}
	return n
}

func (f *fixture) assertNoDuplicates(t *testing.T) {
	t.Helper()
	for k, n := range f.createsPerNumber() {
		if n > 1 {
			t.Errorf("%d creates of the same text to %s", n, strings.SplitN(k, "|", 2)[0])
		}
	}
}

// settle runs dispatches, advancing the clock a few minutes before each,
// until no message is left in "sending" (or gives up after an hour).
func (f *fixture) settle(t *testing.T) {
	t.Helper()
	for range 20 {
		f.clk.Advance(3 * time.Minute)
		if _, err := f.e.Dispatch(f.ctx); err != nil {
			t.Fatal(err)
		}
		left, err := f.e.Store.Sending(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			return
		}
	}
	t.Fatal("messages still sending after an hour of lookups")
}

// A crash between Twilio's answer and the outbox update leaves a row in
// "sending". The next pass looks it up at Twilio: the one Twilio has is
// marked sent with its SID and not sent again; the one Twilio never got is
// sent once.
func TestCrashWhileSendingNeverSendsTwice(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	due, err := f.e.Store.Due(f.ctx, "sms", f.clk.Now(), 0)
	if err != nil || len(due) < 2 {
		t.Fatalf("due: %d, %v", len(due), err)
	}
	reached, lost := due[0], due[1]
	client, err := sms.NewClient(sms.Config{AccountSID: demo.AccountSID, AuthToken: demo.AuthToken, BaseURL: f.env.TwilioURL})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []storage.Message{reached, lost} {
		if err := f.e.Store.Claim(f.ctx, m.ID, f.clk.Now(), nil); err != nil {
			t.Fatal(err)
		}
	}
	// The first reached Twilio, then the process died.
	if _, err := client.Send(f.ctx, reached.From, reached.To, reached.Body, 0); err != nil {
		t.Fatal(err)
	}

	// Both are looked up after a settle delay; the one Twilio never got is
	// sent again only after several lookups well after the attempt.
	f.settle(t)
	got, err := f.e.Store.Get(f.ctx, reached.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.SID == "" || got.State == storage.StateSending || got.State == storage.StatePlanned {
		t.Errorf("the message Twilio had: state %s, SID %q; want sent with Twilio's SID", got.State, got.SID)
	}
	got, _ = f.e.Store.Get(f.ctx, lost.ID)
	if got.SID == "" {
		t.Errorf("the message Twilio never got: state %s, want sent on the next pass", got.State)
	}
	f.assertNoDuplicates(t)
	if n := f.createsPerNumber()[reached.To+"|"+reached.Body]; n != 1 {
		t.Errorf("creates to the crashed row's number: %d, want 1", n)
	}
}

// Twilio takes a message but the answer never arrives (the client times
// out): the engine looks the message up before anything else and stores
// the SID Twilio has; the participant gets one text.
func TestUnansweredCreateIsLookedUpNotResent(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	f.env.Twilio.Fault(twiliotest.Fault{Delay: 2 * time.Second}) // longer than the 300 ms client timeout
	st, err := f.e.Dispatch(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Unsettled != 1 {
		t.Fatalf("unsettled %d, want 1 (%+v)", st.Unsettled, st)
	}
	f.settle(t)
	ms := f.messages(t, "diary-reminder")
	for _, m := range ms {
		if m.State == storage.StatePlanned || m.State == storage.StateSending || m.State == storage.StateRetry {
			t.Errorf("record %s left in %s", m.Record, m.State)
		}
	}
	f.assertNoDuplicates(t)
	if attempts := len(f.env.Twilio.Attempts()); attempts != len(ms) {
		t.Errorf("create requests %d, want one per message (%d)", attempts, len(ms))
	}
}

// Twilio says 429: the message was not taken. The sender backs off (its
// other messages wait too, without counting an attempt), then every
// message goes exactly once.
func TestRetryAfterTwilioRefusedToTakeIt(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	f.env.Twilio.Fault(twiliotest.Fault{Status: 429, Times: 1})
	st, err := f.e.Dispatch(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Retried != 1 || st.Sent != 0 || len(st.Problems) == 0 {
		t.Fatalf("first dispatch: %+v; want 1 retried, none sent, a problem named", st)
	}
	again, err := f.e.Dispatch(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again.Sent != 0 {
		t.Errorf("sent during the sender's backoff: %+v", again)
	}
	f.clk.Advance(time.Minute)
	if again, err = f.e.Dispatch(f.ctx); err != nil || again.Sent+again.Failed != len(f.messages(t, "diary-reminder")) {
		t.Errorf("after the backoff: %+v, %v; want every message settled", again, err)
	}
	for _, m := range f.messages(t, "diary-reminder") {
		if m.Attempts != 1 {
			t.Errorf("record %s: %d attempts counted, want 1 (a backoff is not the message's fault)", m.Record, m.Attempts)
		}
	}
	f.assertNoDuplicates(t)
}

// A message planned a minute before the allowed hours end is not sent when
// dispatch only reaches it after they ended: it expires with the window it
// was planned for (the default expiry), never sent late at night nor the
// next day.
func TestAllowedHoursCheckedAtSendTime(t *testing.T) {
	f := newFixture(t)
	la, _ := time.LoadLocation("America/Los_Angeles")
	f.clk.Set(time.Date(2026, 11, 23, 19, 59, 0, 0, la))
	plan := f.enqueue(t, "welcome-sms")
	planned := 0
	for _, d := range plan.Decisions {
		if d.Outcome == engine.Send {
			planned++
		}
	}
	if planned == 0 {
		t.Fatal("nothing planned at 19:59")
	}
	f.clk.Set(time.Date(2026, 11, 23, 20, 0, 30, 0, la))
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, m := range f.messages(t, "welcome-sms") {
		loc, _ := time.LoadLocation(m.Zone)
		open := time.Date(2026, 11, 23, 9, 0, 0, 0, loc)
		close := time.Date(2026, 11, 23, 20, 0, 0, 0, loc)
		if now := f.clk.Now(); !now.Before(open) && now.Before(close) {
			continue // still inside this participant's hours (Honolulu): sending is right
		}
		if m.NotBefore.After(f.clk.Now()) {
			// Already outside its hours when planned (New York): it waits
			// for the next morning, and was never due tonight.
			if m.State != storage.StatePlanned || m.NotBefore.In(loc).Hour() != 9 {
				t.Errorf("record %s (%s): %s at %s, want planned for 09:00", m.Record, m.Zone, m.State, m.NotBefore.In(loc))
			}
			continue
		}
		held++
		if m.SID != "" || m.State != storage.StateExpired {
			t.Errorf("record %s (%s): %s, want expired and not sent", m.Record, m.Zone, m.State)
		}
	}
	if held == 0 {
		t.Fatal("no message was outside its allowed hours")
	}
}

// A participant who opted out gets nothing, with the reason "opted out";
// Twilio's 21610 (the number replied STOP) records an opt-out.
func TestOptOuts(t *testing.T) {
	f := newFixture(t)
	if err := f.e.Store.OptOut(f.ctx, "+14155550100", "test", f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := f.e.Run(f.ctx, engine.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range res.Plan.Decisions {
		if d.Record == "1" && d.Rule == "welcome-sms" {
			found = true
			if d.Outcome != engine.Skipped || d.Reason != "opted out" {
				t.Errorf("record 1: %s %q, want skipped: opted out", d.Outcome, d.Reason)
			}
		}
	}
	if !found {
		t.Fatal("no decision for record 1")
	}
	for _, c := range f.env.Twilio.Attempts() {
		if c.To == "+14155550100" {
			t.Error("a text went to an opted-out number")
		}
	}
	// The demo's Twilio answers 21610 for one site B participant.
	out, err := f.e.Store.IsOptedOut(f.ctx, "+15105550157")
	if err != nil || !out {
		t.Errorf("after 21610: opted out = %v, %v; want true", out, err)
	}
}

// REDCap failing during the write-back loses nothing: the statuses stay in
// the queue and go in on a later pass.
func TestWriteBackSurvivesREDCapOutage(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.env.REDCap.Fault(redcaptest.Fault{Content: "record", Status: 503, Times: 4})
	st, err := f.e.Report(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Imported != 0 || st.Queued == 0 {
		t.Fatalf("during the outage: %+v; want queued and none imported", st)
	}
	f.clk.Advance(2 * time.Minute)
	st, err = f.e.Report(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Imported != len(f.messages(t, "diary-reminder")) {
		t.Errorf("after the outage: imported %d, want %d", st.Imported, len(f.messages(t, "diary-reminder")))
	}
	n, err := f.e.Store.Outstanding(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Some SMS are still being tracked (no poll yet); none is waiting on REDCap.
	pending, err := f.e.Store.PendingWriteBacks(f.ctx, "site_b", f.clk.Now().Add(time.Hour), 0)
	if err != nil || len(pending) != 0 {
		t.Errorf("pending write-backs after recovery: %d, %v (outstanding %d)", len(pending), err, n)
	}
}
