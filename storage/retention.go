package storage

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"
)

// migrationRetention lets nudge forget what it no longer needs: a message
// whose body was blanked keeps a SHA-256 digest of it (body_digest, NULL
// while the body is kept), an inbound text likewise, and a text's body
// redacted at Twilio is remembered (redacted_at; redact_after holds a
// redaction Twilio refused back until then). Partial indexes keep each
// sweep to the rows it still has to do (old status history is found by
// status_history_at).
const migrationRetention = `
ALTER TABLE messages ADD COLUMN body_digest TEXT;
ALTER TABLE messages ADD COLUMN redacted_at INTEGER;
ALTER TABLE messages ADD COLUMN redact_after INTEGER;
ALTER TABLE inbound ADD COLUMN body_digest TEXT;
CREATE INDEX messages_keep_body ON messages (final_at) WHERE body_digest IS NULL AND final_at IS NOT NULL;
CREATE INDEX messages_to_redact ON messages (final_at)
	WHERE redacted_at IS NULL AND sid IS NOT NULL AND channel = 'sms' AND final_at IS NOT NULL;
CREATE INDEX inbound_keep_body ON inbound (received_at) WHERE body_digest IS NULL;`

// settled holds for a message that will never be sent (again) nor change
// status but to review: one queued, being sent or a text still on its way
// keeps its body. An email is sent once its server took it.
const settled = `state NOT IN ('planned', 'retry', 'sending') AND NOT (state = 'sent' AND channel = 'sms')`

const (
	sqlBodiesToBlank = `
SELECT id, body FROM messages
WHERE body_digest IS NULL AND final_at IS NOT NULL AND final_at < ? AND ` + settled + `
ORDER BY final_at LIMIT ?`

	sqlBlankBody = `
UPDATE messages SET body = '', subject = '', html = '', body_digest = ?
WHERE id = ? AND body_digest IS NULL AND ` + settled

	sqlToRedact = `
SELECT id, sid FROM messages
WHERE redacted_at IS NULL AND sid IS NOT NULL AND channel = 'sms' AND final_at IS NOT NULL
	AND final_at <= ? AND ` + settled + ` AND (redact_after IS NULL OR redact_after <= ?)
ORDER BY final_at LIMIT ?`

	sqlMarkRedacted   = `UPDATE messages SET redacted_at = ?, redact_after = NULL WHERE id = ?`
	sqlPostponeRedact = `UPDATE messages SET redact_after = ? WHERE id = ? AND redacted_at IS NULL`

	sqlInboundToBlank = `
SELECT id, body FROM inbound
WHERE body_digest IS NULL AND received_at < ? AND handled <> ''
ORDER BY received_at LIMIT ?`

	sqlBlankInbound = `
UPDATE inbound SET body = '', reply = '', body_digest = ? WHERE id = ? AND body_digest IS NULL AND handled <> ''`

	// sqlPruneHistory deletes old status changes of messages that are
	// final since before the same time; the message keeps its last status.
	sqlPruneHistory = `
DELETE FROM status_history WHERE id IN (
	SELECT h.id FROM status_history h JOIN messages m ON m.id = h.message_id
	WHERE h.at < ? AND m.final_at IS NOT NULL AND m.final_at < ? AND m.` + settled + `
	ORDER BY h.at LIMIT ?)`
)

// BodyDigest is the hex SHA-256 of a body: what remains of it once it is
// blanked, enough to tell later whether a given text was the one sent.
func BodyDigest(body string) string {
	sum := sha256.Sum256([]byte(body))
	return hex.EncodeToString(sum[:])
}

// BlankBodies blanks the body, subject and HTML of at most limit messages
// final since before before, keeping each one's row, state, status and
// BodyDigest, and returns how many it blanked. A message that may still be
// sent (planned, retry, sending, sent) is never touched.
func (s *Store) BlankBodies(ctx context.Context, before time.Time, limit int) (int, error) {
	return s.blank(ctx, "message bodies", sqlBodiesToBlank, sqlBlankBody, before, limit)
}

// BlankInbound blanks the body and nudge's reply of at most limit inbound
// texts received before before and already handled, keeping the row (SID,
// number, time, how it was handled) and the body's BodyDigest, and returns
// how many it blanked.
func (s *Store) BlankInbound(ctx context.Context, before time.Time, limit int) (int, error) {
	return s.blank(ctx, "inbound texts", sqlInboundToBlank, sqlBlankInbound, before, limit)
}

func (s *Store) blank(ctx context.Context, what, pick, blank string, before time.Time, limit int) (int, error) {
	if before.IsZero() || limit < 1 {
		return 0, fmt.Errorf("%w: blanking %s needs a time and a positive limit", ErrInvalid, what)
	}
	n := 0
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n = 0
		rows, err := tx.QueryContext(ctx, pick, dbTime(before), limit)
		if err != nil {
			return err
		}
		type row struct {
			id   int64
			body string
		}
		var todo []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.body); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range todo {
			res, err := tx.ExecContext(ctx, blank, BodyDigest(r.body), r.id)
			if err != nil {
				return err
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += int(k)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("storage: blank %s: %w", what, err)
	}
	return n, nil
}

// PruneHistory deletes at most limit status changes recorded before before
// of messages final since before that time too, and returns how many. A
// message's own row keeps its last status.
func (s *Store) PruneHistory(ctx context.Context, before time.Time, limit int) (int, error) {
	if before.IsZero() || limit < 1 {
		return 0, fmt.Errorf("%w: pruning status history needs a time and a positive limit", ErrInvalid)
	}
	res, err := s.db.ExecContext(ctx, sqlPruneHistory, dbTime(before), dbTime(before), limit)
	if err != nil {
		return 0, fmt.Errorf("storage: prune status history: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Redactable is a text whose body is still held at Twilio.
type Redactable struct {
	ID  int64
	SID string
}

// ToRedact returns at most limit texts with a SID that reached a final
// state at or before finalBefore and whose body Twilio still holds, leaving
// out those postponed (PostponeRedact) past now; oldest first.
func (s *Store) ToRedact(ctx context.Context, finalBefore, now time.Time, limit int) ([]Redactable, error) {
	rows, err := s.db.QueryContext(ctx, sqlToRedact, dbTime(finalBefore), dbTime(now), limit)
	if err != nil {
		return nil, fmt.Errorf("storage: texts to redact: %w", err)
	}
	defer rows.Close()
	var out []Redactable
	for rows.Next() {
		var r Redactable
		if err := rows.Scan(&r.ID, &r.SID); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// MarkRedacted records that Twilio no longer holds the message's body
// (redacted, or the message is gone there).
func (s *Store) MarkRedacted(ctx context.Context, id int64, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, sqlMarkRedacted, dbTime(at), id); err != nil {
		return fmt.Errorf("storage: mark message %d redacted: %w", id, err)
	}
	return nil
}

// PostponeRedact leaves the message's redaction until after: Twilio
// refused it for now.
func (s *Store) PostponeRedact(ctx context.Context, id int64, after time.Time) error {
	if _, err := s.db.ExecContext(ctx, sqlPostponeRedact, dbTime(after), id); err != nil {
		return fmt.Errorf("storage: postpone redaction of message %d: %w", id, err)
	}
	return nil
}
