package storage

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

// ids returns the IDs of ts, in order.
func triggerIDs(ts []Trigger) []int64 {
	out := []int64{}
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

func TestTriggerQueue(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	enqueue := func(rec string, at time.Duration) int64 {
		t.Helper()
		tr := &Trigger{Project: "site_a", Record: rec, Event: "baseline_arm_1", Instrument: "diary", Instance: 2,
			ReceivedAt: t0.Add(at)}
		if err := s.EnqueueTrigger(ctx, tr); err != nil || tr.ID == 0 {
			t.Fatalf("EnqueueTrigger = %v (ID %d)", err, tr.ID)
		}
		return tr.ID
	}
	// Enqueued out of order: the queue is ordered by arrival time.
	c := enqueue("3", 2*time.Second)
	a := enqueue("1", 0)
	b := enqueue("2", time.Second)
	now := t0.Add(time.Minute)

	pending := func(at time.Time, limit int) []int64 {
		t.Helper()
		ts, err := s.PendingTriggers(ctx, at, limit)
		if err != nil {
			t.Fatal(err)
		}
		return triggerIDs(ts)
	}
	steps := []struct {
		name  string
		do    func() error
		at    time.Time
		limit int
		want  []int64
	}{
		{"oldest first", nil, now, 0, []int64{a, b, c}},
		{"limit", nil, now, 2, []int64{a, b}},
		{"retry later", func() error { return s.RetryTrigger(ctx, a, "REDCap: 503", now.Add(time.Minute)) },
			now, 0, []int64{b, c}},
		{"due again at its retry time, still first", nil, now.Add(time.Minute), 0, []int64{a, b, c}},
		{"complete", func() error { return s.CompleteTrigger(ctx, b, now) }, now.Add(time.Minute), 0, []int64{a, c}},
		{"complete after a retry", func() error { return s.CompleteTrigger(ctx, a, now.Add(time.Minute)) },
			now.Add(time.Hour), 0, []int64{c}},
	}
	for _, st := range steps {
		if st.do != nil {
			if err := st.do(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		if got := pending(st.at, st.limit); !reflect.DeepEqual(got, st.want) {
			t.Errorf("%s: pending = %v, want %v", st.name, got, st.want)
		}
	}

	got, err := s.GetTrigger(ctx, a)
	want := Trigger{ID: a, Project: "site_a", Record: "1", Event: "baseline_arm_1", Instrument: "diary", Instance: 2,
		ReceivedAt: t0, Attempts: 2, LastError: "REDCap: 503", NotBefore: now.Add(time.Minute), DoneAt: now.Add(time.Minute)}
	if err != nil || got != want {
		t.Errorf("trigger after retry and completion =\n%+v, %v\nwant\n%+v", got, err, want)
	}

	errs := []struct {
		name string
		err  error
		want error
	}{
		{"complete twice", s.CompleteTrigger(ctx, b, now), ErrWrongState},
		{"retry a done trigger", s.RetryTrigger(ctx, b, "x", now), ErrWrongState},
		{"complete unknown", s.CompleteTrigger(ctx, 999, now), ErrNotFound},
		{"retry unknown", s.RetryTrigger(ctx, 999, "x", now), ErrNotFound},
		{"enqueue without record", s.EnqueueTrigger(ctx, &Trigger{Project: "site_a", ReceivedAt: t0}), ErrInvalid},
		{"enqueue without time", s.EnqueueTrigger(ctx, &Trigger{Project: "site_a", Record: "1"}), ErrInvalid},
	}
	for _, e := range errs {
		if !errors.Is(e.err, e.want) {
			t.Errorf("%s: err = %v, want %v", e.name, e.err, e.want)
		}
	}
}

func TestClaimTrigger(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	tr := &Trigger{Project: "site_a", Record: "1", ReceivedAt: t0}
	if err := s.EnqueueTrigger(ctx, tr); err != nil {
		t.Fatal(err)
	}
	const lease = 5 * time.Minute
	steps := []struct {
		name        string
		at          time.Time
		want        error
		wantPending int // pending triggers at `at`, after the claim
	}{
		{"first worker wins", t0, nil, 0},
		{"second worker loses", t0.Add(time.Minute), ErrNotClaimable, 0},
		{"lease over: claimable again", t0.Add(lease), nil, 0},
	}
	for _, st := range steps {
		if err := s.ClaimTrigger(ctx, tr.ID, st.at, lease); !errors.Is(err, st.want) {
			t.Errorf("%s: err = %v, want %v", st.name, err, st.want)
		}
		ts, err := s.PendingTriggers(ctx, st.at, 0)
		if err != nil || len(ts) != st.wantPending {
			t.Errorf("%s: %d pending, %v; want %d", st.name, len(ts), err, st.wantPending)
		}
	}
	if ts, _ := s.PendingTriggers(ctx, t0.Add(2*lease), 0); len(ts) != 1 {
		t.Errorf("after the second lease ends: %d pending, want 1 (a dead worker's trigger comes back)", len(ts))
	}
	if err := s.CompleteTrigger(ctx, tr.ID, t0.Add(lease)); err != nil {
		t.Fatalf("complete a claimed trigger: %v", err)
	}
	if err := s.ClaimTrigger(ctx, tr.ID, t0.Add(time.Hour), lease); !errors.Is(err, ErrWrongState) {
		t.Errorf("claim a done trigger: %v, want ErrWrongState", err)
	}
	if err := s.ClaimTrigger(ctx, 999, t0, lease); !errors.Is(err, ErrNotFound) {
		t.Errorf("claim unknown trigger: %v, want ErrNotFound", err)
	}
}
