package storage

import (
	"context"
	"database/sql"
	"errors"
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

	sqlLockHolder = `SELECT owner, expires_at FROM locks WHERE name = ?`

	// sqlTakeOver takes a lease from a holder that is gone, only if that
	// holder still has it.
	sqlTakeOver = `UPDATE locks SET owner = ?, expires_at = ? WHERE name = ? AND owner = ?`

	sqlUnlock = `DELETE FROM locks WHERE name = ? AND owner = ?`
)

// TryLock takes the lease called name for owner until now+ttl, if it is
// free, expired at now, already held by owner (then it is renewed), or held
// by a process that is provably gone: one on this host, in this PID
// namespace, that is no longer running (see NewOwner). It reports whether
// owner holds the lease afterwards. A lease lets one nudge process at a
// time do a job (a pass, the sending) across processes; keep ttl short and
// renew it well before it runs out, so that a holder that died on another
// host frees it soon.
func (s *Store) TryLock(ctx context.Context, name, owner string, ttl time.Duration, now time.Time) (bool, error) {
	if name == "" || owner == "" || ttl <= 0 {
		return false, fmt.Errorf("%w: a lock needs a name, an owner and a positive ttl", ErrInvalid)
	}
	until := now.Add(ttl).UnixNano()
	res, err := s.db.ExecContext(ctx, sqlTryLock, name, owner, until, now.UnixNano())
	if err != nil {
		return false, s.explain(fmt.Errorf("storage: lock %q: %w", name, err))
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return n == 1, err
	}
	holder, _, err := s.LockHolder(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return false, nil // released meanwhile: the caller tries again later
	}
	if err != nil || !ownerGone(holder) {
		return false, err
	}
	res, err = s.db.ExecContext(ctx, sqlTakeOver, owner, until, name, holder)
	if err != nil {
		return false, s.explain(fmt.Errorf("storage: taking over lock %q: %w", name, err))
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// LockHolder returns who holds the lease called name and until when
// (ErrNotFound when nobody has taken it or it was released). The holder may
// have expired or be gone: TryLock decides.
func (s *Store) LockHolder(ctx context.Context, name string) (owner string, until time.Time, err error) {
	var at int64
	err = s.db.QueryRowContext(ctx, sqlLockHolder, name).Scan(&owner, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, fmt.Errorf("%w: lock %q", ErrNotFound, name)
	}
	if err != nil {
		return "", time.Time{}, s.explain(fmt.Errorf("storage: lock %q: %w", name, err))
	}
	return owner, time.Unix(0, at).UTC(), nil
}

// Unlock releases the lease called name if owner holds it; otherwise it
// returns ErrLockNotHeld (the lease expired and another owner took it, or it
// was never taken).
func (s *Store) Unlock(ctx context.Context, name, owner string) error {
	res, err := s.db.ExecContext(ctx, sqlUnlock, name, owner)
	if err != nil {
		return s.explain(fmt.Errorf("storage: unlock %q: %w", name, err))
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
