package storage

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// KeyState is where the message stored under one key stands: for timed
// rules, whose occurrences each have one key for good.
type KeyState struct {
	ID        int64
	State     State
	NotBefore time.Time
	ExpiresAt time.Time
}

const (
	// sqlRetime moves a queued message to a new due time and expiry (its
	// rule's start date changed). It changes no state: a message already
	// claimed or sent is left alone, so nothing is ever sent twice.
	sqlRetime = `
UPDATE messages SET not_before = ?, expires_at = ?, reason = ?, updated_at = ?
WHERE id = ? AND state IN ('planned', 'retry')`

	// sqlRetimeByKey is sqlRetime for the message under a key, done only
	// when the times differ.
	sqlRetimeByKey = `
UPDATE messages SET not_before = ?, expires_at = ?, reason = ?, updated_at = ?
WHERE key = ? AND state IN ('planned', 'retry')
	AND (coalesce(not_before, 0) <> coalesce(?, 0) OR coalesce(expires_at, 0) <> coalesce(?, 0))`

	sqlKeysOfRule = `SELECT id, key, state, not_before, expires_at FROM messages WHERE project = ? AND rule = ?`
)

// retimeReason is the reason a re-timed message carries.
const retimeReason = "re-timed: its rule's start date changed"

// Retime moves a queued (planned or retry) message to a new due time and
// expiry. A message no longer queued is not changed: ErrWrongState.
func (s *Store) Retime(ctx context.Context, id int64, notBefore, expiresAt, at time.Time) error {
	return s.update(ctx, id, "re-time", sqlRetime, dbTime(notBefore), dbTime(expiresAt), retimeReason, dbTime(at), id)
}

// retimeExisting re-times the queued message already stored under m's key
// to m's NotBefore and ExpiresAt (see Message.Retime).
func retimeExisting(ctx context.Context, exec func(ctx context.Context, q string, args ...any) (sql.Result, error), m *Message) error {
	_, err := exec(ctx, sqlRetimeByKey, dbTime(m.NotBefore), dbTime(m.ExpiresAt), retimeReason, dbTime(m.CreatedAt),
		m.Key, dbTime(m.NotBefore), dbTime(m.ExpiresAt))
	if err != nil {
		return fmt.Errorf("storage: re-time %q: %w", m.Key, err)
	}
	return nil
}

// KeysOfRules returns the state of every message of the given rules
// (project → rule names), by key. The planner reads it once per pass for
// timed rules: an occurrence stored in any state is never planned again.
func (s *Store) KeysOfRules(ctx context.Context, rules map[string][]string) (map[string]KeyState, error) {
	out := map[string]KeyState{}
	for project, names := range rules {
		for _, rule := range names {
			if err := s.keysOfRule(ctx, project, rule, out); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func (s *Store) keysOfRule(ctx context.Context, project, rule string, out map[string]KeyState) error {
	rows, err := s.db.QueryContext(ctx, sqlKeysOfRule, project, rule)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k KeyState
		var key string
		var nb, ex sql.NullInt64
		if err := rows.Scan(&k.ID, &key, &k.State, &nb, &ex); err != nil {
			return err
		}
		k.NotBefore, k.ExpiresAt = goTime(nb), goTime(ex)
		out[key] = k
	}
	return rows.Err()
}

// IsReminderKey reports whether a message key is that of a timed rule's
// reminder (…/<occurrence>/r).
func IsReminderKey(key string) bool { return strings.HasSuffix(key, "/r") }
