package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// WriteBackState is where a write-back stands.
type WriteBackState string

// The write-back states.
const (
	WriteBackPending WriteBackState = "pending" // to be imported into REDCap
	WriteBackDone    WriteBackState = "done"    // REDCap accepted it
	WriteBackFailed  WriteBackState = "failed"  // REDCap rejected it for good; kept for the report
)

// WriteBack is one row to import into REDCap: some fields of one record
// (and event and repeat instance).
type WriteBack struct {
	ID                     int64
	Project, Record, Event string
	RepeatInstrument       string
	Instance               int               // 0 = not a repeat instance
	Fields                 map[string]string // REDCap field name → value
	State                  WriteBackState
	Attempts               int       // imports tried so far
	LastError              string    // REDCap's last answer when it refused
	NotBefore              time.Time // retry time; zero = now
	CreatedAt, DoneAt      time.Time // DoneAt: when REDCap accepted it
}

const writeBackColumns = `id, project, record, event, repeat_instrument, instance, fields, state,
	attempts, last_error, not_before, created_at, done_at`

const (
	sqlUnreported = `
SELECT ` + messageColumns + ` FROM messages WHERE status <> reported_status ORDER BY id LIMIT ?`

	sqlSetReported = `UPDATE messages SET reported_status = ? WHERE id = ?`

	sqlInsertWriteBack = `
INSERT INTO writebacks (project, record, event, repeat_instrument, instance, fields, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?)`

	sqlPendingWriteBacks = `
SELECT ` + writeBackColumns + ` FROM writebacks
WHERE project = ? AND state = 'pending' AND (not_before IS NULL OR not_before <= ?)
ORDER BY id LIMIT ?`

	sqlFailedWriteBacks = `
SELECT ` + writeBackColumns + ` FROM writebacks WHERE project = ? AND state = 'failed' ORDER BY id`

	sqlCompleteWriteBack = `
UPDATE writebacks SET state = 'done', attempts = attempts + 1, last_error = '', done_at = ?
WHERE id = ? AND state = 'pending'`

	sqlRetryWriteBack = `
UPDATE writebacks SET attempts = attempts + 1, last_error = ?, not_before = ?
WHERE id = ? AND state = 'pending'`

	sqlFailWriteBack = `
UPDATE writebacks SET state = 'failed', attempts = attempts + 1, last_error = ?
WHERE id = ? AND state = 'pending'`

	sqlWriteBackState = `SELECT state FROM writebacks WHERE id = ?`
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
// Project, Record, CreatedAt and at least one field; ID, State and the
// bookkeeping fields are ignored. Pass the status read
// from Unreported, not the latest one: a status that moved on meanwhile is
// then still unreported and is picked up next time.
func (s *Store) EnqueueWriteBacks(ctx context.Context, items []WriteBack, reported map[int64]string) error {
	fields := make([][]byte, len(items))
	for i, w := range items {
		if w.Project == "" || w.Record == "" || len(w.Fields) == 0 || w.CreatedAt.IsZero() {
			return fmt.Errorf("%w: write-back %d: project, record, CreatedAt and at least one field are required", ErrInvalid, i)
		}
		b, err := json.Marshal(w.Fields)
		if err != nil {
			return fmt.Errorf("storage: write-back %d fields: %w", i, err)
		}
		fields[i] = b
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for i, w := range items {
			_, err := tx.ExecContext(ctx, sqlInsertWriteBack, w.Project, w.Record, w.Event,
				w.RepeatInstrument, w.Instance, string(fields[i]), dbTime(w.CreatedAt))
			if err != nil {
				return fmt.Errorf("storage: queue write-back for record %q: %w", w.Record, err)
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

func scanWriteBack(r scanner) (WriteBack, error) {
	var (
		w                        WriteBack
		fields                   string
		notBefore, created, done sql.NullInt64
	)
	err := r.Scan(&w.ID, &w.Project, &w.Record, &w.Event, &w.RepeatInstrument, &w.Instance, &fields,
		&w.State, &w.Attempts, &w.LastError, &notBefore, &created, &done)
	if err != nil {
		return WriteBack{}, err
	}
	if err := json.Unmarshal([]byte(fields), &w.Fields); err != nil {
		return WriteBack{}, fmt.Errorf("storage: write-back %d has unreadable fields: %w", w.ID, err)
	}
	w.NotBefore, w.CreatedAt, w.DoneAt = goTime(notBefore), goTime(created), goTime(done)
	return w, nil
}

func (s *Store) queryWriteBacks(ctx context.Context, q string, args ...any) ([]WriteBack, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []WriteBack
	for rows.Next() {
		w, err := scanWriteBack(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// PendingWriteBacks returns up to limit (≤ 0: all) pending write-backs of a
// project that are due at now, oldest first.
func (s *Store) PendingWriteBacks(ctx context.Context, project string, now time.Time, limit int) ([]WriteBack, error) {
	return s.queryWriteBacks(ctx, sqlPendingWriteBacks, project, now.UnixNano(), limitArg(limit))
}

// FailedWriteBacks returns a project's write-backs that REDCap rejected for
// good, oldest first, for the report.
func (s *Store) FailedWriteBacks(ctx context.Context, project string) ([]WriteBack, error) {
	return s.queryWriteBacks(ctx, sqlFailedWriteBacks, project)
}

// CompleteWriteBacks marks pending write-backs as accepted by REDCap, in one
// transaction. IDs that are not pending (already completed by an earlier,
// interrupted pass) are left alone.
func (s *Store) CompleteWriteBacks(ctx context.Context, ids []int64, at time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, sqlCompleteWriteBack)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range ids {
			if _, err := stmt.ExecContext(ctx, dbTime(at), id); err != nil {
				return fmt.Errorf("storage: complete write-back %d: %w", id, err)
			}
		}
		return nil
	})
}

// RetryWriteBack records a failed import attempt of a pending write-back and
// makes it due again at retryAt.
func (s *Store) RetryWriteBack(ctx context.Context, id int64, reason string, retryAt time.Time) error {
	return s.updateWriteBack(ctx, id, "retry", sqlRetryWriteBack, reason, dbTime(retryAt), id)
}

// FailWriteBack records that REDCap rejected a pending write-back for good
// (e.g. a field does not exist). It stays in the store for the report.
func (s *Store) FailWriteBack(ctx context.Context, id int64, reason string) error {
	return s.updateWriteBack(ctx, id, "fail", sqlFailWriteBack, reason, id)
}

func (s *Store) updateWriteBack(ctx context.Context, id int64, what, q string, args ...any) error {
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("storage: %s write-back %d: %w", what, id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var state WriteBackState
	err = s.db.QueryRowContext(ctx, sqlWriteBackState, id).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: write-back %d", ErrNotFound, id)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: cannot %s write-back %d: it is %s", ErrWrongState, what, id, state)
}
