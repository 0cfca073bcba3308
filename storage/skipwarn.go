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

// migrationSkipLog keeps, for the audit trail, each participant skip the
// first time a pass saw it (and again when it comes back after being
// forgotten): who, which rule, and why. It is written only for new skips,
// so a lasting skip costs one row, not one a pass.
const migrationSkipLog = `
CREATE TABLE skip_log (
	id       INTEGER PRIMARY KEY,
	at       INTEGER NOT NULL,
	project  TEXT    NOT NULL,
	rule     TEXT    NOT NULL,
	record   TEXT    NOT NULL,
	event    TEXT    NOT NULL,
	instance INTEGER NOT NULL,
	reason   TEXT    NOT NULL
);
CREATE INDEX skip_log_at ON skip_log (at);`

// Skip is one participant a pass skipped: the rule, the row and the
// reason (which names fields, never their values, and masks numbers).
// Digest names it (rule, row and reason) among the skips warned about.
type Skip struct {
	Digest                       string
	Project, Rule, Record, Event string
	Instance                     int
	Reason                       string
}

const (
	sqlInsertSkipLog     = `INSERT INTO skip_log (at, project, rule, record, event, instance, reason) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlInsertSkipWarning = `INSERT OR IGNORE INTO skip_warnings (digest, warned_at, seen_at) VALUES (?, ?, ?)`
	sqlSeeSkipWarning    = `UPDATE skip_warnings SET seen_at = ? WHERE digest = ?`
	sqlPruneSkipWarnings = `DELETE FROM skip_warnings WHERE seen_at < ?`
)

// SkipWarningMemory is how long a skip no pass has seen is remembered: one
// that comes back later is warned about again.
const SkipWarningMemory = 24 * time.Hour

// FirstSkips records that these skips were seen at now and returns the
// digests of those not seen within SkipWarningMemory before: the ones to
// warn about, which are also added to the audit trail's skip log. Skips
// not seen for SkipWarningMemory are forgotten.
func (s *Store) FirstSkips(ctx context.Context, skips []Skip, now time.Time) (map[string]bool, error) {
	fresh := make(map[string]bool)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, sqlPruneSkipWarnings, dbTime(now.Add(-SkipWarningMemory))); err != nil {
			return err
		}
		for _, sk := range skips {
			d := sk.Digest
			res, err := tx.ExecContext(ctx, sqlInsertSkipWarning, d, dbTime(now), dbTime(now))
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				fresh[d] = true
				if _, err := tx.ExecContext(ctx, sqlInsertSkipLog, dbTime(now), sk.Project, sk.Rule, sk.Record, sk.Event, sk.Instance, sk.Reason); err != nil {
					return err
				}
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
