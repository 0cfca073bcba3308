package storage

import (
	"context"
	"database/sql"
	"time"
)

// Occurrence says how often a rule has messaged one participant row.
type Occurrence struct {
	Project, Rule, Record, Event string
	Instance                     int
	OncePer                      string    // the digest of the once_per value ("" = none, see Message.OncePer)
	Count                        int       // messages that count against the repeat schedule
	Last                         time.Time // when the latest of them was planned
	Next                         int       // the occurrence number the next message gets
}

const (
	sqlAllOccurrences = `
SELECT project, rule, record, event, instance, once_per,
	count(DISTINCT occurrence) FILTER (WHERE state NOT IN ('canceled', 'expired')),
	max(created_at) FILTER (WHERE state NOT IN ('canceled', 'expired')), max(occurrence)
FROM messages
GROUP BY project, rule, record, event, instance, once_per`

	sqlOutstanding = `
SELECT
  (SELECT count(*) FROM messages WHERE state = 'sending'
      OR (state = 'sent' AND channel = 'sms' AND next_poll IS NOT NULL)
      OR status <> reported_status)
+ (SELECT count(*) FROM writebacks WHERE state = 'pending')`

	sqlWrittenBack = `
SELECT count(*) FROM messages
WHERE run_id = ? AND status <> '' AND status = reported_status
  AND state NOT IN ('planned', 'retry', 'skipped')
  AND NOT EXISTS (SELECT 1 FROM writebacks WHERE state = 'pending')`
)

// AllOccurrences returns, for every participant row any rule has messaged
// (and every once_per value it was messaged for), how many messages count
// against its repeat schedule, when the latest was planned and the next
// occurrence number (see Occurrences). The planner reads it once per pass
// instead of asking row by row.
func (s *Store) AllOccurrences(ctx context.Context) ([]Occurrence, error) {
	rows, err := s.db.QueryContext(ctx, sqlAllOccurrences)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Occurrence
	for rows.Next() {
		var o Occurrence
		var last sql.NullInt64
		if err := rows.Scan(&o.Project, &o.Rule, &o.Record, &o.Event, &o.Instance, &o.OncePer, &o.Count, &last, &o.Next); err != nil {
			return nil, err
		}
		o.Last = goTime(last)
		o.Next++
		out = append(out, o)
	}
	return out, rows.Err()
}

// Outstanding counts the work still in flight: messages being sent, SMS
// whose delivery status is still being polled, statuses not yet queued for
// REDCap and write-backs not yet imported. Zero means everything has settled.
func (s *Store) Outstanding(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, sqlOutstanding).Scan(&n)
	return n, err
}

// WrittenBack counts the messages of a run whose latest status has been
// written back to REDCap (none while any write-back is still pending).
func (s *Store) WrittenBack(ctx context.Context, runID int64) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, sqlWrittenBack, runID).Scan(&n)
	return n, err
}

const sqlByRule = `SELECT ` + messageColumns + ` FROM messages WHERE rule = ? ORDER BY id`

// ByRule returns every message of one rule, oldest first.
func (s *Store) ByRule(ctx context.Context, rule string) ([]Message, error) {
	return s.queryMessages(ctx, sqlByRule, rule)
}
