package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Sources of a status change, as stored in the history.
const (
	SourceSend     = "send"     // the provider's answer to the send itself
	SourcePoll     = "poll"     // a status fetched by SID
	SourceCallback = "callback" // a status callback from the provider
)

// StatusChange is one row of a message's status history.
type StatusChange struct {
	MessageID int64
	Status    string
	ErrorCode int
	Source    string // SourceSend, SourcePoll, SourceCallback or the caller's own
	At        time.Time
}

// finalRank is the rank of the statuses after which nothing changes.
const finalRank = 4

// StatusUnknown is the final status nudge gives a message whose provider
// never reported a final one within the tracking time (some carriers never
// confirm delivery); it is written back like any other status.
const StatusUnknown = "unknown"

// statusRanks orders every status Twilio publishes for a message (and
// nudge's own unknown): a status only ever moves to a higher rank. Twilio:
// accepted/scheduled → queued → sending → sent → (receiving, received) →
// a final status. Email uses accepted and failed. A status not listed here
// is one Twilio added later: it is stored where it is harmless and never
// stops the poller (see RecordStatus).
var statusRanks = map[string]int{
	"accepted": 0, "scheduled": 0, "queued": 0,
	"sending":   1,
	"sent":      2,
	"receiving": 3, "received": 3,
	"delivered": finalRank, "undelivered": finalRank, "failed": finalRank, "canceled": finalRank,
	"read": finalRank, "partially_delivered": finalRank, StatusUnknown: finalRank,
}

func statusRank(status string) (int, bool) {
	r, ok := statusRanks[status]
	return r, ok
}

// IsFinalStatus reports whether a provider status is final: no later status
// will replace it.
func IsFinalStatus(status string) bool {
	r, ok := statusRank(status)
	return ok && r == finalRank
}

// KnownStatus reports whether nudge knows a provider status.
func KnownStatus(status string) bool {
	_, ok := statusRank(status)
	return ok
}

// finalState maps a final provider status to the message state.
func finalState(status string) State {
	switch status {
	case "delivered", "read", "partially_delivered":
		return StateDelivered
	case "undelivered":
		return StateUndelivered
	case "canceled":
		return StateCanceled
	case StatusUnknown:
		return StateUnknown
	default: // failed
		return StateFailed
	}
}

const (
	sqlStateStatus = `SELECT state, status FROM messages WHERE id = ?`

	sqlRecordProgress = `
UPDATE messages SET status = ?, error_code = CASE WHEN ? = 0 THEN error_code ELSE ? END, updated_at = ?
WHERE id = ?`

	sqlRecordFinal = `
UPDATE messages SET status = ?, state = ?, error_code = CASE WHEN ? = 0 THEN error_code ELSE ? END,
	final_at = ?, next_poll = NULL, updated_at = ?
WHERE id = ?`

	sqlAddHistory = `
INSERT INTO status_history (message_id, status, error_code, source, at) VALUES (?, ?, ?, ?, ?)`

	sqlHistory = `
SELECT message_id, status, error_code, source, at FROM status_history WHERE message_id = ? ORDER BY id`

	sqlSetNextPoll = `UPDATE messages SET next_poll = ? WHERE id = ? AND state = 'sent'`
)

func addHistory(ctx context.Context, tx *sql.Tx, id int64, status string, code int, at time.Time, source string) error {
	if _, err := tx.ExecContext(ctx, sqlAddHistory, id, status, code, source, dbTime(at)); err != nil {
		return fmt.Errorf("storage: add status %q to message %d: %w", status, id, err)
	}
	return nil
}

// RecordStatus applies a provider status to a sent message, if it moves the
// message forward. Statuses only move forward (see statusRanks): a status of
// the same or a lower rank than the current one, or anything after a final
// status, is a no-op returning changed=false — status callbacks arrive late,
// twice and out of order, so a delivered that overtook its sent stays
// delivered. A change updates the message (a final status also sets the
// final state delivered, undelivered or failed, FinalAt, and stops polling)
// and is appended to the history with its source. A non-zero errorCode
// replaces the stored one.
func (s *Store) RecordStatus(ctx context.Context, id int64, status string, errorCode int, at time.Time, source string) (changed bool, err error) {
	rank, ok := statusRank(status)
	if !ok {
		return false, fmt.Errorf("%w %q for message %d", ErrUnknownStatus, status, id)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var state State
		var cur string
		err := tx.QueryRowContext(ctx, sqlStateStatus, id).Scan(&state, &cur)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: message %d", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		switch state {
		case StateSent, StateDelivered, StateUndelivered, StateFailed, StateCanceled, StateReview, StateUnknown:
			// A message Twilio has: a late or repeated status after a
			// final one (or after review) changes nothing, below.
		default:
			return fmt.Errorf("%w: cannot record status %q for message %d: it is %s", ErrWrongState, status, id, state)
		}
		if curRank, ok := statusRank(cur); ok && (curRank == finalRank || rank <= curRank) {
			return nil
		}
		if rank == finalRank {
			_, err = tx.ExecContext(ctx, sqlRecordFinal, status, finalState(status), errorCode, errorCode,
				dbTime(at), dbTime(at), id)
		} else {
			_, err = tx.ExecContext(ctx, sqlRecordProgress, status, errorCode, errorCode, dbTime(at), id)
		}
		if err != nil {
			return fmt.Errorf("storage: record status %q for message %d: %w", status, id, err)
		}
		changed = true
		return addHistory(ctx, tx, id, status, errorCode, at, source)
	})
	if err != nil {
		return false, err
	}
	return changed, nil
}

// SetNextPoll schedules the next status poll of a sent message.
func (s *Store) SetNextPoll(ctx context.Context, id int64, at time.Time) error {
	return s.update(ctx, id, "schedule a poll for", sqlSetNextPoll, dbTime(at), id)
}

// History returns a message's status changes, oldest first.
func (s *Store) History(ctx context.Context, id int64) ([]StatusChange, error) {
	rows, err := s.db.QueryContext(ctx, sqlHistory, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StatusChange
	for rows.Next() {
		var c StatusChange
		var at sql.NullInt64
		if err := rows.Scan(&c.MessageID, &c.Status, &c.ErrorCode, &c.Source, &at); err != nil {
			return nil, err
		}
		c.At = goTime(at)
		out = append(out, c)
	}
	return out, rows.Err()
}
