package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLockLease(t *testing.T) {
	s, path := openTemp(t)
	other, err := Open(path) // a second process
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	const ttl = time.Minute

	steps := []struct {
		store *Store
		owner string
		at    time.Duration // after t0
		want  bool
	}{
		{s, "a", 0, true},                     // free
		{other, "b", 30 * time.Second, false}, // held by a
		{s, "a", 45 * time.Second, true},      // a renews until 1m45s
		{other, "b", 90 * time.Second, false}, // still held
		{other, "b", 105 * time.Second, true}, // expired exactly now: b takes it
		{s, "a", 106 * time.Second, false},    // a lost it
		{other, "b", 106 * time.Second, true}, // b renews
	}
	for i, st := range steps {
		got, err := st.store.TryLock(ctx, "scheduler", st.owner, ttl, t0.Add(st.at))
		if err != nil || got != st.want {
			t.Errorf("step %d: TryLock(%s at +%v) = %v, %v; want %v", i, st.owner, st.at, got, err, st.want)
		}
	}
	if err := s.Unlock(ctx, "scheduler", "a"); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("Unlock by the old owner: %v, want ErrLockNotHeld", err)
	}
	if err := other.Unlock(ctx, "scheduler", "b"); err != nil {
		t.Errorf("Unlock by the holder: %v", err)
	}
	if ok, _ := s.TryLock(ctx, "scheduler", "a", ttl, t0.Add(107*time.Second)); !ok {
		t.Error("lock not free after Unlock")
	}
	if ok, _ := s.TryLock(ctx, "poller", "b", ttl, t0.Add(107*time.Second)); !ok {
		t.Error("locks with different names interfere")
	}
	if _, err := s.TryLock(ctx, "x", "a", 0, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("TryLock with ttl 0: %v, want ErrInvalid", err)
	}
}
