package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"
)

// WriteBackState is where a write-back target stands.
type WriteBackState string

// The write-back states.
const (
	WriteBackPending WriteBackState = "pending" // to be imported into REDCap
	WriteBackDone    WriteBackState = "done"    // REDCap accepted it
	WriteBackFailed  WriteBackState = "failed"  // REDCap rejected it for good; kept for the report
	WriteBackDropped WriteBackState = "dropped" // its record no longer exists in REDCap; kept for the report
)

// Origins of a write-back value, as stored in WriteBack.Origin; a reply
// rule's writes are OriginReply(name).
const (
	OriginStatus = "status"  // a message's outcome (a rule's write_back)
	OriginOptOut = "opt-out" // the project's opt_out value, written on a STOP
	OriginOptIn  = "opt-in"  // the project's opt_in_value, written on a START
)

// OriginReply is the Origin of the fields the reply rule called name sets.
func OriginReply(name string) string { return "reply:" + name }

// WriteBack asks for some fields of one REDCap row (a record, event and
// repeat instance) to be set. The store keeps one target per field: a newer
// value for a target replaces an older one that is still waiting, so REDCap
// only ever receives each target's newest value.
type WriteBack struct {
	Project, Record, Event string
	RepeatInstrument       string
	Instance               int               // 0 = not a repeat instance
	Fields                 map[string]string // REDCap field name → value
	Origin                 string            // who asks: OriginStatus, OriginOptOut, …
	// IfOrigin, when set, makes the write-back conditional: each field is
	// written only if its target's current value was queued with this
	// origin (e.g. START reverts only an opt-out nudge wrote); otherwise
	// the field is left alone.
	IfOrigin  string
	CreatedAt time.Time // when the value was decided; an older value never replaces a newer one
}

// WriteBackTarget is one REDCap value nudge keeps up to date: a field of
// one record, event and repeat instance, with the newest value queued for it.
type WriteBackTarget struct {
	ID                     int64
	Project, Record, Event string
	RepeatInstrument       string
	Instance               int
	Field, Value, Origin   string
	Seq                    int64 // raised each time a new value is queued
	State                  WriteBackState
	Attempts               int       // imports of the current value tried so far
	Refusals               int       // of those, refused by REDCap for this row alone
	LastError              string    // why REDCap did not take it, when it did not
	NotBefore              time.Time // retry time; zero = now
	CreatedAt, DoneAt      time.Time // CreatedAt: when the current value was queued
}

// Ref names the target's current value for a state change.
func (t WriteBackTarget) Ref() WriteBackRef { return WriteBackRef{ID: t.ID, Seq: t.Seq} }

// WriteBackRef names one value of one target: a state change made with it
// does nothing once a newer value has been queued for the target.
type WriteBackRef struct{ ID, Seq int64 }

const writeBackColumns = `id, project, record, event, repeat_instrument, instance, field, value, origin, seq,
	state, attempts, refusals, last_error, not_before, created_at, done_at`

const (
	sqlUnreported = `
SELECT ` + messageColumns + ` FROM messages WHERE status <> reported_status ORDER BY id LIMIT ?`

	sqlSetReported = `UPDATE messages SET reported_status = ? WHERE id = ?`

	// sqlUpsertWriteBack queues a value for a target. A value decided
	// before the one the target holds is ignored.
	sqlUpsertWriteBack = `
INSERT INTO writebacks (project, record, event, repeat_instrument, instance, field, value, origin, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (project, record, event, repeat_instrument, instance, field) DO UPDATE SET
	value = excluded.value, origin = excluded.origin, seq = writebacks.seq + 1, state = 'pending',
	attempts = 0, refusals = 0, last_error = '', not_before = NULL, created_at = excluded.created_at,
	done_at = NULL
WHERE excluded.created_at >= writebacks.created_at`

	// sqlReplaceWriteBack queues a value only over one of the given origin.
	sqlReplaceWriteBack = `
UPDATE writebacks SET value = ?, origin = ?, seq = seq + 1, state = 'pending', attempts = 0,
	refusals = 0, last_error = '', not_before = NULL, created_at = ?, done_at = NULL
WHERE project = ? AND record = ? AND event = ? AND repeat_instrument = ? AND instance = ? AND field = ?
  AND origin = ? AND created_at <= ?`

	sqlWriteBackTarget = `
SELECT ` + writeBackColumns + ` FROM writebacks
WHERE project = ? AND record = ? AND event = ? AND repeat_instrument = ? AND instance = ? AND field = ?`

	sqlPendingWriteBacks = `
SELECT ` + writeBackColumns + ` FROM writebacks
WHERE project = ? AND state = 'pending' AND (not_before IS NULL OR not_before <= ?)
ORDER BY created_at, id LIMIT ?`

	sqlWriteBacksByState = `
SELECT ` + writeBackColumns + ` FROM writebacks WHERE project = ? AND state = ? ORDER BY created_at, id`

	// The state changes below name the value they concern (id and seq):
	// a value superseded meanwhile is pending again and is left alone.
	sqlCompleteWriteBack = `
UPDATE writebacks SET state = 'done', attempts = attempts + 1, last_error = '', done_at = ?
WHERE id = ? AND seq = ? AND state = 'pending'`

	sqlRetryWriteBack = `
UPDATE writebacks SET attempts = attempts + 1, last_error = ?, not_before = ?
WHERE id = ? AND seq = ? AND state = 'pending'`

	sqlRefuseWriteBack = `
UPDATE writebacks SET attempts = attempts + 1, refusals = refusals + 1, last_error = ?, not_before = ?
WHERE id = ? AND seq = ? AND state = 'pending'`

	sqlFailWriteBack = `
UPDATE writebacks SET state = 'failed', attempts = attempts + 1, last_error = ?, done_at = ?
WHERE id = ? AND seq = ? AND state = 'pending'`

	sqlDropWriteBack = `
UPDATE writebacks SET state = 'dropped', last_error = ?, done_at = ?
WHERE id = ? AND seq = ? AND state = 'pending'`
)

// Unreported returns up to limit (≤ 0: all) messages whose status differs
// from the status last queued for write-back, oldest first. The caller turns
// them into write-backs (or none, for rules without write_back) and records
// what it reported with EnqueueWriteBacks.
func (s *Store) Unreported(ctx context.Context, limit int) ([]Message, error) {
	return s.queryMessages(ctx, sqlUnreported, limitArg(limit))
}

// EnqueueWriteBacks queues write-backs and, in the same transaction, sets
// each listed message's ReportedStatus (message ID → the status the queued
// rows report), so that a status is queued for REDCap exactly once even if
// nudge stops between the two. Either everything is stored or nothing is.
// reported may be nil (e.g. a reply rule's writes). Each item needs
// Project, Record, CreatedAt and at least one field. Pass the status read
// from Unreported, not the latest one: a status that moved on meanwhile is
// then still unreported and is picked up next time.
//
// Each field's value replaces whatever its target held, pending or not,
// unless the target holds a value decided later (a later CreatedAt); items
// are applied in order, so of two items for one target the later wins.
func (s *Store) EnqueueWriteBacks(ctx context.Context, items []WriteBack, reported map[int64]string) error {
	for i, w := range items {
		if w.Project == "" || w.Record == "" || len(w.Fields) == 0 || w.CreatedAt.IsZero() {
			return fmt.Errorf("%w: write-back %d: project, record, CreatedAt and at least one field are required", ErrInvalid, i)
		}
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for _, w := range items {
			if err := queueWriteBack(ctx, tx, w); err != nil {
				return err
			}
		}
		for id, status := range reported {
			res, err := tx.ExecContext(ctx, sqlSetReported, status, id)
			if err != nil {
				return fmt.Errorf("storage: mark message %d reported: %w", id, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return fmt.Errorf("%w: message %d (nothing queued)", ErrNotFound, id)
			}
		}
		return nil
	})
}

// queueWriteBack stores one write-back's fields inside tx, in field order.
func queueWriteBack(ctx context.Context, tx *sql.Tx, w WriteBack) error {
	fields := make([]string, 0, len(w.Fields))
	for f := range w.Fields {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	at := dbTime(w.CreatedAt)
	for _, f := range fields {
		var err error
		if w.IfOrigin != "" {
			_, err = tx.ExecContext(ctx, sqlReplaceWriteBack, w.Fields[f], w.Origin, at,
				w.Project, w.Record, w.Event, w.RepeatInstrument, w.Instance, f, w.IfOrigin, at)
		} else {
			_, err = tx.ExecContext(ctx, sqlUpsertWriteBack, w.Project, w.Record, w.Event,
				w.RepeatInstrument, w.Instance, f, w.Fields[f], w.Origin, at)
		}
		if err != nil {
			return fmt.Errorf("storage: queue write-back of field %s for record %q: %w", f, w.Record, err)
		}
	}
	return nil
}

func scanWriteBack(r scanner) (WriteBackTarget, error) {
	var (
		w                        WriteBackTarget
		notBefore, created, done sql.NullInt64
	)
	err := r.Scan(&w.ID, &w.Project, &w.Record, &w.Event, &w.RepeatInstrument, &w.Instance, &w.Field, &w.Value,
		&w.Origin, &w.Seq, &w.State, &w.Attempts, &w.Refusals, &w.LastError, &notBefore, &created, &done)
	if err != nil {
		return WriteBackTarget{}, err
	}
	w.NotBefore, w.CreatedAt, w.DoneAt = goTime(notBefore), goTime(created), goTime(done)
	return w, nil
}

func (s *Store) queryWriteBacks(ctx context.Context, q string, args ...any) ([]WriteBackTarget, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []WriteBackTarget
	for rows.Next() {
		w, err := scanWriteBack(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// PendingWriteBacks returns up to limit (≤ 0: all) pending write-back
// targets of a project that are due at now, oldest value first.
func (s *Store) PendingWriteBacks(ctx context.Context, project string, now time.Time, limit int) ([]WriteBackTarget, error) {
	return s.queryWriteBacks(ctx, sqlPendingWriteBacks, project, now.UnixNano(), limitArg(limit))
}

// FailedWriteBacks returns a project's write-back targets that REDCap
// rejected for good, oldest first, for the report.
func (s *Store) FailedWriteBacks(ctx context.Context, project string) ([]WriteBackTarget, error) {
	return s.WriteBacksIn(ctx, project, WriteBackFailed)
}

// WriteBacksIn returns a project's write-back targets in one state, oldest
// first.
func (s *Store) WriteBacksIn(ctx context.Context, project string, state WriteBackState) ([]WriteBackTarget, error) {
	return s.queryWriteBacks(ctx, sqlWriteBacksByState, project, state)
}

// WriteBackTargetOf returns the target of one field of one REDCap row, or
// ErrNotFound when nudge never queued a value for it.
func (s *Store) WriteBackTargetOf(ctx context.Context, project, record, event, repeatInstrument string, instance int, field string) (WriteBackTarget, error) {
	t, err := scanWriteBack(s.db.QueryRowContext(ctx, sqlWriteBackTarget, project, record, event, repeatInstrument, instance, field))
	if errors.Is(err, sql.ErrNoRows) {
		return WriteBackTarget{}, fmt.Errorf("%w: no write-back of field %s for record %q", ErrNotFound, field, record)
	}
	return t, err
}

// CompleteWriteBacks marks values as accepted by REDCap, in one
// transaction. A ref whose target has had a newer value queued since (the
// import carried an older value) or that is no longer pending is left
// alone: the newer value is still to be imported.
func (s *Store) CompleteWriteBacks(ctx context.Context, refs []WriteBackRef, at time.Time) error {
	return s.changeWriteBacks(ctx, "complete", sqlCompleteWriteBack, refs, dbTime(at))
}

// RetryWriteBacks records a failed import attempt of pending values and
// makes them due again at retryAt. Superseded refs are left alone.
func (s *Store) RetryWriteBacks(ctx context.Context, refs []WriteBackRef, reason string, retryAt time.Time) error {
	return s.changeWriteBacks(ctx, "retry", sqlRetryWriteBack, refs, reason, dbTime(retryAt))
}

// RefuseWriteBacks records that REDCap refused pending values (their row
// on its own, e.g. a locked record) and makes them due again at retryAt.
// Superseded refs are left alone.
func (s *Store) RefuseWriteBacks(ctx context.Context, refs []WriteBackRef, reason string, retryAt time.Time) error {
	return s.changeWriteBacks(ctx, "refuse", sqlRefuseWriteBack, refs, reason, dbTime(retryAt))
}

// FailWriteBacks records that REDCap rejected pending values for good (e.g.
// a locked record, a value its field does not accept). They stay in the
// store with the reason, for the report. Superseded refs are left alone.
func (s *Store) FailWriteBacks(ctx context.Context, refs []WriteBackRef, reason string, at time.Time) error {
	return s.changeWriteBacks(ctx, "fail", sqlFailWriteBack, refs, reason, dbTime(at))
}

// DropWriteBacks records that pending values were not imported because
// their record no longer exists in REDCap (an import would create it
// again). They stay in the store with the reason, for the report.
// Superseded refs are left alone.
func (s *Store) DropWriteBacks(ctx context.Context, refs []WriteBackRef, reason string, at time.Time) error {
	return s.changeWriteBacks(ctx, "drop", sqlDropWriteBack, refs, reason, dbTime(at))
}

// changeWriteBacks runs one guarded state change per ref in a transaction;
// args come before the ref's id and seq.
func (s *Store) changeWriteBacks(ctx context.Context, what, q string, refs []WriteBackRef, args ...any) error {
	if len(refs) == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range refs {
			if _, err := stmt.ExecContext(ctx, append(args[:len(args):len(args)], r.ID, r.Seq)...); err != nil {
				return fmt.Errorf("storage: %s write-back %d: %w", what, r.ID, err)
			}
		}
		return nil
	})
}
