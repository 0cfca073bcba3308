package storage

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Participant says that a record of a project has a phone number, so that an
// inbound SMS can be matched to its records, across every project, without
// asking REDCap. The rows are refreshed from every export.
type Participant struct {
	Phone                  string // E.164
	Project, Record, Event string // Event: the event of the phone field ("" in a classic project)
	UpdatedAt              time.Time
}

const (
	sqlDeleteParticipants = `DELETE FROM participants WHERE project = ?`

	sqlInsertParticipant = `
INSERT INTO participants (phone, project, record, event, updated_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (phone, project, record, event) DO NOTHING`

	sqlParticipantsByPhone = `
SELECT phone, project, record, event, updated_at FROM participants WHERE phone = ?
ORDER BY project, record, event`
)

// ReplaceParticipants makes ps the whole list of project's participants, in
// one transaction: the project's earlier rows are deleted and ps inserted
// with UpdatedAt = at. Other projects' rows are left alone. Each item needs
// a Phone and a Record; its Project must be project or empty. Repeated
// items are stored once.
func (s *Store) ReplaceParticipants(ctx context.Context, project string, ps []Participant, at time.Time) error {
	if project == "" || at.IsZero() {
		return fmt.Errorf("%w: replacing participants needs a project and a time", ErrInvalid)
	}
	for i, p := range ps {
		if p.Phone == "" || p.Record == "" || (p.Project != "" && p.Project != project) {
			return fmt.Errorf("%w: participant %d of project %q: a phone number and a record of that project are required",
				ErrInvalid, i, project)
		}
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, sqlDeleteParticipants, project); err != nil {
			return fmt.Errorf("storage: clear participants of project %q: %w", project, err)
		}
		stmt, err := tx.PrepareContext(ctx, sqlInsertParticipant)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, p := range ps {
			if _, err := stmt.ExecContext(ctx, p.Phone, project, p.Record, p.Event, dbTime(at)); err != nil {
				return fmt.Errorf("storage: store participant %q of project %q: %w", p.Record, project, err)
			}
		}
		return nil
	})
}

// ParticipantsByPhone returns every record, in any project, that has the
// phone number (E.164), ordered by project, record and event; none is an
// empty list, not an error.
func (s *Store) ParticipantsByPhone(ctx context.Context, phone string) ([]Participant, error) {
	rows, err := s.db.QueryContext(ctx, sqlParticipantsByPhone, phone)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Participant
	for rows.Next() {
		var p Participant
		var at sql.NullInt64
		if err := rows.Scan(&p.Phone, &p.Project, &p.Record, &p.Event, &at); err != nil {
			return nil, err
		}
		p.UpdatedAt = goTime(at)
		out = append(out, p)
	}
	return out, rows.Err()
}
