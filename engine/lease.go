package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nudge-study/nudge/storage"
)

const (
	// leaseTTL is how long the pass and sending leases last without
	// renewal: a holder that died where nudge cannot see it (another host)
	// frees them this long after its last renewal. One on this host is
	// taken over at once (see storage.TryLock).
	leaseTTL = time.Minute
	// leaseRenew is how often a held lease is renewed, well within leaseTTL.
	leaseRenew = 20 * time.Second
)

// ErrLeaseLost means a lease ran out while this process still worked under
// it (the process stalled for longer than the lease, or the database could
// not be reached to renew it): another process may hold it now, so the
// work stopped. Nothing is lost: the next pass carries on.
var ErrLeaseLost = errors.New("engine: the lease ran out before this process could renew it (it stalled, or the database was locked); it stopped so that no other nudge works beside it, and the next pass carries on")

// holdLease renews the lease name (which owner holds) every leaseRenew
// until stop is called. The returned context ends, with cause ErrLeaseLost,
// as soon as a renewal finds the lease taken, or renewals fail for as long
// as the lease lasts. stop waits for the renewals to end, so the lease can
// be released right after it.
func (e *Engine) holdLease(ctx context.Context, name, owner string) (context.Context, func()) {
	lctx, cancel := context.WithCancelCause(ctx)
	every := e.leaseRenew
	if every <= 0 {
		every = leaseRenew
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		renewed := e.now()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			now := e.now()
			ok, err := e.Store.TryLock(lctx, name, owner, leaseTTL, now)
			switch {
			case lctx.Err() != nil:
				return
			case err == nil && !ok:
				cancel(fmt.Errorf("%w: the %s lease", ErrLeaseLost, name))
				return
			case err == nil:
				renewed = now
			case now.Sub(renewed) >= leaseTTL:
				cancel(fmt.Errorf("%w: the %s lease: %w", ErrLeaseLost, name, err))
				return
			default:
				e.log().WithError(err).WithField("lease", name).Warn("could not renew the lease; trying again")
			}
		}
	}()
	return lctx, func() {
		cancel(nil)
		<-done
	}
}

// leaseErr returns why ctx, a context from holdLease, ended, when the
// lease was lost; err otherwise.
func leaseErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrLeaseLost) {
		return errors.Join(cause, err)
	}
	return err
}

// holderName is the host and process id of a lease owner, for messages.
func holderName(owner string) string {
	f := strings.SplitN(owner, ":", 3)
	if len(f) < 2 {
		return owner
	}
	return "process " + f[1] + " on " + f[0]
}

// busyErr says who holds the pass lease and until when.
func (e *Engine) busyErr(ctx context.Context) error {
	owner, until, err := e.Store.LockHolder(ctx, "pass")
	if errors.Is(err, storage.ErrNotFound) || err != nil {
		return ErrBusy
	}
	return fmt.Errorf("%w (%s holds it until %s unless renewed)", ErrBusy, holderName(owner), until.Format(time.RFC3339))
}
