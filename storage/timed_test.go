package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSafetyRetimeOnlyQueued: enqueueing a timed occurrence again with
// Retime moves a queued message to the new time and expiry, and leaves a
// sent one alone (no second row, no change); Retime refuses a message no
// longer queued. KeysOfRules lists both.
func TestSafetyRetimeOnlyQueued(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	due, later := t0.Add(time.Hour), t0.Add(48*time.Hour)

	queued := newMsg("1", 1)
	queued.NotBefore, queued.ExpiresAt = due, due.Add(2*time.Hour)
	qid := mustEnqueue(t, s, queued)
	sent := newMsg("2", 1)
	sent.NotBefore, sent.ExpiresAt = t0, due.Add(2*time.Hour)
	sid := mustSent(t, s, sent, "SM1")

	var again []*Message
	for _, m := range []*Message{newMsg("1", 1), newMsg("2", 1)} {
		m.NotBefore, m.ExpiresAt, m.Retime = later, later.Add(2*time.Hour), true
		again = append(again, m)
	}
	n, err := s.EnqueueBatch(ctx, again)
	if err != nil || n != 0 {
		t.Fatalf("EnqueueBatch = %d, %v; want 0 new", n, err)
	}
	if m := mustGet(t, s, qid); !m.NotBefore.Equal(later) || !m.ExpiresAt.Equal(later.Add(2*time.Hour)) || m.State != StatePlanned {
		t.Errorf("queued message: %s not before %v, expires %v; want re-timed to %v", m.State, m.NotBefore, m.ExpiresAt, later)
	}
	if m := mustGet(t, s, sid); !m.NotBefore.Equal(t0) || m.State != StateSent {
		t.Errorf("sent message: %s not before %v; want it untouched", m.State, m.NotBefore)
	}
	if err := s.Retime(ctx, sid, later, later, t0); !errors.Is(err, ErrWrongState) {
		t.Errorf("Retime of a sent message = %v, want ErrWrongState", err)
	}
	keys, err := s.KeysOfRules(ctx, map[string][]string{"main": {"reminder"}})
	if err != nil || len(keys) != 2 || keys[sent.Key].State != StateSent || !keys[queued.Key].NotBefore.Equal(later) {
		t.Errorf("KeysOfRules = %+v, %v", keys, err)
	}
}
