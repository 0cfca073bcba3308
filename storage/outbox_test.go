package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestSafetyOutboxTransitions spells out every allowed move of the outbox
// and checks CanMove against it for every pair of states: any move not
// listed here is refused.
func TestSafetyOutboxTransitions(t *testing.T) {
	allowed := map[[2]State]bool{}
	allow := func(from State, tos ...State) {
		for _, to := range tos {
			allowed[[2]State{from, to}] = true
		}
	}
	queuedTo := []State{StateSending, StateRetry, StateCanceled, StateExpired, StateFailed, StateSkipped}
	allow(StatePlanned, queuedTo...)
	allow(StateRetry, queuedTo...)
	allow(StateSending, StateSent, StateDelivered, StateUndelivered, StateFailed, StateCanceled, StateUnknown,
		StateRetry, StateReview, StateExpired)
	allow(StateSent, StateDelivered, StateUndelivered, StateFailed, StateCanceled, StateUnknown, StateReview)
	allow(StateUndelivered, StateReview)
	allow(StateFailed, StateReview)

	for _, from := range States {
		for _, to := range States {
			if got, want := CanMove(from, to), allowed[[2]State{from, to}]; got != want {
				t.Errorf("CanMove(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	// A state is final when its only way on is to review.
	for _, s := range States {
		live := false
		for _, to := range transitions[s] {
			live = live || to != StateReview
		}
		if s.Final() == live {
			t.Errorf("%s: Final() = %v disagrees with its moves %v", s, s.Final(), transitions[s])
		}
	}
}

// TestSafetyOutboxGuards runs every state-changing operation of the store
// on a message in each state and checks that it succeeds exactly from the
// states it is meant to move from (and that those moves are in the
// transitions table), and otherwise returns ErrWrongState or
// ErrNotClaimable and changes nothing.
func TestSafetyOutboxGuards(t *testing.T) {
	ctx := context.Background()
	ops := []struct {
		name string
		to   State
		from []State
		do   func(s *Store, id int64) error
	}{
		{"Claim", StateSending, []State{StatePlanned, StateRetry},
			func(s *Store, id int64) error { return s.Claim(ctx, id, t0, nil) }},
		{"MarkSent", StateSent, []State{StateSending},
			func(s *Store, id int64) error { return s.MarkSent(ctx, id, "SMx", "queued", 1, t0) }},
		{"MarkRetry", StateRetry, []State{StatePlanned, StateRetry, StateSending},
			func(s *Store, id int64) error { return s.MarkRetry(ctx, id, "x", t0, t0) }},
		{"Snooze", StateRetry, []State{StatePlanned, StateRetry, StateSending},
			func(s *Store, id int64) error { return s.Snooze(ctx, id, "x", t0, t0) }},
		{"MarkFailed", StateFailed, []State{StatePlanned, StateRetry, StateSending},
			func(s *Store, id int64) error { return s.MarkFailed(ctx, id, 21211, "x", t0) }},
		{"Cancel", StateCanceled, []State{StatePlanned, StateRetry},
			func(s *Store, id int64) error { return s.Cancel(ctx, id, "withdrew", t0) }},
		{"Expire", StateExpired, []State{StatePlanned, StateRetry, StateSending},
			func(s *Store, id int64) error { return s.Expire(ctx, id, "too late", t0) }},
		{"MarkReview", StateReview, []State{StateSending, StateSent, StateUndelivered, StateFailed},
			func(s *Store, id int64) error { return s.MarkReview(ctx, id, 30007, "filtered", t0) }},
	}
	s, _ := openTemp(t)
	n := 0
	for _, op := range ops {
		from := map[State]bool{}
		for _, f := range op.from {
			from[f] = true
			if !CanMove(f, op.to) {
				t.Errorf("%s moves %s → %s, which the transitions table refuses", op.name, f, op.to)
			}
		}
		for _, st := range States {
			n++
			m := newMsg(fmt.Sprint("guard", n), 1)
			id := mustEnqueue(t, s, m)
			if _, err := s.db.Exec(`UPDATE messages SET state = ? WHERE id = ?`, st, id); err != nil {
				t.Fatal(err)
			}
			err := op.do(s, id)
			got := mustGet(t, s, id).State
			switch {
			case from[st] && (err != nil || got != op.to):
				t.Errorf("%s from %s: %v, state %s; want %s", op.name, st, err, got, op.to)
			case !from[st] && (!(errors.Is(err, ErrWrongState) || errors.Is(err, ErrNotClaimable)) || got != st):
				t.Errorf("%s from %s: %v, state %s; want a refusal and %s unchanged", op.name, st, err, got, st)
			}
		}
	}
}
