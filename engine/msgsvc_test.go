package engine_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

const demoService = "MG0123456789abcdef0123456789abcdef"

// The pool of the Messaging Service the service fixture sends through: two
// long codes and a toll-free number.
var demoPool = []string{"+14155550190", "+14155550191", "+18885550192"}

// newServiceFixture is the demo study with twilio.from replaced by a
// Messaging Service and its pool (site_b keeps its own number).
func newServiceFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	copyDemo(t, dir)
	path := filepath.Join(dir, "nudge.yaml")
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	from := regexp.MustCompile(`(?m)^  from: "\+14155550100"$`)
	if !from.Match(cfg) {
		t.Fatal("the demo config has no twilio.from line to replace")
	}
	cfg = from.ReplaceAll(cfg, []byte("  messaging_service_sid: "+demoService+
		"\n  numbers: [\""+demoPool[0]+"\", \""+demoPool[1]+"\", \""+demoPool[2]+"\"]"))
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return newFixtureWith(t, demo.Options{Dir: dir})
}

// TestSafetyServiceUnansweredCreateFound: through a Messaging Service,
// Twilio takes a create but its answer is lost. The lookup, by the pool
// number the text was sent from, finds it: it is marked sent and never
// sent again. (Sent by the service's SID alone, a lookup by From=MG… found
// nothing and the text went out twice.)
func TestSafetyServiceUnansweredCreateFound(t *testing.T) {
	for name, fault := range map[string]twiliotest.Fault{
		"500 after the create": {Status: 500, AfterCreate: true, Land: 5 * time.Minute},
		"timeout":              {Delay: time.Second, Land: 4 * time.Minute}, // longer than the client timeout
	} {
		t.Run(name, func(t *testing.T) {
			f := newServiceFixture(t)
			f.enqueue(t, "welcome-sms")
			f.env.Twilio.Fault(fault)
			st, err := f.e.Dispatch(f.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Unsettled != 1 {
				t.Fatalf("unsettled %d, want 1: %+v", st.Unsettled, st)
			}
			f.settle(t)
			f.assertNoDuplicates(t)
			sent := 0
			for _, m := range f.messages(t, "welcome-sms") {
				switch {
				case m.State == storage.StatePlanned && m.NotBefore.After(f.clk.Now()):
					// Outside its allowed hours yet.
				case m.SID == "" && m.State != storage.StateFailed:
					t.Errorf("record %s: %s without a SID", m.Record, m.State)
				case m.SID != "":
					sent++
				}
			}
			if n := len(f.env.Twilio.Creates()); n != sent {
				t.Errorf("%d creates for %d texts with a SID", n, sent)
			}
		})
	}
}

// TestServiceSendsFromPoolNumbers: every text through the service goes out
// from the number of the pool its recipient sticks to, named with the
// service; the outbox holds that number; each number is paced at its own
// rate (the toll-free one at 2.85/s, the long codes below 1/s).
func TestServiceSendsFromPoolNumbers(t *testing.T) {
	f := newServiceFixture(t)
	cfg := f.e.Study.Config
	pool := cfg.SenderFor("site_a")
	if pool.Service != demoService || len(pool.Numbers) != 3 {
		t.Fatalf("site_a sends through %+v", pool)
	}
	f.enqueue(t, "welcome-sms")
	for _, m := range f.messages(t, "welcome-sms") {
		if want := pool.Pick(m.To); m.From != want {
			t.Errorf("record %s queued from %s, want its pool number %s", m.Record, m.From, want)
		}
	}
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	last := map[string]twiliotest.Create{}
	used := map[string]int{}
	for _, c := range f.env.Twilio.Creates() {
		if want := pool.Pick(c.To); c.From != want {
			t.Errorf("a text went out from %s, want %s", c.From, want)
		}
		used[c.From]++
		if prev, ok := last[c.From]; ok {
			rate := cfg.Twilio.RateFor(c.From)
			if gap, min := c.Time.Sub(prev.Time).Seconds(), float64(prev.Segments)/rate; gap < min-0.001 {
				t.Errorf("%s: %.3f s after a %d-segment text, want at least %.3f s at %v/s", c.From, gap, prev.Segments, min, rate)
			}
		}
		last[c.From] = c
	}
	for _, m := range f.env.Twilio.Messages() {
		if m.MessagingServiceSID != demoService {
			t.Errorf("%s sent without the service (%q)", m.SID, m.MessagingServiceSID)
		}
	}
	for _, n := range demoPool {
		if used[n] == 0 {
			t.Errorf("pool number %s sent nothing: %v", n, used)
		}
	}
	// The outbox knows each pool number's last send, so a restart paces
	// each number from it.
	lasts, err := f.e.Store.LastSends(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range demoPool {
		if lasts[n].At.IsZero() {
			t.Errorf("no last send stored for %s: %v", n, lasts)
		}
	}
	if rules.KindOf(demoPool[2]) != rules.TollFree || cfg.Twilio.RateFor(demoPool[2]) != rules.DefaultTollFreeRate {
		t.Errorf("%s is paced at %v", demoPool[2], cfg.Twilio.RateFor(demoPool[2]))
	}
}

// TestSafetyServicePacingSurvivesRestart: after a restart (a fresh pacer)
// each number of the pool waits for the slot of its own last text as the
// outbox records it: the outbox holds the pool number, not the service.
func TestSafetyServicePacingSurvivesRestart(t *testing.T) {
	f := newServiceFixture(t)
	f.enqueue(t, "welcome-sms")
	// One text now from each number of the pool; the rest a moment later.
	due, err := f.e.Store.Due(f.ctx, "sms", f.clk.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]bool{}
	for _, m := range due {
		if !first[m.From] {
			first[m.From] = true
			continue
		}
		if err := f.e.Store.Snooze(f.ctx, m.ID, "later", f.clk.Now(), f.clk.Now().Add(100*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	before := len(f.env.Twilio.Creates())
	// A restart: a fresh pacer at the configured rates that never saw
	// those sends.
	f.e.Pacer = sms.NewPacer(f.e.Study.Config.Twilio.RatePerSecond, f.clk)
	for n, r := range f.e.Study.Config.Rates() {
		if err := f.e.Pacer.SetRate(n, r); err != nil {
			t.Fatal(err)
		}
	}
	f.clk.Advance(100 * time.Millisecond)
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	cs := f.env.Twilio.Creates()
	last := map[string]twiliotest.Create{}
	checked := 0
	for i, c := range cs {
		if prev, ok := last[c.From]; ok && i >= before {
			rate := f.e.Study.Config.Twilio.RateFor(c.From)
			if gap, min := c.Time.Sub(prev.Time).Seconds(), float64(prev.Segments)/rate; gap < min-0.001 {
				t.Errorf("%s: %.3f s after its last text, want at least %.3f s at %v/s", c.From, gap, min, rate)
			}
			checked++
		}
		last[c.From] = c
	}
	if before != len(first) || checked < len(demoPool) {
		t.Fatalf("%d texts before the restart (want %d), %d gaps checked after it", before, len(first), checked)
	}
}
