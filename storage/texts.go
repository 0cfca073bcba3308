package storage

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migrationTexts records when each message was claimed for sending (the
// last claim: a text resent after lookups found nothing counts when it
// went again), so the study's caps can count the texts a number got per
// local day and week; rows claimed before it take their send time. Two
// indexes serve the counts: texts by number and claim time, queued texts
// by number.
const migrationTexts = `
ALTER TABLE messages ADD COLUMN claimed_at INTEGER;
UPDATE messages SET claimed_at = coalesce(sent_at, updated_at)
WHERE state NOT IN ('planned', 'retry', 'canceled', 'expired', 'skipped');
CREATE INDEX messages_texts ON messages (to_addr, claimed_at) WHERE channel = 'sms' AND claimed_at IS NOT NULL;
CREATE INDEX messages_queued_to ON messages (to_addr) WHERE channel = 'sms' AND state IN ('planned', 'retry');`

const (
	// sqlTexts selects the texts to a number that may have reached the
	// phone, claimed at or after a time: everything claimed, except what
	// went back to the queue, what Twilio provably never took (expired
	// after lookups) and what it refused at create (failed without a SID).
	sqlTexts = `
SELECT claimed_at FROM messages
WHERE channel = 'sms' AND to_addr = ? AND claimed_at >= ?
	AND state NOT IN ('planned', 'retry', 'canceled', 'expired', 'skipped')
	AND NOT (state = 'failed' AND sid IS NULL)`

	// sqlQueuedTexts selects when the queued texts to a number are due,
	// but for one message key.
	sqlQueuedTexts = `
SELECT coalesce(not_before, created_at) FROM messages
WHERE channel = 'sms' AND to_addr = ? AND state IN ('planned', 'retry') AND key <> ?`
)

// Texts returns when the texts to the E.164 number to that count against
// the study's caps were sent (claimed), for those claimed at or after
// since. With queued, it adds when each queued text to the number is due,
// leaving out the message whose key is except (the one being planned).
func (s *Store) Texts(ctx context.Context, to string, since time.Time, queued bool, except string) ([]time.Time, error) {
	out, err := s.times(ctx, sqlTexts, to, since.UnixNano())
	if err != nil || !queued {
		return out, err
	}
	q, err := s.times(ctx, sqlQueuedTexts, to, except)
	return append(out, q...), err
}

func (s *Store) times(ctx context.Context, q string, args ...any) ([]time.Time, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.explain(fmt.Errorf("storage: counting texts: %w", err))
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var at sql.NullInt64
		if err := rows.Scan(&at); err != nil {
			return nil, err
		}
		if at.Valid {
			out = append(out, goTime(at))
		}
	}
	return out, rows.Err()
}
