package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// migrationNumberPauses adds the pauses a participant asked for by a reply
// (a reply rule's `pause: 24h`): no text goes to the number before until.
const migrationNumberPauses = `
CREATE TABLE number_pauses (
	phone      TEXT    PRIMARY KEY,
	until      INTEGER NOT NULL,
	source     TEXT    NOT NULL DEFAULT '',
	updated_at INTEGER NOT NULL
);`

const (
	// sqlPauseNumber records a pause; a pause already set that ends later
	// is kept, so a second reply never shortens the first one's.
	sqlPauseNumber = `
INSERT INTO number_pauses (phone, until, source, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (phone) DO UPDATE SET until = excluded.until, source = excluded.source, updated_at = excluded.updated_at
WHERE excluded.until > number_pauses.until`

	sqlNumberPausedUntil = `SELECT until FROM number_pauses WHERE phone = ? AND until > ?`
	sqlPausedNumbers     = `SELECT phone, until FROM number_pauses WHERE until > ?`
)

// PauseNumber pauses every text to phone (E.164) until the time until;
// source says why (e.g. "reply:pause-me"). A pause that already ends later
// is kept.
func (s *Store) PauseNumber(ctx context.Context, phone, source string, until, at time.Time) error {
	if phone == "" || until.IsZero() || at.IsZero() {
		return fmt.Errorf("%w: a number's pause needs a phone number, an end and a time", ErrInvalid)
	}
	if _, err := s.db.ExecContext(ctx, sqlPauseNumber, phone, dbTime(until), source, dbTime(at)); err != nil {
		return fmt.Errorf("storage: pause texts to a number: %w", err)
	}
	return nil
}

// NumberPausedUntil returns when the pause of texts to phone ends, or the
// zero time when the number is not paused at now.
func (s *Store) NumberPausedUntil(ctx context.Context, phone string, now time.Time) (time.Time, error) {
	var until sql.NullInt64
	err := s.db.QueryRowContext(ctx, sqlNumberPausedUntil, phone, dbTime(now)).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	return goTime(until), err
}

// PausedNumbers returns every number paused at now with the end of its
// pause, in one query, for the planner.
func (s *Store) PausedNumbers(ctx context.Context, now time.Time) (map[string]time.Time, error) {
	rows, err := s.db.QueryContext(ctx, sqlPausedNumbers, dbTime(now))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]time.Time)
	for rows.Next() {
		var (
			phone string
			until sql.NullInt64
		)
		if err := rows.Scan(&phone, &until); err != nil {
			return nil, err
		}
		out[phone] = goTime(until)
	}
	return out, rows.Err()
}
