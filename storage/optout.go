package storage

import (
	"context"
	"fmt"
	"time"
)

const (
	// sqlSetOptOut records the latest opt-out or opt-in of a number; an
	// older event (by its time) never overrides a newer one.
	sqlSetOptOut = `
INSERT INTO optouts (phone, opted_out, source, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (phone) DO UPDATE SET opted_out = excluded.opted_out, source = excluded.source,
	updated_at = excluded.updated_at
WHERE excluded.updated_at >= optouts.updated_at`

	sqlIsOptedOut = `SELECT count(*) FROM optouts WHERE phone = ? AND opted_out = 1`
	sqlOptedOut   = `SELECT phone FROM optouts WHERE opted_out = 1`
)

// OptOut records that phone (E.164, as nudge sends to it) asked not to be
// messaged, e.g. by replying STOP; source says how it was learnt. Every later
// plan honours it until OptIn.
func (s *Store) OptOut(ctx context.Context, phone, source string, at time.Time) error {
	return s.setOptOut(ctx, phone, true, source, at)
}

// OptIn records that phone opted back in (e.g. START). The row is kept, so
// the store remembers the number's latest choice and its source. Of two
// events for one number, the one with the later time wins, whatever the
// order of the calls.
func (s *Store) OptIn(ctx context.Context, phone, source string, at time.Time) error {
	return s.setOptOut(ctx, phone, false, source, at)
}

func (s *Store) setOptOut(ctx context.Context, phone string, out bool, source string, at time.Time) error {
	if phone == "" || at.IsZero() {
		return fmt.Errorf("%w: opt-out needs a phone number and a time", ErrInvalid)
	}
	flag := 0
	if out {
		flag = 1
	}
	if _, err := s.db.ExecContext(ctx, sqlSetOptOut, phone, flag, source, dbTime(at)); err != nil {
		return fmt.Errorf("storage: record opt-out change: %w", err)
	}
	return nil
}

// IsOptedOut reports whether phone is currently opted out.
func (s *Store) IsOptedOut(ctx context.Context, phone string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, sqlIsOptedOut, phone).Scan(&n)
	return n > 0, err
}

// OptedOut returns every number currently opted out, in one query, for the
// planner.
func (s *Store) OptedOut(ctx context.Context) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, sqlOptedOut)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]bool)
	for rows.Next() {
		var phone string
		if err := rows.Scan(&phone); err != nil {
			return nil, err
		}
		out[phone] = true
	}
	return out, rows.Err()
}
