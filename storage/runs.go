package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Run is one pass of nudge (a `nudge run`, a scheduled job, a trigger).
type Run struct {
	ID                    int64
	Kind                  string
	StartedAt, FinishedAt time.Time // FinishedAt zero: still running, or crashed
	Outcome               string
	Summary               json.RawMessage // as given to FinishRun; nil if none
}

// Count is the number of messages of one rule and channel in each state.
type Count struct {
	Project, Rule, Channel string
	States                 map[State]int
	Total                  int
}

const (
	sqlStartRun  = `INSERT INTO runs (kind, started_at) VALUES (?, ?)`
	sqlFinishRun = `
UPDATE runs SET finished_at = ?, outcome = ?, summary = ? WHERE id = ? AND finished_at IS NULL`
	sqlRunExists = `SELECT count(*) FROM runs WHERE id = ?`
	sqlLastRun   = `
SELECT id, kind, started_at, finished_at, outcome, summary FROM runs ORDER BY started_at DESC, id DESC LIMIT 1`

	sqlCounts = `
SELECT project, rule, channel, state, count(*) FROM messages
WHERE ? = 0 OR run_id = ?
GROUP BY project, rule, channel, state
ORDER BY project, rule, channel, state`
)

// StartRun records the start of a run and returns its ID.
func (s *Store) StartRun(ctx context.Context, kind string, at time.Time) (int64, error) {
	if kind == "" || at.IsZero() {
		return 0, fmt.Errorf("%w: a run needs a kind and a start time", ErrInvalid)
	}
	res, err := s.db.ExecContext(ctx, sqlStartRun, kind, dbTime(at))
	if err != nil {
		return 0, fmt.Errorf("storage: start run: %w", err)
	}
	return res.LastInsertId()
}

// FinishRun records the end of a run, its outcome and a summary (stored as
// JSON; nil for none). A run is finished once: a second call is
// ErrWrongState.
func (s *Store) FinishRun(ctx context.Context, id int64, at time.Time, outcome string, summary any) error {
	var js any
	if summary != nil {
		b, err := json.Marshal(summary)
		if err != nil {
			return fmt.Errorf("storage: run %d summary: %w", id, err)
		}
		js = string(b)
	}
	res, err := s.db.ExecContext(ctx, sqlFinishRun, dbTime(at), outcome, js, id)
	if err != nil {
		return fmt.Errorf("storage: finish run %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var n int
	if err := s.db.QueryRowContext(ctx, sqlRunExists, id).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: run %d", ErrNotFound, id)
	}
	return fmt.Errorf("%w: run %d is already finished", ErrWrongState, id)
}

// LastRun returns the most recently started run, or ErrNotFound.
func (s *Store) LastRun(ctx context.Context) (Run, error) {
	var (
		r                 Run
		started, finished sql.NullInt64
		summary           sql.NullString
	)
	err := s.db.QueryRowContext(ctx, sqlLastRun).Scan(&r.ID, &r.Kind, &started, &finished, &r.Outcome, &summary)
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, fmt.Errorf("%w: no run yet", ErrNotFound)
	}
	if err != nil {
		return Run{}, err
	}
	r.StartedAt, r.FinishedAt = goTime(started), goTime(finished)
	if summary.Valid {
		r.Summary = json.RawMessage(summary.String)
	}
	return r, nil
}

// Counts returns, per project, rule and channel, how many messages are in
// each state: of one run (the run that planned them), or of all runs when
// runID is 0. Rows are ordered by project, rule and channel.
func (s *Store) Counts(ctx context.Context, runID int64) ([]Count, error) {
	rows, err := s.db.QueryContext(ctx, sqlCounts, runID, runID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Count
	for rows.Next() {
		var (
			project, rule, channel string
			state                  State
			n                      int
		)
		if err := rows.Scan(&project, &rule, &channel, &state, &n); err != nil {
			return nil, err
		}
		if k := len(out) - 1; k < 0 || out[k].Project != project || out[k].Rule != rule || out[k].Channel != channel {
			out = append(out, Count{Project: project, Rule: rule, Channel: channel, States: make(map[State]int)})
		}
		c := &out[len(out)-1]
		c.States[state] = n
		c.Total += n
	}
	return out, rows.Err()
}
