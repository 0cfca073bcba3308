package engine

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nudge-study/nudge/storage"
)

// stillClock is a clock that never moves.
type stillClock struct{ t time.Time }

func (c stillClock) Now() time.Time                             { return c.t }
func (c stillClock) Sleep(context.Context, time.Duration) error { return nil }

// TestSafetyLeaseLostStopsWork: while a lease is held, its renewals keep
// it; once another process has taken it (this one stalled past its
// expiry), the work's context ends with ErrLeaseLost, so the pass or the
// dispatch sends nothing more.
func TestSafetyLeaseLostStopsWork(t *testing.T) {
	st, err := storage.Open(filepath.Join(t.TempDir(), "nudge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	e := &Engine{Store: st, Clock: stillClock{t0}, leaseRenew: time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	owner := e.owner()
	if ok, err := st.TryLock(ctx, "pass", owner, leaseTTL, t0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	lctx, stop := e.holdLease(ctx, "pass", owner)
	defer stop()

	// Renewals run and keep the lease: another owner cannot take it.
	other := storage.NewOwner()
	for range 3 {
		if ok, err := st.TryLock(ctx, "pass", other, leaseTTL, t0); ok || err != nil {
			t.Fatalf("another owner took a held lease: %v, %v", ok, err)
		}
	}
	// The holder stalled: past its expiry, another process takes it.
	if ok, err := st.TryLock(ctx, "pass", other, leaseTTL, t0.Add(2*leaseTTL)); !ok || err != nil {
		t.Fatalf("expired lease not taken: %v, %v", ok, err)
	}
	select {
	case <-lctx.Done():
	case <-ctx.Done():
		t.Fatal("the work went on after its lease was taken")
	}
	if err := leaseErr(lctx, lctx.Err()); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("error %v, want ErrLeaseLost", err)
	}
	if holder, _, _ := st.LockHolder(ctx, "pass"); holder != other {
		t.Errorf("holder %q after the loss, want the new one", holder)
	}
}

// TestLeaseStopEndsRenewals: after stop returns, the lease is not renewed
// again, so releasing it right after is final.
func TestLeaseStopEndsRenewals(t *testing.T) {
	st, err := storage.Open(filepath.Join(t.TempDir(), "nudge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	e := &Engine{Store: st, Clock: stillClock{t0}, leaseRenew: time.Millisecond}
	ctx := context.Background()
	owner := e.owner()
	if ok, err := st.TryLock(ctx, "sending", owner, leaseTTL, t0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	_, stop := e.holdLease(ctx, "sending", owner)
	stop()
	if err := st.Unlock(ctx, "sending", owner); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.LockHolder(ctx, "sending"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("lease back after stop and release: %v", err)
	}
}
