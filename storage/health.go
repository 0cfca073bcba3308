package storage

import (
	"context"
	"fmt"
)

// Depths is how much work waits in each queue, for /healthz and metrics.
type Depths struct {
	Planned          int // messages waiting to be sent: planned or retry
	Sending          int // messages claimed for sending, provider answer not yet recorded
	Tracking         int // SMS sent whose final status is still being polled for
	WriteBacks       int // write-backs pending for REDCap
	FailedWriteBacks int // write-backs REDCap rejected for good
	Triggers         int // Data Entry Triggers not yet done (due or waiting to retry)
}

// StatusCount is how many messages of a channel have a status.
type StatusCount struct {
	Channel string
	Status  string // the provider's status, or the state name before there is one
	N       int
}

const (
	sqlDepths = `
SELECT
  (SELECT count(*) FROM messages WHERE state IN ('planned', 'retry')),
  (SELECT count(*) FROM messages WHERE state = 'sending'),
  (SELECT count(*) FROM messages WHERE state = 'sent' AND next_poll IS NOT NULL),
  (SELECT count(*) FROM writebacks WHERE state = 'pending'),
  (SELECT count(*) FROM writebacks WHERE state = 'failed'),
  (SELECT count(*) FROM triggers WHERE done_at IS NULL)`

	sqlStatusCounts = `
SELECT channel, CASE WHEN status = '' THEN state ELSE status END AS s, count(*) FROM messages
GROUP BY channel, s ORDER BY channel, s`

	sqlOptOutCount = `SELECT count(*) FROM optouts WHERE opted_out = 1`
)

// Depths counts the work waiting in each queue, in one read.
func (s *Store) Depths(ctx context.Context) (Depths, error) {
	var d Depths
	err := s.db.QueryRowContext(ctx, sqlDepths).Scan(&d.Planned, &d.Sending, &d.Tracking,
		&d.WriteBacks, &d.FailedWriteBacks, &d.Triggers)
	if err != nil {
		return Depths{}, fmt.Errorf("storage: count queues: %w", err)
	}
	return d, nil
}

// StatusCounts counts messages by channel and provider status, ordered by
// channel and status. A message without a provider status yet (planned,
// sending, skipped, …) is counted under its state name.
func (s *Store) StatusCounts(ctx context.Context) ([]StatusCount, error) {
	rows, err := s.db.QueryContext(ctx, sqlStatusCounts)
	if err != nil {
		return nil, fmt.Errorf("storage: count statuses: %w", err)
	}
	defer rows.Close()
	var out []StatusCount
	for rows.Next() {
		var c StatusCount
		if err := rows.Scan(&c.Channel, &c.Status, &c.N); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// OptOutCount returns how many numbers are currently opted out.
func (s *Store) OptOutCount(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, sqlOptOutCount).Scan(&n)
	return n, err
}

// Ping checks that the database answers a query, for /healthz.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.schemaVersion(ctx); err != nil {
		return fmt.Errorf("storage: database does not answer: %w", err)
	}
	return nil
}
