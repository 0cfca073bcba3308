package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Trigger is a REDCap Data Entry Trigger waiting to be worked: a record was
// saved, so the rules that run on save are evaluated for it. The queue is
// durable so that REDCap gets its answer at once (it never retries) and no
// trigger is lost if nudge stops before working it.
type Trigger struct {
	ID                int64
	Project, Record   string
	Event, Instrument string
	Instance          int // repeat instance; 0 = not repeating
	ReceivedAt        time.Time
	Attempts          int       // how many times it was worked (completed or retried)
	LastError         string    // why the last attempt failed, if one did
	NotBefore         time.Time // when it is next due; zero = now
	DoneAt            time.Time // zero while pending
}

const triggerColumns = `id, project, record, event, instrument, instance, received_at, attempts, last_error,
	not_before, done_at`

const (
	sqlInsertTrigger = `
INSERT INTO triggers (project, record, event, instrument, instance, received_at) VALUES (?, ?, ?, ?, ?, ?)`

	// sqlPendingTriggers uses triggers_pending (received_at, id) WHERE done_at IS NULL.
	sqlPendingTriggers = `
SELECT ` + triggerColumns + ` FROM triggers
WHERE done_at IS NULL AND (not_before IS NULL OR not_before <= ?)
ORDER BY received_at, id LIMIT ?`

	sqlGetTrigger = `SELECT ` + triggerColumns + ` FROM triggers WHERE id = ?`

	sqlClaimTrigger = `
UPDATE triggers SET not_before = ?
WHERE id = ? AND done_at IS NULL AND (not_before IS NULL OR not_before <= ?)`

	sqlCompleteTrigger = `
UPDATE triggers SET done_at = ?, attempts = attempts + 1 WHERE id = ? AND done_at IS NULL`

	sqlPruneTriggers = `DELETE FROM triggers WHERE done_at IS NOT NULL AND done_at < ?`

	sqlRetryTrigger = `
UPDATE triggers SET attempts = attempts + 1, last_error = ?, not_before = ?
WHERE id = ? AND done_at IS NULL`
)

// EnqueueTrigger stores a trigger and sets t.ID. It needs a Project, a Record
// and ReceivedAt; Attempts, LastError, NotBefore and DoneAt are ignored (a
// new trigger is due at once).
func (s *Store) EnqueueTrigger(ctx context.Context, t *Trigger) error {
	if t == nil || t.Project == "" || t.Record == "" || t.ReceivedAt.IsZero() {
		return fmt.Errorf("%w: a trigger needs a project, a record and the time it was received", ErrInvalid)
	}
	res, err := s.db.ExecContext(ctx, sqlInsertTrigger, t.Project, t.Record, t.Event, t.Instrument, t.Instance,
		dbTime(t.ReceivedAt))
	if err != nil {
		return fmt.Errorf("storage: queue trigger for record %q of project %q: %w", t.Record, t.Project, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	t.ID, t.Attempts, t.LastError, t.NotBefore, t.DoneAt = id, 0, "", time.Time{}, time.Time{}
	return nil
}

func scanTrigger(r scanner) (Trigger, error) {
	var (
		t                         Trigger
		received, notBefore, done sql.NullInt64
	)
	err := r.Scan(&t.ID, &t.Project, &t.Record, &t.Event, &t.Instrument, &t.Instance, &received, &t.Attempts,
		&t.LastError, &notBefore, &done)
	t.ReceivedAt, t.NotBefore, t.DoneAt = goTime(received), goTime(notBefore), goTime(done)
	return t, err
}

// PendingTriggers returns up to limit (≤ 0: all) triggers not yet done
// whose NotBefore has come at now, oldest (by ReceivedAt) first.
func (s *Store) PendingTriggers(ctx context.Context, now time.Time, limit int) ([]Trigger, error) {
	rows, err := s.db.QueryContext(ctx, sqlPendingTriggers, now.UnixNano(), limitArg(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Trigger
	for rows.Next() {
		t, err := scanTrigger(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// GetTrigger returns the trigger with the given ID, or ErrNotFound.
func (s *Store) GetTrigger(ctx context.Context, id int64) (Trigger, error) {
	t, err := scanTrigger(s.db.QueryRowContext(ctx, sqlGetTrigger, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Trigger{}, fmt.Errorf("%w: trigger %d", ErrNotFound, id)
	}
	return t, err
}

// ClaimTrigger leases a due trigger to one worker until now+lease, in one
// committed statement: while the lease runs, PendingTriggers does not return
// it, so two nudge processes on one database do not both work it. Exactly
// one caller wins; the others get ErrNotClaimable (or ErrWrongState when it
// is done). Complete or retry it before the lease ends; if the worker dies,
// the trigger is due again when the lease ends. Using it is optional:
// CompleteTrigger and RetryTrigger also work on unclaimed triggers.
func (s *Store) ClaimTrigger(ctx context.Context, id int64, now time.Time, lease time.Duration) error {
	if lease <= 0 || now.IsZero() {
		return fmt.Errorf("%w: claiming trigger %d needs a time and a positive lease", ErrInvalid, id)
	}
	res, err := s.db.ExecContext(ctx, sqlClaimTrigger, dbTime(now.Add(lease)), id, now.UnixNano())
	if err != nil {
		return fmt.Errorf("storage: claim trigger %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	t, err := s.GetTrigger(ctx, id)
	if err != nil {
		return err
	}
	if !t.DoneAt.IsZero() {
		return fmt.Errorf("%w: trigger %d is already done", ErrWrongState, id)
	}
	return fmt.Errorf("%w (trigger %d is leased or not due until %s)", ErrNotClaimable, id, t.NotBefore.Format(time.RFC3339))
}

// CompleteTrigger marks a pending trigger done at at and counts the attempt.
// LastError keeps the last failure, if any. A trigger that is already done
// gives ErrWrongState, an unknown one ErrNotFound.
func (s *Store) CompleteTrigger(ctx context.Context, id int64, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("%w: completing trigger %d needs a time", ErrInvalid, id)
	}
	return s.updateTrigger(ctx, id, "complete", sqlCompleteTrigger, dbTime(at), id)
}

// RetryTrigger records a failed attempt at a pending trigger (reason is kept
// as LastError) and makes it due again at retryAt.
func (s *Store) RetryTrigger(ctx context.Context, id int64, reason string, retryAt time.Time) error {
	return s.updateTrigger(ctx, id, "retry", sqlRetryTrigger, reason, dbTime(retryAt), id)
}

// updateTrigger runs an UPDATE guarded by "not done" and explains a miss.
func (s *Store) updateTrigger(ctx context.Context, id int64, what, q string, args ...any) error {
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("storage: %s trigger %d: %w", what, id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	if _, err := s.GetTrigger(ctx, id); err != nil {
		return err
	}
	return fmt.Errorf("%w: cannot %s trigger %d: it is already done", ErrWrongState, what, id)
}

// PruneTriggers deletes the triggers that were done before before, and
// returns how many. Pending triggers are never deleted.
func (s *Store) PruneTriggers(ctx context.Context, before time.Time) (int64, error) {
	if before.IsZero() {
		return 0, fmt.Errorf("%w: pruning triggers needs a time", ErrInvalid)
	}
	res, err := s.db.ExecContext(ctx, sqlPruneTriggers, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("storage: prune triggers: %w", err)
	}
	return res.RowsAffected()
}
