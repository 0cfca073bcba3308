package storage

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migrationSkipWarnings remembers which skipped participants were already
// warned about (by a digest of rule, record and reason), so that a pass
// run from cron warns about a skip once, not on every pass.
const migrationSkipWarnings = `
CREATE TABLE skip_warnings (
	digest    TEXT    PRIMARY KEY,
	warned_at INTEGER NOT NULL,
	seen_at   INTEGER NOT NULL
);`

const (
	sqlInsertSkipWarning = `INSERT OR IGNORE INTO skip_warnings (digest, warned_at, seen_at) VALUES (?, ?, ?)`
	sqlSeeSkipWarning    = `UPDATE skip_warnings SET seen_at = ? WHERE digest = ?`
	sqlPruneSkipWarnings = `DELETE FROM skip_warnings WHERE seen_at < ?`
)

// SkipWarningMemory is how long a skip no pass has seen is remembered: one
// that comes back later is warned about again.
const SkipWarningMemory = 24 * time.Hour

// FirstSkips records that the skips with these digests were seen at now
// and returns those not seen within SkipWarningMemory before: the ones to
// warn about. Skips not seen for SkipWarningMemory are forgotten.
func (s *Store) FirstSkips(ctx context.Context, digests []string, now time.Time) (map[string]bool, error) {
	fresh := make(map[string]bool)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, sqlPruneSkipWarnings, dbTime(now.Add(-SkipWarningMemory))); err != nil {
			return err
		}
		for _, d := range digests {
			res, err := tx.ExecContext(ctx, sqlInsertSkipWarning, d, dbTime(now), dbTime(now))
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				fresh[d] = true
				continue
			}
			if _, err := tx.ExecContext(ctx, sqlSeeSkipWarning, dbTime(now), d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: skip warnings: %w", err)
	}
	return fresh, nil
}
