package sms_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
)

// sendPaced sends each body from one number through a Pacer and the
// simulator, all on one fake clock, the way the engine's dispatch does
// (Wait, Send, Done), and returns the simulator's creates.
func sendPaced(t *testing.T, rate float64, bodies []string, segments []int) []twiliotest.Create {
	t.Helper()
	srv, clk, c := setup(t, 5*time.Second)
	p := sms.NewPacer(rate, clk)
	ctx := context.Background()
	for i, body := range bodies {
		if err := p.Wait(ctx, sender, segments[i]); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Send(ctx, sender, alice, body, 0); err != nil {
			t.Fatal(err)
		}
		p.Done(sender, segments[i])
	}
	creates := srv.Creates()
	if len(creates) != len(bodies) {
		t.Fatalf("%d creates, want %d", len(creates), len(bodies))
	}
	for i, cr := range creates {
		if cr.Segments != segments[i] {
			t.Fatalf("message %d has %d segments by the simulator's count, the test said %d", i, cr.Segments, segments[i])
		}
	}
	return creates
}

// checkPacing asserts no create came before the previous one's segments
// had passed at rate, and that the whole run took what the rate allows
// (within 1%).
func checkPacing(t *testing.T, creates []twiliotest.Create, rate float64) {
	t.Helper()
	var slots float64
	for i := 1; i < len(creates); i++ {
		gap := creates[i].Time.Sub(creates[i-1].Time).Seconds()
		need := float64(creates[i-1].Segments) / rate
		if gap < need {
			t.Errorf("creates %d and %d are %.9fs apart, need at least %.9fs", i-1, i, gap, need)
		}
		slots += float64(creates[i-1].Segments)
	}
	makespan := creates[len(creates)-1].Time.Sub(creates[0].Time).Seconds()
	want := slots / rate
	if math.Abs(makespan-want) > 0.01*want {
		t.Errorf("makespan %.6fs, want %.6fs ± 1%%", makespan, want)
	}
}

// TestPacingHundredMessages is the acceptance test for pacing: 100
// one-segment messages from one number at 0.95/s.
func TestPacingHundredMessages(t *testing.T) {
	const n, rate = 100, sms.DefaultRate
	bodies := make([]string, n)
	segs := make([]int, n)
	for i := range bodies {
		bodies[i], segs[i] = "Reminder: your survey is waiting.", 1
	}
	creates := sendPaced(t, rate, bodies, segs)
	if !creates[0].Time.Equal(epoch) {
		t.Errorf("first create at %v, want at once (%v)", creates[0].Time, epoch)
	}
	checkPacing(t, creates, rate)
}

func TestPacingMixedSegments(t *testing.T) {
	shapes := []struct {
		body string
		segs int
	}{
		{"Short reminder.", 1},
		{strings.Repeat("a", 300), 2},               // GSM-7, 153 per part
		{strings.Repeat("b", 400), 3},               // GSM-7
		{strings.Repeat("ó", 100), 2},               // UCS-2, 67 per part
		{strings.Repeat("c", 150) + "’ see you", 3}, // a curly quote makes it UCS-2
		{strings.Repeat("d", 160), 1},               // exactly one GSM-7 segment
	}
	var bodies []string
	var segs []int
	for i := range 30 {
		s := shapes[(i*7)%len(shapes)]
		bodies, segs = append(bodies, s.body), append(segs, s.segs)
	}
	creates := sendPaced(t, 0.8, bodies, segs)
	checkPacing(t, creates, 0.8)
}

func TestPacerSchedule(t *testing.T) {
	clk := sms.NewFakeClock(epoch)
	p := sms.NewPacer(0.5, clk) // one slot = 2s
	ctx := context.Background()
	steps := []struct {
		name     string
		advance  time.Duration // moved by the test before Wait
		from     string
		segments int
		want     time.Duration // clock after Wait, from epoch
	}{
		{"first send goes at once", 0, "A", 1, 0},
		{"other number is independent", 0, "B", 3, 0},
		{"next from A waits one slot", 0, "A", 2, 2 * time.Second},
		{"then A waits two slots", 0, "A", 1, 6 * time.Second},
		{"B's 3 segments have passed", 0, "B", 1, 6 * time.Second},
		{"idle time is not banked", 20 * time.Second, "A", 1, 26 * time.Second},
		{"so the next waits a full slot", 0, "A", 0, 28 * time.Second},
		{"zero segments count as one", 0, "A", 1, 30 * time.Second},
	}
	for _, st := range steps {
		clk.Advance(st.advance)
		if err := p.Wait(ctx, st.from, st.segments); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := clk.Now().Sub(epoch); got != st.want {
			t.Errorf("%s: clock at +%v, want +%v", st.name, got, st.want)
		}
	}
}

// interruptedClock is a FakeClock whose next Sleep fails as if ctx ended.
type interruptedClock struct {
	*sms.FakeClock
	fail bool
}

func (c *interruptedClock) Sleep(ctx context.Context, d time.Duration) error {
	if c.fail {
		c.fail = false
		return context.Canceled
	}
	return c.FakeClock.Sleep(ctx, d)
}

func TestPacerGivesBackCanceledSlot(t *testing.T) {
	clk := &interruptedClock{FakeClock: sms.NewFakeClock(epoch)}
	p := sms.NewPacer(0.5, clk)
	ctx := context.Background()
	if err := p.Wait(ctx, "A", 1); err != nil {
		t.Fatal(err)
	}
	clk.fail = true
	if err := p.Wait(ctx, "A", 5); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if err := p.Wait(ctx, "A", 1); err != nil {
		t.Fatal(err)
	}
	if got := clk.Now().Sub(epoch); got != 2*time.Second {
		t.Errorf("after a canceled wait the next send went at +%v, want +2s (the canceled 5 slots given back)", got)
	}

	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.Wait(done, "A", 1); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: err %v", err)
	}
}

// TestPacerConcurrent: goroutines sharing numbers each get their own
// slot. The clock is frozen, so each Sleep asks for exactly the distance to
// the slot it reserved.
func TestPacerConcurrent(t *testing.T) {
	clk := &frozenClock{now: epoch}
	p := sms.NewPacer(1, clk)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for range 5 {
				if err := p.Wait(context.Background(), []string{"A", "B"}[g%2], 1); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got := clk.sleeps()
	slices.Sort(got)
	var want []time.Duration
	for i := range 20 { // 20 sends per number at 1/s: slots 0..19s, twice
		want = append(want, time.Duration(i)*time.Second, time.Duration(i)*time.Second)
	}
	if !slices.Equal(got, want) {
		t.Errorf("sleeps %v\nwant %v", got, want)
	}
}

// frozenClock never moves; it records every Sleep asked of it.
type frozenClock struct {
	now time.Time
	mu  sync.Mutex
	ds  []time.Duration
}

func (c *frozenClock) Now() time.Time { return c.now }

func (c *frozenClock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ds = append(c.ds, d)
	return nil
}

func (c *frozenClock) sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ds)
}

func TestValidateRate(t *testing.T) {
	tests := []struct {
		rate     float64
		longCode bool
		ok       bool
	}{
		{0.95, true, true},
		{1, true, false},
		{1.5, true, false},
		{3, false, true},
		{0, false, false},
		{-1, false, false},
		{math.NaN(), false, false},
		{math.Inf(1), false, false},
	}
	for _, tt := range tests {
		err := sms.ValidateRate(tt.rate, tt.longCode)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateRate(%v, %v) = %v, want ok=%v", tt.rate, tt.longCode, err, tt.ok)
		}
	}
}

func BenchmarkPacerWait(b *testing.B) {
	p := sms.NewPacer(sms.DefaultRate, sms.NewFakeClock(epoch))
	ctx := context.Background()
	for b.Loop() {
		if err := p.Wait(ctx, sender, 1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPacerWaitParallel(b *testing.B) {
	p := sms.NewPacer(sms.DefaultRate, sms.NewFakeClock(epoch))
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.Wait(ctx, sender, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestPacerDone: the next send from a number starts at least its slots
// after Twilio answered the previous one, so a slow round trip can never
// squeeze two creates closer together at Twilio's side.
func TestPacerDone(t *testing.T) {
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	slot := func(rate float64) time.Duration { return time.Duration(math.Ceil(float64(time.Second) / rate)) }
	tests := []struct {
		name     string
		rate     float64
		latency  time.Duration
		segments int
		wantGap  time.Duration // from the first release to the second
	}{
		{"instant answer keeps the schedule", 0.95, 0, 1, slot(0.95)},
		{"a round trip is added", 0.95, 300 * time.Millisecond, 1, 300*time.Millisecond + slot(0.95)},
		{"segments count from the answer", 0.95, 300 * time.Millisecond, 3, 300*time.Millisecond + 3*slot(0.95)},
		{"toll-free rate", 2.5, 100 * time.Millisecond, 1, 100*time.Millisecond + slot(2.5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := sms.NewFakeClock(start)
			p := sms.NewPacer(tt.rate, clk)
			ctx := context.Background()
			if err := p.Wait(ctx, "+14155550100", tt.segments); err != nil {
				t.Fatal(err)
			}
			first := clk.Now()
			clk.Advance(tt.latency)
			p.Done("+14155550100", tt.segments)
			if err := p.Wait(ctx, "+14155550100", 1); err != nil {
				t.Fatal(err)
			}
			if got := clk.Now().Sub(first); got != tt.wantGap {
				t.Errorf("second send %v after the first, want %v", got, tt.wantGap)
			}
		})
	}
}

// TestPacerRatePerNumber: each number keeps its own rate; a toll-free
// number set to 2.85/s is not held to the default long-code rate, and a
// long code is not let through at the toll-free rate. Seeds count in the
// seeded number's own slots.
func TestPacerRatePerNumber(t *testing.T) {
	const longCode, tollFree = "+14155550100", "+18885550100"
	clk := sms.NewFakeClock(epoch)
	p := sms.NewPacer(sms.DefaultRate, clk)
	if err := p.SetRate(tollFree, 2.85); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if err := p.SetRate(longCode, bad); err == nil {
			t.Errorf("SetRate(%v) accepted", bad)
		}
	}
	slot := func(rate float64) time.Duration { return time.Duration(math.Ceil(float64(time.Second) / rate)) }
	ctx := context.Background()
	for _, tt := range []struct {
		from string
		gap  time.Duration
	}{{tollFree, slot(2.85)}, {longCode, slot(sms.DefaultRate)}} {
		var last time.Time
		for i := range 5 {
			if err := p.Wait(ctx, tt.from, 1); err != nil {
				t.Fatal(err)
			}
			now := clk.Now()
			if i > 0 && now.Sub(last) != tt.gap {
				t.Errorf("%s: send %d went %v after the previous one, want %v", tt.from, i, now.Sub(last), tt.gap)
			}
			last = now
		}
	}
	// A seed from before a restart: the next toll-free send waits two of
	// its own slots after it.
	seedAt := clk.Now().Add(time.Hour)
	p.Seed(tollFree, seedAt, 2)
	clk.Advance(time.Hour)
	if err := p.Wait(ctx, tollFree, 1); err != nil {
		t.Fatal(err)
	}
	if got := clk.Now().Sub(seedAt); got != 2*slot(2.85) {
		t.Errorf("first toll-free send %v after the seeded one, want %v", got, 2*slot(2.85))
	}
}
