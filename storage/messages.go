package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// State is a message's place in the outbox:
//
//	planned → sending → sent(SID) → delivered | undelivered | failed
//
// A planned or retry row is claimed (→ sending) in a committed statement
// before the provider is called. retry puts a row back in the queue at
// NotBefore; failed is also used for a permanent refusal before any provider
// took the message; skipped rows are never sent (Reason says why).
type State string

// The message states.
const (
	StatePlanned     State = "planned"
	StateSending     State = "sending"
	StateSent        State = "sent"
	StateDelivered   State = "delivered"
	StateUndelivered State = "undelivered"
	StateFailed      State = "failed"
	StateSkipped     State = "skipped"
	StateRetry       State = "retry"
)

// Final reports whether the state is terminal: no send and no status change
// will follow.
func (s State) Final() bool {
	switch s {
	case StateDelivered, StateUndelivered, StateFailed, StateSkipped:
		return true
	}
	return false
}

// Channels a message can go out on.
const (
	ChannelSMS   = "sms"
	ChannelEmail = "email"
)

// Message is one send of one rule to one participant: a row of the outbox.
type Message struct {
	ID int64
	// Key is the idempotency key project/rule/record/event/instance/occurrence;
	// it is UNIQUE, so enqueueing the same message twice stores it once.
	Key   string
	RunID int64 // the run that planned it; 0 = none

	Project, Rule, Record, Event, Instrument string
	Instance, Occurrence                     int

	Channel                 string // ChannelSMS or ChannelEmail
	To, From, Subject, Body string
	HTML                    string // email only: the HTML part, "" = text only
	// Zone is the IANA time zone of the rule's allowed hours for this
	// participant ("" = the rule has none); dispatch checks the hours again.
	Zone string

	State State
	// Status is the provider's latest status: Twilio's, or "accepted" /
	// "failed" for email.
	Status    string
	SID       string
	ErrorCode int
	Reason    string // why it was skipped, retried or failed
	Segments  int
	Attempts  int // how many times it was claimed for sending

	NotBefore time.Time // earliest send time (quiet hours, retry); zero = now
	NextPoll  time.Time // next status poll; zero = not polled

	CreatedAt, SentAt, FinalAt, UpdatedAt time.Time

	// ReportedStatus is the status last queued for write-back to REDCap.
	ReportedStatus string
}

const messageColumns = `id, key, run_id, project, rule, record, event, instrument, instance, occurrence,
	channel, to_addr, from_addr, subject, body, html, zone, state, status, sid, error_code, reason, segments,
	attempts, not_before, next_poll, created_at, sent_at, final_at, updated_at, reported_status`

const (
	sqlInsertMessage = `
INSERT INTO messages (key, run_id, project, rule, record, event, instrument, instance, occurrence,
	channel, to_addr, from_addr, subject, body, html, zone, state, reason, not_before, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO NOTHING`

	sqlOccurrences = `
SELECT count(*), max(created_at) FROM messages
WHERE project = ? AND rule = ? AND record = ? AND event = ? AND instance = ?`

	sqlDue = `
SELECT ` + messageColumns + ` FROM messages
WHERE state IN ('planned', 'retry') AND channel = ? AND (not_before IS NULL OR not_before <= ?)
ORDER BY created_at, id LIMIT ?`

	sqlClaim = `
UPDATE messages SET state = 'sending', attempts = attempts + 1, updated_at = ?
WHERE id = ? AND state IN ('planned', 'retry') AND (not_before IS NULL OR not_before <= ?)`

	sqlStateChannel = `SELECT state, channel FROM messages WHERE id = ?`

	sqlMarkSent = `
UPDATE messages SET state = ?, status = ?, sid = ?, segments = ?, sent_at = ?, final_at = ?,
	next_poll = ?, updated_at = ?
WHERE id = ?`

	sqlMarkRetry = `
UPDATE messages SET state = 'retry', reason = ?, not_before = ?, updated_at = ?
WHERE id = ? AND state IN ('planned', 'sending', 'retry')`

	sqlMarkFailed = `
UPDATE messages SET state = 'failed', status = 'failed', error_code = ?, reason = ?, final_at = ?,
	next_poll = NULL, updated_at = ?
WHERE id = ? AND state IN ('planned', 'sending', 'retry')`

	sqlMarkSkipped = `
UPDATE messages SET state = 'skipped', reason = ?, updated_at = ?
WHERE id = ? AND state IN ('planned', 'sending', 'retry')`

	sqlSending = `
SELECT ` + messageColumns + ` FROM messages WHERE state = 'sending' ORDER BY updated_at, id`

	sqlTracking = `
SELECT ` + messageColumns + ` FROM messages
WHERE state = 'sent' AND channel = ? AND next_poll IS NOT NULL AND next_poll <= ?
ORDER BY next_poll, id LIMIT ?`

	sqlGetMessage      = `SELECT ` + messageColumns + ` FROM messages WHERE id = ?`
	sqlGetMessageBySID = `SELECT ` + messageColumns + ` FROM messages WHERE sid = ?`
	sqlGetMessageByKey = `SELECT ` + messageColumns + ` FROM messages WHERE key = ?`
	sqlMessageState    = `SELECT state FROM messages WHERE id = ?`
)

type scanner interface{ Scan(dest ...any) error }

func scanMessage(r scanner) (Message, error) {
	var (
		m                                  Message
		runID                              sql.NullInt64
		sid                                sql.NullString
		notBefore, nextPoll, created, sent sql.NullInt64
		final, updated                     sql.NullInt64
	)
	err := r.Scan(&m.ID, &m.Key, &runID, &m.Project, &m.Rule, &m.Record, &m.Event, &m.Instrument,
		&m.Instance, &m.Occurrence, &m.Channel, &m.To, &m.From, &m.Subject, &m.Body, &m.HTML, &m.Zone, &m.State,
		&m.Status, &sid, &m.ErrorCode, &m.Reason, &m.Segments, &m.Attempts, &notBefore, &nextPoll,
		&created, &sent, &final, &updated, &m.ReportedStatus)
	if err != nil {
		return Message{}, err
	}
	m.RunID = runID.Int64
	m.SID = sid.String
	m.NotBefore, m.NextPoll = goTime(notBefore), goTime(nextPoll)
	m.CreatedAt, m.SentAt = goTime(created), goTime(sent)
	m.FinalAt, m.UpdatedAt = goTime(final), goTime(updated)
	return m, nil
}

func (s *Store) queryMessages(ctx context.Context, q string, args ...any) ([]Message, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func (s *Store) getMessage(ctx context.Context, q string, arg any) (Message, error) {
	m, err := scanMessage(s.db.QueryRowContext(ctx, q, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, fmt.Errorf("%w: message %v", ErrNotFound, arg)
	}
	return m, err
}

// checkNew validates a message about to be enqueued and fills its defaults.
func checkNew(m *Message) error {
	bad := func(what string) error {
		return fmt.Errorf("%w: message %q: %s", ErrInvalid, m.Key, what)
	}
	switch {
	case m.Key == "":
		return fmt.Errorf("%w: message has no idempotency key", ErrInvalid)
	case m.Project == "" || m.Rule == "" || m.Record == "":
		return bad("project, rule and record are required")
	case m.Channel != ChannelSMS && m.Channel != ChannelEmail:
		return bad(fmt.Sprintf("channel %q: want sms or email", m.Channel))
	case m.To == "" && m.State != StateSkipped:
		return bad("no recipient (To)")
	case m.CreatedAt.IsZero():
		return bad("CreatedAt is not set")
	}
	switch m.State {
	case "", StatePlanned:
		m.State = StatePlanned
	case StateSkipped:
		if m.Reason == "" {
			return bad("a skipped message needs a Reason")
		}
	default:
		return bad(fmt.Sprintf("state %q: new messages are planned or skipped", m.State))
	}
	return nil
}

// execFunc runs sqlInsertMessage with the given arguments.
type execFunc func(ctx context.Context, args ...any) (sql.Result, error)

// insertMessage inserts m with exec; m must have passed checkNew.
func insertMessage(ctx context.Context, exec execFunc, m *Message) (bool, error) {
	res, err := exec(ctx, m.Key, nullID(m.RunID), m.Project, m.Rule, m.Record, m.Event,
		m.Instrument, m.Instance, m.Occurrence, m.Channel, m.To, m.From, m.Subject, m.Body, m.HTML, m.Zone, m.State,
		m.Reason, dbTime(m.NotBefore), dbTime(m.CreatedAt), dbTime(m.CreatedAt))
	if err != nil {
		return false, fmt.Errorf("storage: enqueue %q: %w", m.Key, err)
	}
	n, err := res.RowsAffected()
	if err != nil || n == 0 {
		return false, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return false, err
	}
	m.ID = id
	m.UpdatedAt = m.CreatedAt
	return true, nil
}

// Enqueue stores a new message unless one with the same Key exists, in which
// case it returns false and changes nothing (m.ID is then left as it was).
// On insert it sets m.ID. m.State must be empty or planned, or skipped with
// a Reason: skipped messages are stored too, so that preview and reports can
// say why someone got nothing, and so that they hold their key: a skipped
// occurrence is never planned again (the repeat schedule moves on to the
// next occurrence, see Occurrences). m.CreatedAt must be set.
func (s *Store) Enqueue(ctx context.Context, m *Message) (inserted bool, err error) {
	if err := checkNew(m); err != nil {
		return false, err
	}
	exec := func(ctx context.Context, args ...any) (sql.Result, error) {
		return s.db.ExecContext(ctx, sqlInsertMessage, args...)
	}
	return insertMessage(ctx, exec, m)
}

// EnqueueBatch is Enqueue for many messages in one transaction: either all
// new messages are stored or none is. It returns how many were new.
func (s *Store) EnqueueBatch(ctx context.Context, ms []*Message) (inserted int, err error) {
	for _, m := range ms {
		if err := checkNew(m); err != nil {
			return 0, err
		}
	}
	ids := make([]int64, len(ms))
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, sqlInsertMessage)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i, m := range ms {
			// Work on a copy so a rolled-back batch leaves the caller's IDs alone.
			c := *m
			ok, err := insertMessage(ctx, stmt.ExecContext, &c)
			if err != nil {
				return err
			}
			if ok {
				ids[i] = c.ID
				inserted++
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for i, m := range ms {
		if ids[i] != 0 {
			m.ID, m.UpdatedAt = ids[i], m.CreatedAt
		}
	}
	return inserted, nil
}

// Occurrences reports how many messages exist for one participant and rule
// (the record, event and repeat instance) and when the last was created. It
// counts every row, skipped ones included: a skipped occurrence holds its key
// and so uses up its place in the repeat schedule (the next one is n+1, due
// `every` after last, and `max` bounds sends and skips together). Counting
// only sent rows would make occurrence n+1 collide with the skipped row's key
// forever.
func (s *Store) Occurrences(ctx context.Context, project, rule, record, event string, instance int) (n int, last time.Time, err error) {
	var max sql.NullInt64
	err = s.db.QueryRowContext(ctx, sqlOccurrences, project, rule, record, event, instance).Scan(&n, &max)
	if err != nil {
		return 0, time.Time{}, err
	}
	return n, goTime(max), nil
}

// Due returns up to limit (≤ 0: all) planned or retry messages of a channel
// whose NotBefore has come, oldest first.
func (s *Store) Due(ctx context.Context, channel string, now time.Time, limit int) ([]Message, error) {
	return s.queryMessages(ctx, sqlDue, channel, now.UnixNano(), limitArg(limit))
}

// Claim moves a due planned or retry message to sending and counts the
// attempt, in one committed statement. Exactly one caller, across goroutines
// and processes, wins; the others get ErrNotClaimable. Call it before
// handing the message to the provider; a message left in sending after a
// crash must be resolved by asking the provider, never resent blind.
func (s *Store) Claim(ctx context.Context, id int64, now time.Time) error {
	res, err := s.db.ExecContext(ctx, sqlClaim, now.UnixNano(), id, now.UnixNano())
	if err != nil {
		return fmt.Errorf("storage: claim message %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	state, err := s.state(ctx, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w (message %d is %s)", ErrNotClaimable, id, state)
}

// state returns a message's current state, or ErrNotFound.
func (s *Store) state(ctx context.Context, id int64) (State, error) {
	var st State
	err := s.db.QueryRowContext(ctx, sqlMessageState, id).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%w: message %d", ErrNotFound, id)
	}
	return st, err
}

// update runs a state-guarded UPDATE and explains a miss: ErrNotFound or
// ErrWrongState with the row's current state.
func (s *Store) update(ctx context.Context, id int64, what string, q string, args ...any) error {
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("storage: %s message %d: %w", what, id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	state, err := s.state(ctx, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: cannot %s message %d: it is %s", ErrWrongState, what, id, state)
}

// MarkSent records that the provider accepted a sending message: its SID,
// first status (from the create response; Twilio sends no callback for it)
// and segment count. SMS messages become due for a status poll at once (use
// SetNextPoll to back off); email has no later status, so an email row is
// sent and final at once. A final status here (a provider lookup after a
// crash may find the message already delivered) sets the final state.
func (s *Store) MarkSent(ctx context.Context, id int64, sid, status string, segments int, at time.Time) error {
	rank, ok := statusRank(status)
	if !ok {
		return fmt.Errorf("%w %q for message %d", ErrUnknownStatus, status, id)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var state State
		var channel string
		err := tx.QueryRowContext(ctx, sqlStateChannel, id).Scan(&state, &channel)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: message %d", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		if state != StateSending {
			return fmt.Errorf("%w: cannot mark message %d sent: it is %s, not sending", ErrWrongState, id, state)
		}
		newState, nextPoll, finalAt := StateSent, at, time.Time{}
		if rank == finalRank {
			newState, nextPoll, finalAt = finalState(status), time.Time{}, at
		} else if channel == ChannelEmail {
			nextPoll, finalAt = time.Time{}, at
		}
		_, err = tx.ExecContext(ctx, sqlMarkSent, newState, status, nullString(sid), segments,
			dbTime(at), dbTime(finalAt), dbTime(nextPoll), dbTime(at), id)
		if err != nil {
			return fmt.Errorf("storage: mark message %d sent: %w", id, err)
		}
		return addHistory(ctx, tx, id, status, 0, at, SourceSend)
	})
}

// MarkRetry puts a planned, sending or retry message back in the queue, due
// at retryAt. Use it from sending only when the provider provably did not
// take the message.
func (s *Store) MarkRetry(ctx context.Context, id int64, reason string, at, retryAt time.Time) error {
	return s.update(ctx, id, "retry", sqlMarkRetry, reason, dbTime(retryAt), dbTime(at), id)
}

// MarkFailed records a permanent failure of a planned, sending or retry
// message (e.g. Twilio refused the number): state and status become failed,
// with the provider's error code, and the change is added to the history.
func (s *Store) MarkFailed(ctx context.Context, id int64, code int, reason string, at time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, sqlMarkFailed, code, reason, dbTime(at), dbTime(at), id)
		if err != nil {
			return fmt.Errorf("storage: fail message %d: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var state State
			err := tx.QueryRowContext(ctx, sqlMessageState, id).Scan(&state)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: message %d", ErrNotFound, id)
			}
			if err != nil {
				return err
			}
			return fmt.Errorf("%w: cannot fail message %d: it is %s", ErrWrongState, id, state)
		}
		return addHistory(ctx, tx, id, "failed", code, at, SourceSend)
	})
}

// MarkSkipped gives up on a planned, sending or retry message without
// sending it (e.g. the participant opted out meanwhile); reason is kept.
func (s *Store) MarkSkipped(ctx context.Context, id int64, reason string, at time.Time) error {
	return s.update(ctx, id, "skip", sqlMarkSkipped, reason, dbTime(at), id)
}

// Sending returns the messages left in sending, oldest claim first. After a
// crash each is ambiguous: the provider may or may not have it. Resolve them
// by asking the provider before anything is resent.
func (s *Store) Sending(ctx context.Context) ([]Message, error) {
	return s.queryMessages(ctx, sqlSending)
}

// Tracking returns up to limit (≤ 0: all) sent messages of a channel, still
// without a final status, whose next poll is due.
func (s *Store) Tracking(ctx context.Context, channel string, now time.Time, limit int) ([]Message, error) {
	return s.queryMessages(ctx, sqlTracking, channel, now.UnixNano(), limitArg(limit))
}

// Get returns the message with the given ID, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (Message, error) {
	return s.getMessage(ctx, sqlGetMessage, id)
}

// GetBySID returns the message with the given provider SID, or ErrNotFound.
func (s *Store) GetBySID(ctx context.Context, sid string) (Message, error) {
	return s.getMessage(ctx, sqlGetMessageBySID, sid)
}

// ByKey returns the message with the given idempotency key, or ErrNotFound.
func (s *Store) ByKey(ctx context.Context, key string) (Message, error) {
	return s.getMessage(ctx, sqlGetMessageByKey, key)
}
