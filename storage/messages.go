package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Channels a message can go out on.
const (
	ChannelSMS   = "sms"
	ChannelEmail = "email"
)

// Message is one send of one rule to one participant: a row of the outbox.
type Message struct {
	ID int64
	// Key is the idempotency key project/rule/record/event/instance/occurrence
	// (project/rule/record/event/instance/v<OncePer>/occurrence for a rule
	// with once_per); it is UNIQUE, so enqueueing the same message twice
	// stores it once.
	Key   string
	RunID int64 // the run that planned it; 0 = none

	Project, Rule, Record, Event, Instrument string
	Instance, Occurrence                     int
	// OncePer is the digest of the value of the rule's once_per field the
	// message was planned for ("" = the rule has none): never the value.
	OncePer string

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
	// ExpiresAt is when a message not yet sent stops being worth sending:
	// it is then expired, never sent late. Zero = never.
	ExpiresAt time.Time
	// AmbiguousAt is when a create went unanswered (timeout, reset, 5xx):
	// the row stays sending until lookups settle it. Zero = not ambiguous.
	AmbiguousAt time.Time
	Lookups     int // lookups made for an ambiguous create

	CreatedAt, SentAt, FinalAt, UpdatedAt time.Time

	// ReportedStatus is the status last queued for write-back to REDCap.
	ReportedStatus string

	// BodyDigest is BodyDigest(body) once retention blanked the body,
	// subject and HTML ("" while they are kept); see BlankBodies.
	BodyDigest string
	// RedactedAt is when Twilio stopped holding the text's body (redacted
	// or gone); zero while it still may.
	RedactedAt time.Time

	// Retime is set by the planner on an occurrence of a timed rule: when
	// a message with the same key is already queued (planned or retry),
	// enqueueing moves it to this NotBefore and ExpiresAt instead of doing
	// nothing, so a moved start date moves what is not sent yet. It is not
	// stored.
	Retime bool
}

const messageColumns = `id, key, run_id, project, rule, record, event, instrument, instance, occurrence,
	channel, to_addr, from_addr, subject, body, html, zone, state, status, sid, error_code, reason, segments,
	attempts, not_before, next_poll, created_at, sent_at, final_at, updated_at, reported_status,
	expires_at, ambiguous_at, lookups, once_per, body_digest, redacted_at`

const (
	sqlInsertMessage = `
INSERT INTO messages (key, run_id, project, rule, record, event, instrument, instance, occurrence,
	channel, to_addr, from_addr, subject, body, html, zone, state, reason, segments, not_before, expires_at,
	created_at, updated_at, once_per)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO NOTHING`

	sqlOccurrences = `
SELECT count(DISTINCT occurrence) FILTER (WHERE state NOT IN ('canceled', 'expired')),
	max(created_at) FILTER (WHERE state NOT IN ('canceled', 'expired')), coalesce(max(occurrence), 0)
FROM messages
WHERE project = ? AND rule = ? AND record = ? AND event = ? AND instance = ? AND once_per = ?`

	sqlDue = `
SELECT ` + messageColumns + ` FROM messages
WHERE state IN ('planned', 'retry') AND channel = ? AND (not_before IS NULL OR not_before <= ?)
ORDER BY created_at, id LIMIT ?`

	sqlStateChannel = `SELECT state, channel FROM messages WHERE id = ?`

	sqlSetLookups = `UPDATE messages SET lookups = lookups + 1, updated_at = ? WHERE id = ? AND state = 'sending'`

	sqlExpiredIDs = `
SELECT id FROM messages WHERE state IN ('planned', 'retry') AND expires_at IS NOT NULL AND expires_at <= ?`
)

// The state-changing statements. Each is guarded by the states it may move
// a row from; guard checks those moves against the transitions table when
// the package loads, so no statement can make a move the table forbids.
var (
	sqlClaim = `
UPDATE messages SET state = 'sending', attempts = attempts + 1, updated_at = ?, claimed_at = ?,
	to_addr = coalesce(?, to_addr), subject = coalesce(?, subject), body = coalesce(?, body),
	html = coalesce(?, html), segments = coalesce(?, segments), ambiguous_at = NULL, lookups = 0
WHERE id = ? AND state IN ` + guard(StateSending, StatePlanned, StateRetry) + `
	AND (not_before IS NULL OR not_before <= ?)`

	sqlMarkSent = `
UPDATE messages SET state = ?, status = ?, sid = ?, segments = ?, sent_at = ?, final_at = ?,
	next_poll = ?, ambiguous_at = NULL, updated_at = ?
WHERE id = ? AND state IN ` + guard(StateSent, StateSending)

	sqlMarkRetry = `
UPDATE messages SET state = 'retry', reason = ?, not_before = ?, updated_at = ?, ambiguous_at = NULL,
	attempts = CASE WHEN ? AND state = 'sending' THEN max(attempts - 1, 0) ELSE attempts END
WHERE id = ? AND state IN ` + guard(StateRetry, StatePlanned, StateSending, StateRetry)

	sqlMarkFailed = `
UPDATE messages SET state = 'failed', status = 'failed', error_code = ?, reason = ?, final_at = ?,
	next_poll = NULL, updated_at = ?
WHERE id = ? AND state IN ` + guard(StateFailed, StatePlanned, StateSending, StateRetry)

	sqlCancel = `
UPDATE messages SET state = 'canceled', status = 'canceled', reason = ?, final_at = ?, updated_at = ?
WHERE id = ? AND state IN ` + guard(StateCanceled, StatePlanned, StateRetry)

	sqlExpire = `
UPDATE messages SET state = 'expired', status = 'expired', reason = ?, final_at = ?, next_poll = NULL,
	ambiguous_at = NULL, updated_at = ?
WHERE id = ? AND state IN ` + guard(StateExpired, StatePlanned, StateRetry, StateSending)

	sqlReview = `
UPDATE messages SET state = 'review', status = CASE WHEN status = '' THEN 'review' ELSE status END,
	error_code = CASE WHEN ? = 0 THEN error_code ELSE ? END, reason = ?,
	final_at = coalesce(final_at, ?), next_poll = NULL, updated_at = ?
WHERE id = ? AND state IN ` + guard(StateReview, StateSending, StateSent, StateUndelivered, StateFailed)

	sqlMarkAmbiguous = `
UPDATE messages SET ambiguous_at = coalesce(ambiguous_at, ?), reason = ?, updated_at = ?
WHERE id = ? AND state = 'sending'`
)

const (
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
		final, updated, expires, ambiguous sql.NullInt64
		digest                             sql.NullString
		redacted                           sql.NullInt64
	)
	err := r.Scan(&m.ID, &m.Key, &runID, &m.Project, &m.Rule, &m.Record, &m.Event, &m.Instrument,
		&m.Instance, &m.Occurrence, &m.Channel, &m.To, &m.From, &m.Subject, &m.Body, &m.HTML, &m.Zone, &m.State,
		&m.Status, &sid, &m.ErrorCode, &m.Reason, &m.Segments, &m.Attempts, &notBefore, &nextPoll,
		&created, &sent, &final, &updated, &m.ReportedStatus, &expires, &ambiguous, &m.Lookups, &m.OncePer, &digest, &redacted)
	if err != nil {
		return Message{}, err
	}
	m.RunID = runID.Int64
	m.SID = sid.String
	m.NotBefore, m.NextPoll = goTime(notBefore), goTime(nextPoll)
	m.CreatedAt, m.SentAt = goTime(created), goTime(sent)
	m.FinalAt, m.UpdatedAt = goTime(final), goTime(updated)
	m.ExpiresAt, m.AmbiguousAt = goTime(expires), goTime(ambiguous)
	m.BodyDigest, m.RedactedAt = digest.String, goTime(redacted)
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
		m.Reason, m.Segments, dbTime(m.NotBefore), dbTime(m.ExpiresAt), dbTime(m.CreatedAt), dbTime(m.CreatedAt), m.OncePer)
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
	inserted, err = insertMessage(ctx, exec, m)
	if err == nil && !inserted && m.Retime {
		err = retimeExisting(ctx, s.db.ExecContext, m)
	}
	return inserted, s.explain(err)
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
			} else if m.Retime {
				if err := retimeExisting(ctx, tx.ExecContext, m); err != nil {
					return err
				}
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

// Occurrences reports how many messages of one participant and rule (the
// record, event and repeat instance) count against the rule's repeat
// schedule, when the last of them was planned, and the occurrence number the
// next one gets. Canceled and expired messages were never sent, so they do
// not use up a place in the schedule (after a participant withdraws and
// re-consents, or a window passes, the message can be planned again); they
// still hold their key, so next is always past every stored occurrence.
// Only messages planned without a once_per value count (see OccurrencesPer).
// An occurrence counts once however many messages it has: a text and the
// email fallback sent in its place are one occurrence.
func (s *Store) Occurrences(ctx context.Context, project, rule, record, event string, instance int) (n int, last time.Time, next int, err error) {
	return s.OccurrencesPer(ctx, project, rule, record, event, instance, "")
}

// OccurrencesPer is Occurrences for the messages planned for one value of
// a rule's once_per field, given by its digest (Message.OncePer): each
// value has its own repeat schedule.
func (s *Store) OccurrencesPer(ctx context.Context, project, rule, record, event string, instance int, oncePer string) (n int, last time.Time, next int, err error) {
	var max sql.NullInt64
	err = s.db.QueryRowContext(ctx, sqlOccurrences, project, rule, record, event, instance, oncePer).Scan(&n, &max, &next)
	if err != nil {
		return 0, time.Time{}, 0, err
	}
	return n, goTime(max), next + 1, nil
}

// Due returns up to limit (≤ 0: all) planned or retry messages of a channel
// whose NotBefore has come, oldest first.
func (s *Store) Due(ctx context.Context, channel string, now time.Time, limit int) ([]Message, error) {
	return s.queryMessages(ctx, sqlDue, channel, now.UnixNano(), limitArg(limit))
}

// Content is what a message says and where it goes, as checked against the
// participant's current data right before sending. Claim stores it with the
// claim, so the text sent is always the text stored.
type Content struct {
	To, Subject, Body, HTML string
	Segments                int
}

// Claim moves a due planned or retry message to sending and counts the
// attempt, in one committed statement. Exactly one caller, across goroutines
// and processes, wins; the others get ErrNotClaimable. Call it before
// handing the message to the provider; a message left in sending after a
// crash must be resolved by asking the provider, never resent blind. A
// non-nil c replaces the message's recipient and text in the same statement.
func (s *Store) Claim(ctx context.Context, id int64, now time.Time, c *Content) error {
	var to, subject, body, html, segments any
	if c != nil {
		to, subject, body, html, segments = c.To, c.Subject, c.Body, c.HTML, c.Segments
	}
	res, err := s.db.ExecContext(ctx, sqlClaim, now.UnixNano(), now.UnixNano(), to, subject, body, html, segments, id, now.UnixNano())
	if err != nil {
		return s.explain(fmt.Errorf("storage: claim message %d: %w", id, err))
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
	return s.inTx(ctx, func(tx *sql.Tx) error { return updateTx(ctx, tx, id, what, q, args...) })
}

func updateTx(ctx context.Context, tx *sql.Tx, id int64, what string, q string, args ...any) error {
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("storage: %s message %d: %w", what, id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var state State
	err = tx.QueryRowContext(ctx, sqlMessageState, id).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: message %d", ErrNotFound, id)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: cannot %s message %d: it is %s", ErrWrongState, what, id, state)
}

// moveWithHistory runs a guarded UPDATE and adds the new status to the
// message's history in the same transaction.
func (s *Store) moveWithHistory(ctx context.Context, id int64, what, status string, code int, at time.Time, q string, args ...any) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := updateTx(ctx, tx, id, what, q, args...); err != nil {
			return err
		}
		return addHistory(ctx, tx, id, status, code, at, SourceSend)
	})
}

// MarkSent records that the provider accepted a sending message: its SID,
// first status (from the create response; Twilio sends no callback for it)
// and segment count. SMS messages become due for a status poll at once (use
// SetNextPoll to back off); email has no later status, so an email row is
// sent and final at once. A final status here (a provider lookup after a
// crash may find the message already delivered) sets the final state. A
// status nudge does not know is stored as it is and treated as not final:
// the message was taken, and that is what matters here.
//
// The message has gone out, so a database locked by another process is
// waited for outcomeRounds more busy timeouts before MarkSent gives up.
func (s *Store) MarkSent(ctx context.Context, id int64, sid, status string, segments int, at time.Time) error {
	err := s.markSent(ctx, id, sid, status, segments, at)
	for i := 0; i < outcomeRounds && errors.Is(err, ErrLocked) && ctx.Err() == nil; i++ {
		err = s.markSent(ctx, id, sid, status, segments, at)
	}
	return err
}

func (s *Store) markSent(ctx context.Context, id int64, sid, status string, segments int, at time.Time) error {
	rank, _ := statusRank(status)
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
// at retryAt, counting the attempt. Use it from sending only when the
// provider provably did not take the message.
func (s *Store) MarkRetry(ctx context.Context, id int64, reason string, at, retryAt time.Time) error {
	return s.update(ctx, id, "retry", sqlMarkRetry, reason, dbTime(retryAt), dbTime(at), false, id)
}

// Snooze puts a message back in the queue, due at until, without counting
// an attempt against it: the problem was not the message's own (a paused
// or throttled sender, quiet hours, a lost lease). From sending, use it only
// when the provider provably did not take the message.
func (s *Store) Snooze(ctx context.Context, id int64, reason string, at, until time.Time) error {
	return s.update(ctx, id, "snooze", sqlMarkRetry, reason, dbTime(until), dbTime(at), true, id)
}

// MarkFailed records a permanent failure of a planned, sending or retry
// message (e.g. Twilio refused the number): state and status become failed,
// with the provider's error code, and the change is added to the history.
func (s *Store) MarkFailed(ctx context.Context, id int64, code int, reason string, at time.Time) error {
	return s.moveWithHistory(ctx, id, "fail", "failed", code, at, sqlMarkFailed, code, reason, dbTime(at), dbTime(at), id)
}

// Cancel gives up on a queued (planned or retry) message that no longer
// applies — the participant withdrew or opted out, the rule was disabled or
// deleted, the address is gone — with the reason. Its status becomes
// canceled, which is written back like any other status.
func (s *Store) Cancel(ctx context.Context, id int64, reason string, at time.Time) error {
	return s.moveWithHistory(ctx, id, "cancel", "canceled", 0, at, sqlCancel, reason, dbTime(at), dbTime(at), id)
}

// Expire gives up on a message that was not sent before its expiry: a
// queued one, or a sending one that the provider provably never took.
func (s *Store) Expire(ctx context.Context, id int64, reason string, at time.Time) error {
	return s.moveWithHistory(ctx, id, "expire", "expired", 0, at, sqlExpire, reason, dbTime(at), dbTime(at), id)
}

// ExpireDue expires every queued message whose expiry has passed at now and
// returns their IDs.
func (s *Store) ExpireDue(ctx context.Context, now time.Time) ([]int64, error) {
	var ids []int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, sqlExpiredIDs, now.UnixNano())
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			if err := updateTx(ctx, tx, id, "expire", sqlExpire, "not sent before it expired", dbTime(now), dbTime(now), id); err != nil {
				return err
			}
			if err := addHistory(ctx, tx, id, "expired", 0, now, SourceSend); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// MarkReview sets a message aside for a person: nobody can tell whether it
// reached the participant (an email whose final SMTP reply was lost, an SMS
// Twilio never showed after an unanswered create), or the carrier filtered
// it. It is never sent again by nudge. A non-zero code replaces the stored
// error code.
func (s *Store) MarkReview(ctx context.Context, id int64, code int, reason string, at time.Time) error {
	return s.moveWithHistory(ctx, id, "set aside for review", "review", code, at, sqlReview,
		code, code, reason, dbTime(at), dbTime(at), id)
}

// MarkAmbiguous records that the create of a sending message went
// unanswered: the row stays sending, and the time of the first unanswered
// attempt is kept for the lookups that settle it.
func (s *Store) MarkAmbiguous(ctx context.Context, id int64, reason string, at time.Time) error {
	return s.update(ctx, id, "mark ambiguous", sqlMarkAmbiguous, dbTime(at), reason, dbTime(at), id)
}

// CountLookup records one provider lookup of an ambiguous sending message.
func (s *Store) CountLookup(ctx context.Context, id int64, at time.Time) error {
	return s.update(ctx, id, "count a lookup of", sqlSetLookups, dbTime(at), id)
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
