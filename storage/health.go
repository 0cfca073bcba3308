package storage

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"
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

	// sqlStatusCounts reads the counts the triggers of migrationMonitor
	// keep, and counts the messages newer than its mark through the
	// primary key, instead of counting every message.
	sqlStatusCounts = `
SELECT channel, status, n FROM message_counts WHERE n > 0
UNION ALL
SELECT channel, CASE WHEN status = '' THEN state ELSE status END, count(*) FROM messages
WHERE id > (SELECT last FROM message_counts_mark WHERE id = 1)
GROUP BY 1, 2`

	// sqlUncounted is how many messages are newer than the counts' mark.
	sqlUncounted = `
SELECT count(*) FROM messages WHERE id > (SELECT last FROM message_counts_mark WHERE id = 1)`

	// sqlFoldCounts adds the messages newer than the mark to the counts,
	// and sqlMoveMark moves the mark past them; run together in one write
	// transaction.
	sqlFoldCounts = `
INSERT INTO message_counts (channel, status, n)
SELECT channel, CASE WHEN status = '' THEN state ELSE status END, count(*) FROM messages
WHERE id > (SELECT last FROM message_counts_mark WHERE id = 1)
GROUP BY 1, 2
ON CONFLICT (channel, status) DO UPDATE SET n = n + excluded.n`
	sqlMoveMark = `
UPDATE message_counts_mark SET last = (SELECT coalesce(max(id), last) FROM messages) WHERE id = 1`

	// sqlWatch reads the figures of Watch; each sub-query is answered from
	// an index (see migrationMonitor).
	sqlWatch = `
SELECT
  (SELECT count(*) FROM messages WHERE state = 'retry'),
  (SELECT coalesce(not_before, created_at) FROM messages INDEXED BY messages_waiting
   WHERE state IN ('planned', 'retry') AND coalesce(not_before, created_at) <= ?
   ORDER BY coalesce(not_before, created_at) LIMIT 1),
  (SELECT count(*) FROM writebacks WHERE state = 'pending' AND attempts >= ?),
  (SELECT max(finished_at) FROM runs WHERE outcome = 'ok')`

	sqlLeases = `SELECT name, owner FROM locks WHERE expires_at > ? ORDER BY name`

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

// countsFoldAt is how many messages newer than the counts' mark
// StatusCounts lets wait before it folds them into the counts.
const countsFoldAt = 1000

// StatusCounts counts messages by channel and provider status, ordered by
// channel and status. A message without a provider status yet (planned,
// sending, skipped, …) is counted under its state name. It reads the
// counts table and the messages added since it was brought up to date,
// and brings it up to date when these are many.
func (s *Store) StatusCounts(ctx context.Context) ([]StatusCount, error) {
	rows, err := s.db.QueryContext(ctx, sqlStatusCounts)
	if err != nil {
		return nil, fmt.Errorf("storage: count statuses: %w", err)
	}
	defer rows.Close()
	type key struct{ channel, status string }
	sums := make(map[key]int)
	for rows.Next() {
		var c StatusCount
		if err := rows.Scan(&c.Channel, &c.Status, &c.N); err != nil {
			return nil, err
		}
		sums[key{c.Channel, c.Status}] += c.N
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []StatusCount
	for k, n := range sums {
		if n > 0 {
			out = append(out, StatusCount{Channel: k.channel, Status: k.status, N: n})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Channel != out[j].Channel {
			return out[i].Channel < out[j].Channel
		}
		return out[i].Status < out[j].Status
	})
	var uncounted int
	if err := s.db.QueryRowContext(ctx, sqlUncounted).Scan(&uncounted); err == nil && uncounted >= countsFoldAt {
		_ = s.FoldCounts(ctx) // a busy database is folded at a later read
	}
	return out, nil
}

// FoldCounts adds the messages newer than the counts' mark to the counts
// table and moves the mark past them.
func (s *Store) FoldCounts(ctx context.Context) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, sqlFoldCounts); err != nil {
			return fmt.Errorf("storage: fold message counts: %w", err)
		}
		_, err := tx.ExecContext(ctx, sqlMoveMark)
		return err
	})
}

// OptOutCount returns how many numbers are currently opted out.
func (s *Store) OptOutCount(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, sqlOptOutCount).Scan(&n)
	return n, err
}

// WriteBackRetryAttempts is how many imports of a value must have failed
// before a pending write-back counts as retrying in Watch: one failed
// import is usually a short outage that the next run rides out.
const WriteBackRetryAttempts = 3

// Watch is what /healthz and /metrics read besides Depths, all of it from
// indexes, so reading it costs the same at any size of database.
type Watch struct {
	// Retrying is how many messages wait to be tried again after a
	// temporary failure.
	Retrying int
	// OldestDue is when the message that has been due the longest became
	// due (its hold ended, or it was planned); zero when none is due.
	OldestDue time.Time
	// WriteBacksRetrying is how many pending write-backs REDCap has
	// refused or failed at least WriteBackRetryAttempts times.
	WriteBacksRetrying int
	// LastOK is when the last successful pass finished; zero when none has.
	LastOK time.Time
}

// Lease is a lease in force: its name and the owner holding it.
type Lease struct {
	Name, Owner string
}

// Watch reads the figures of Watch at now.
func (s *Store) Watch(ctx context.Context, now time.Time) (Watch, error) {
	var (
		w           Watch
		due, lastOK sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, sqlWatch, now.UnixNano(), WriteBackRetryAttempts).
		Scan(&w.Retrying, &due, &w.WriteBacksRetrying, &lastOK)
	if err != nil {
		return Watch{}, fmt.Errorf("storage: read the health figures: %w", err)
	}
	w.OldestDue, w.LastOK = goTime(due), goTime(lastOK)
	return w, nil
}

// Leases returns the leases in force at now, by name.
func (s *Store) Leases(ctx context.Context, now time.Time) ([]Lease, error) {
	rows, err := s.db.QueryContext(ctx, sqlLeases, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("storage: read the leases: %w", err)
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		if err := rows.Scan(&l.Name, &l.Owner); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// OwnerHost is the "host:pid" part of an owner made by NewOwner, for
// showing who holds a lease without its random part; other owners are
// returned as they are.
func OwnerHost(owner string) string {
	parts := strings.SplitN(owner, ":", 3)
	if len(parts) < 3 {
		return owner
	}
	return parts[0] + ":" + parts[1]
}

// Ping checks that the database answers a query, for /healthz.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.schemaVersion(ctx); err != nil {
		return fmt.Errorf("storage: database does not answer: %w", err)
	}
	return nil
}
