package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// How an inbound SMS was handled, as stored in Inbound.Handled. A reply rule
// is recorded as HandledReply(name); "" means not handled yet.
const (
	HandledStop  = "stop"  // an opt-out (STOP family)
	HandledStart = "start" // an opt-in (START, YES, UNSTOP)
	HandledHelp  = "help"  // HELP or INFO, answered with the help text
	HandledNone  = "none"  // nothing matched; no answer
)

// HandledReply is the Handled value of a message answered by the reply rule
// called name.
func HandledReply(name string) string { return "reply:" + name }

// Inbound is an SMS a participant sent to the study, de-duplicated on its
// Twilio MessageSid (Twilio may deliver the same webhook more than once).
type Inbound struct {
	ID         int64
	MessageSID string
	From, To   string // E.164 as Twilio sends them
	Body       string
	ReceivedAt time.Time
	// Reply is the answer nudge gave (the TwiML message body, "" = none),
	// kept so that a retried webhook gets the same answer.
	Reply string
	// Handled says what nudge did with it: HandledStop, HandledStart,
	// HandledHelp, HandledReply(name) or HandledNone; "" = not yet handled.
	Handled string
	// Effects are what the message changes, applied in the same transaction
	// that stores it and only if it is new: a retried webhook changes
	// nothing again. They are not stored with the message: a row read back
	// has none. nil = no effects.
	Effects *InboundEffects
}

// InboundEffects are the changes an inbound message causes, committed
// together with it so that none is lost or applied twice.
type InboundEffects struct {
	// OptOut or OptIn records the sender's choice (like Store.OptOut and
	// Store.OptIn for the message's From, at its ReceivedAt), with Source
	// saying how it was learnt. At most one of them may be set.
	OptOut, OptIn bool
	Source        string
	// WriteBacks are queued for REDCap (see EnqueueWriteBacks); a zero
	// CreatedAt is taken as the message's ReceivedAt.
	WriteBacks []WriteBack
	// PauseUntil, when set, pauses every text to the message's From until
	// then (see Store.PauseNumber), with Source saying why.
	PauseUntil time.Time
	// Notify are emails to staff about the message, enqueued in the outbox
	// like Store.Enqueue: a Key already stored is not enqueued again.
	Notify []Message
}

// clone copies fx deeply, so the writer's goroutine never shares it with a
// caller who has stopped waiting.
func (fx *InboundEffects) clone() *InboundEffects {
	if fx == nil {
		return nil
	}
	c := *fx
	c.WriteBacks = make([]WriteBack, len(fx.WriteBacks))
	for i, w := range fx.WriteBacks {
		w.Fields = maps.Clone(w.Fields)
		c.WriteBacks[i] = w
	}
	c.Notify = slices.Clone(fx.Notify)
	return &c
}

const inboundColumns = `id, message_sid, from_number, to_number, body, received_at, reply, handled`

const (
	sqlInsertInbound = `
INSERT INTO inbound (message_sid, from_number, to_number, body, received_at, reply, handled)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (message_sid) DO NOTHING`

	sqlInboundBySID    = `SELECT ` + inboundColumns + ` FROM inbound WHERE message_sid = ?`
	sqlSetInboundReply = `UPDATE inbound SET handled = ?, reply = ? WHERE id = ?`
	sqlInboundCount    = `SELECT count(*) FROM inbound`

	// sqlLastSentTo uses messages_sent_to; only rows the provider accepted
	// (a SID is set) count.
	sqlLastSentTo = `
SELECT ` + messageColumns + ` FROM messages
WHERE to_addr = ? AND rule = ? AND sid IS NOT NULL AND channel = 'sms'
  AND state IN ('sent', 'delivered', 'undelivered')
ORDER BY sent_at DESC, id DESC LIMIT 1`
)

// checkInbound validates an inbound message before it is stored.
func checkInbound(in *Inbound) error {
	if in == nil || in.MessageSID == "" || in.From == "" || in.ReceivedAt.IsZero() {
		return fmt.Errorf("%w: an inbound message needs a MessageSid, a sender (From) and ReceivedAt", ErrInvalid)
	}
	fx := in.Effects
	if fx == nil {
		return nil
	}
	if fx.OptOut && fx.OptIn {
		return fmt.Errorf("%w: inbound message %s: its effects opt the sender both out and in", ErrInvalid, in.MessageSID)
	}
	for i, w := range fx.WriteBacks {
		if w.Project == "" || w.Record == "" || len(w.Fields) == 0 {
			return fmt.Errorf("%w: inbound message %s: write-back %d needs a project, a record and at least one field",
				ErrInvalid, in.MessageSID, i)
		}
	}
	for i := range fx.Notify {
		if err := checkNew(&fx.Notify[i]); err != nil {
			return fmt.Errorf("inbound message %s: notification %d: %w", in.MessageSID, i, err)
		}
	}
	return nil
}

// applyEffects applies the effects of the new inbound message in inside tx.
func applyEffects(ctx context.Context, tx *sql.Tx, in *Inbound) error {
	fx := in.Effects
	if fx == nil {
		return nil
	}
	if fx.OptOut || fx.OptIn {
		flag := 0
		if fx.OptOut {
			flag = 1
		}
		if _, err := tx.ExecContext(ctx, sqlSetOptOut, in.From, flag, fx.Source, dbTime(in.ReceivedAt)); err != nil {
			return fmt.Errorf("storage: record opt-out change of inbound message %s: %w", in.MessageSID, err)
		}
	}
	if !fx.PauseUntil.IsZero() {
		if _, err := tx.ExecContext(ctx, sqlPauseNumber, in.From, dbTime(fx.PauseUntil), fx.Source, dbTime(in.ReceivedAt)); err != nil {
			return fmt.Errorf("storage: pause texts to the sender of inbound message %s: %w", in.MessageSID, err)
		}
	}
	exec := func(ctx context.Context, args ...any) (sql.Result, error) {
		return tx.ExecContext(ctx, sqlInsertMessage, args...)
	}
	for i := range fx.Notify {
		m := fx.Notify[i]
		if _, err := insertMessage(ctx, exec, &m); err != nil {
			return fmt.Errorf("storage: inbound message %s: %w", in.MessageSID, err)
		}
	}
	for _, w := range fx.WriteBacks {
		if w.CreatedAt.IsZero() {
			w.CreatedAt = in.ReceivedAt
		}
		if err := queueWriteBack(ctx, tx, w); err != nil {
			return fmt.Errorf("storage: inbound message %s: %w", in.MessageSID, err)
		}
	}
	return nil
}

func scanInbound(r scanner) (Inbound, error) {
	var (
		in       Inbound
		received sql.NullInt64
	)
	err := r.Scan(&in.ID, &in.MessageSID, &in.From, &in.To, &in.Body, &received, &in.Reply, &in.Handled)
	in.ReceivedAt = goTime(received)
	return in, err
}

// SaveInbound stores inbound messages in one transaction: either every new
// one is stored, with its Effects, or nothing is. A message whose MessageSID
// is already stored (in the database or earlier in the same batch) is not
// stored again and its Effects are not applied: inserted[i] is then false
// and *in[i] is overwritten with the stored row, whose Reply and Handled
// tell what was answered the first time. For new messages inserted[i] is
// true and in[i].ID is set. The callers' values are changed only after the
// commit.
func (s *Store) SaveInbound(ctx context.Context, in []*Inbound) (inserted []bool, err error) {
	for _, m := range in {
		if err := checkInbound(m); err != nil {
			return nil, err
		}
	}
	out := make([]Inbound, len(in))
	inserted = make([]bool, len(in))
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		ins, err := tx.PrepareContext(ctx, sqlInsertInbound)
		if err != nil {
			return err
		}
		defer ins.Close()
		for i, m := range in {
			res, err := ins.ExecContext(ctx, m.MessageSID, m.From, m.To, m.Body, dbTime(m.ReceivedAt), m.Reply, m.Handled)
			if err != nil {
				return fmt.Errorf("storage: save inbound message %s: %w", m.MessageSID, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == 1 {
				id, err := res.LastInsertId()
				if err != nil {
					return err
				}
				out[i], inserted[i] = *m, true
				out[i].ID = id
				if err := applyEffects(ctx, tx, m); err != nil {
					return err
				}
				continue
			}
			out[i], err = scanInbound(tx.QueryRowContext(ctx, sqlInboundBySID, m.MessageSID))
			if err != nil {
				return fmt.Errorf("storage: read stored inbound message %s: %w", m.MessageSID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, m := range in {
		*m = out[i]
	}
	return inserted, nil
}

// InboundBySID returns the inbound message with the given Twilio
// MessageSid, or ErrNotFound.
func (s *Store) InboundBySID(ctx context.Context, sid string) (Inbound, error) {
	in, err := scanInbound(s.db.QueryRowContext(ctx, sqlInboundBySID, sid))
	if errors.Is(err, sql.ErrNoRows) {
		return Inbound{}, fmt.Errorf("%w: inbound message %s", ErrNotFound, sid)
	}
	return in, err
}

// SetInboundReply records how the inbound message id was handled and the
// answer given (see Inbound.Handled and Inbound.Reply), replacing what was
// recorded before. handled must not be empty.
func (s *Store) SetInboundReply(ctx context.Context, id int64, handled, reply string) error {
	if handled == "" {
		return fmt.Errorf("%w: inbound message %d: say how it was handled (e.g. %q)", ErrInvalid, id, HandledNone)
	}
	res, err := s.db.ExecContext(ctx, sqlSetInboundReply, handled, reply, id)
	if err != nil {
		return fmt.Errorf("storage: record reply to inbound message %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: inbound message %d", ErrNotFound, id)
	}
	return nil
}

// InboundCount returns how many inbound messages are stored.
func (s *Store) InboundCount(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, sqlInboundCount).Scan(&n)
	return n, err
}

// LastSentTo returns the latest SMS the rule called rule sent to phone
// (E.164) that the provider accepted: state sent, delivered or undelivered,
// with a SID. Reply rules use it for "only after this rule, within". It
// returns ErrNotFound if there is none.
func (s *Store) LastSentTo(ctx context.Context, rule, phone string) (Message, error) {
	m, err := scanMessage(s.db.QueryRowContext(ctx, sqlLastSentTo, phone, rule))
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, fmt.Errorf("%w: no SMS of rule %q sent to that number", ErrNotFound, rule)
	}
	return m, err
}
