package storage

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Scopes of the kill switch.
const (
	PauseAll     = "all"     // every message
	PauseProject = "project" // the messages of one project
	PauseRule    = "rule"    // the messages of one rule
)

// Pause is one setting of the kill switch (`nudge pause`): while it is set,
// no process sends the messages in its scope; they stay queued.
type Pause struct {
	Scope, Name string // Name is the project or rule; "" for PauseAll
	Reason      string
	At          time.Time
}

// SenderPause says why a sending number (or the whole account, Sender "*")
// does not send: an account or sender problem that no single message
// caused. Its messages stay queued; at RetryAt one message is tried to see
// whether the cause is gone.
type SenderPause struct {
	Sender  string
	Reason  string
	Code    int
	At      time.Time
	RetryAt time.Time
}

// AccountSender is the Sender of a pause that holds every sending number.
const AccountSender = "*"

// BadNumber is a phone number Twilio said cannot get texts.
type BadNumber struct {
	Phone  string
	Code   int
	Reason string
	At     time.Time
}

// LastSend is when a sending number last handed Twilio a message, and its
// segments: the pacer resumes from it after a restart or a lease handover.
type LastSend struct {
	At       time.Time
	Segments int
}

const (
	sqlPause = `
INSERT INTO pauses (scope, name, reason, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (scope, name) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at`
	sqlResume      = `DELETE FROM pauses WHERE scope = ? AND name = ?`
	sqlResumeAll   = `DELETE FROM pauses`
	sqlListPauses  = `SELECT scope, name, reason, created_at FROM pauses ORDER BY scope, name`
	sqlPauseSender = `
INSERT INTO senders (sender, reason, code, paused_at, retry_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (sender) DO UPDATE SET reason = excluded.reason, code = excluded.code, retry_at = excluded.retry_at`
	sqlResumeSender     = `DELETE FROM senders WHERE sender = ?`
	sqlResumeAllSenders = `DELETE FROM senders`
	sqlListSenders      = `SELECT sender, reason, code, paused_at, retry_at FROM senders ORDER BY sender`
	sqlFlagBadNumber    = `
INSERT INTO bad_numbers (phone, code, reason, flagged_at) VALUES (?, ?, ?, ?)
ON CONFLICT (phone) DO UPDATE SET code = excluded.code, reason = excluded.reason, flagged_at = excluded.flagged_at`
	sqlBadNumbers = `SELECT phone, code, reason, flagged_at FROM bad_numbers`
	sqlLastSends  = `
SELECT from_addr, max(at), segments FROM (
	SELECT from_addr, sent_at AS at, segments FROM messages WHERE channel = 'sms' AND sent_at IS NOT NULL
	UNION ALL
	SELECT from_addr, updated_at, segments FROM messages WHERE channel = 'sms' AND state = 'sending'
) GROUP BY from_addr`
)

// SetPause sets the kill switch for a scope (PauseAll with name "",
// PauseProject or PauseRule with the project's or rule's name).
func (s *Store) SetPause(ctx context.Context, p Pause) error {
	switch {
	case p.Scope == PauseAll && p.Name == "":
	case (p.Scope == PauseProject || p.Scope == PauseRule) && p.Name != "":
	default:
		return fmt.Errorf("%w: pause scope %q name %q", ErrInvalid, p.Scope, p.Name)
	}
	_, err := s.db.ExecContext(ctx, sqlPause, p.Scope, p.Name, p.Reason, dbTime(p.At))
	return err
}

// Resume clears the kill switch for one scope, or every setting of it and
// every paused sender when scope is "". It reports whether anything was
// cleared.
func (s *Store) Resume(ctx context.Context, scope, name string) (bool, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var res sql.Result
		var err error
		if scope == "" {
			if res, err = tx.ExecContext(ctx, sqlResumeAll); err != nil {
				return err
			}
			k, _ := res.RowsAffected()
			n += k
			res, err = tx.ExecContext(ctx, sqlResumeAllSenders)
		} else {
			res, err = tx.ExecContext(ctx, sqlResume, scope, name)
		}
		if err != nil {
			return err
		}
		k, _ := res.RowsAffected()
		n += k
		return nil
	})
	return n > 0, err
}

// Pauses lists the kill switch's settings.
func (s *Store) Pauses(ctx context.Context) ([]Pause, error) {
	rows, err := s.db.QueryContext(ctx, sqlListPauses)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Pause
	for rows.Next() {
		var p Pause
		var at sql.NullInt64
		if err := rows.Scan(&p.Scope, &p.Name, &p.Reason, &at); err != nil {
			return nil, err
		}
		p.At = goTime(at)
		out = append(out, p)
	}
	return out, rows.Err()
}

// PauseSender pauses a sending number (or the account, AccountSender) with
// the reason; a sender already paused keeps its first pause time.
func (s *Store) PauseSender(ctx context.Context, p SenderPause) error {
	if p.Sender == "" || p.Reason == "" {
		return fmt.Errorf("%w: a sender pause needs a sender and a reason", ErrInvalid)
	}
	_, err := s.db.ExecContext(ctx, sqlPauseSender, p.Sender, p.Reason, p.Code, dbTime(p.At), dbTime(p.RetryAt))
	return err
}

// ResumeSender lifts a sender's pause.
func (s *Store) ResumeSender(ctx context.Context, sender string) error {
	_, err := s.db.ExecContext(ctx, sqlResumeSender, sender)
	return err
}

// PausedSenders lists the paused senders.
func (s *Store) PausedSenders(ctx context.Context) ([]SenderPause, error) {
	rows, err := s.db.QueryContext(ctx, sqlListSenders)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []SenderPause
	for rows.Next() {
		var p SenderPause
		var at, retry sql.NullInt64
		if err := rows.Scan(&p.Sender, &p.Reason, &p.Code, &at, &retry); err != nil {
			return nil, err
		}
		p.At, p.RetryAt = goTime(at), goTime(retry)
		out = append(out, p)
	}
	return out, rows.Err()
}

// FlagBadNumber records that Twilio called a phone number unable to get
// texts; plans skip it until the participant's number changes.
func (s *Store) FlagBadNumber(ctx context.Context, b BadNumber) error {
	_, err := s.db.ExecContext(ctx, sqlFlagBadNumber, b.Phone, b.Code, b.Reason, dbTime(b.At))
	return err
}

// BadNumbers returns the flagged numbers by phone number.
func (s *Store) BadNumbers(ctx context.Context) (map[string]BadNumber, error) {
	rows, err := s.db.QueryContext(ctx, sqlBadNumbers)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]BadNumber)
	for rows.Next() {
		var b BadNumber
		var at sql.NullInt64
		if err := rows.Scan(&b.Phone, &b.Code, &b.Reason, &at); err != nil {
			return nil, err
		}
		b.At = goTime(at)
		out[b.Phone] = b
	}
	return out, rows.Err()
}

// LastSends returns, per sending number, its latest send: a message Twilio
// took, or one claimed and perhaps handed over when a process stopped.
func (s *Store) LastSends(ctx context.Context) (map[string]LastSend, error) {
	rows, err := s.db.QueryContext(ctx, sqlLastSends)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]LastSend)
	for rows.Next() {
		var from string
		var at sql.NullInt64
		var l LastSend
		if err := rows.Scan(&from, &at, &l.Segments); err != nil {
			return nil, err
		}
		l.At = goTime(at)
		out[from] = l
	}
	return out, rows.Err()
}
