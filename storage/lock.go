package storage

import (
	"context"
	"fmt"
	"time"
)

const (
	// sqlTryLock takes a free or expired lease, or renews one the owner
	// already holds; it changes no row when someone else holds it.
	sqlTryLock = `
INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE locks.owner = excluded.owner OR locks.expires_at <= ?`

	sqlUnlock = `DELETE FROM locks WHERE name = ? AND owner = ?`
)

// TryLock takes the lease called name for owner until now+ttl, if it is
// free, expired at now, or already held by owner (then it is renewed). It
// reports whether owner holds the lease afterwards. A lease lets one nudge
// process at a time do a job (a scheduled run, the poller) across processes;
// renew it well before ttl runs out.
func (s *Store) TryLock(ctx context.Context, name, owner string, ttl time.Duration, now time.Time) (bool, error) {
	if name == "" || owner == "" || ttl <= 0 {
		return false, fmt.Errorf("%w: a lock needs a name, an owner and a positive ttl", ErrInvalid)
	}
	res, err := s.db.ExecContext(ctx, sqlTryLock, name, owner, now.Add(ttl).UnixNano(), now.UnixNano())
	if err != nil {
		return false, fmt.Errorf("storage: lock %q: %w", name, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Unlock releases the lease called name if owner holds it; otherwise it
// returns ErrLockNotHeld (the lease expired and another owner took it, or it
// was never taken).
func (s *Store) Unlock(ctx context.Context, name, owner string) error {
	res, err := s.db.ExecContext(ctx, sqlUnlock, name, owner)
	if err != nil {
		return fmt.Errorf("storage: unlock %q: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: %q by %q", ErrLockNotHeld, name, owner)
	}
	return nil
}
