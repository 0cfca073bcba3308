package engine

import (
	"context"
	"errors"
	"time"

	"github.com/nudge-study/nudge/engine/sms"
)

// The bounds of one retention sweep, so that a pass after a long pause (or
// the first after an upgrade) does its share and leaves the rest for the
// next ones.
const (
	retainBatch  = 500 // rows per statement
	retainRounds = 4   // statements per kind of data per sweep
	redactBatch  = 100 // redactions at Twilio per sweep
	// redactRetry is when a redaction Twilio refused (the text still on
	// its way, or Twilio unavailable) is tried again.
	redactRetry = time.Hour
)

// RetentionStats counts what one retention sweep did.
type RetentionStats struct {
	Redacted int // text bodies removed at Twilio (or found gone there)
	Bodies   int // message bodies blanked in the outbox
	History  int // status changes deleted
	Inbound  int // inbound texts blanked
}

// smsRedactor is an SMS sender that can also remove a text's body from
// the provider (sms.Client can).
type smsRedactor interface {
	Redact(ctx context.Context, sid string) error
}

// Retain applies the study's privacy settings (rules.Privacy) once: it
// redacts at Twilio the bodies of texts whose status is final, blanks the
// bodies of messages final for longer than keep_bodies (keeping a digest),
// deletes the status history of messages final for longer than
// keep_history, and blanks handled inbound texts older than keep_inbound.
// A message that may still be sent is never touched. Each kind of work is
// bounded per sweep; Track runs a sweep after each of its own.
func (e *Engine) Retain(ctx context.Context) (RetentionStats, error) {
	var st RetentionStats
	p := e.study().Config.Privacy
	now := e.now()
	if p.RedactAtTwilio {
		n, err := e.redactAtTwilio(ctx, now)
		st.Redacted = n
		if err != nil {
			return st, err
		}
	}
	sweeps := []struct {
		keep  time.Duration
		count *int
		fn    func(context.Context, time.Time, int) (int, error)
	}{
		{p.KeepBodies, &st.Bodies, e.Store.BlankBodies},
		{p.KeepHistory, &st.History, e.Store.PruneHistory},
		{p.KeepInbound, &st.Inbound, e.Store.BlankInbound},
	}
	for _, s := range sweeps {
		if s.keep <= 0 {
			continue // kept forever
		}
		for range retainRounds {
			n, err := s.fn(ctx, now.Add(-s.keep), retainBatch)
			*s.count += n
			if err != nil {
				return st, err
			}
			if n < retainBatch {
				break
			}
		}
	}
	if st != (RetentionStats{}) {
		e.log().WithFields(map[string]any{"redacted_at_twilio": st.Redacted, "bodies_blanked": st.Bodies,
			"history_pruned": st.History, "inbound_blanked": st.Inbound}).Info("privacy: old data forgotten")
	}
	return st, nil
}

// redactAtTwilio removes the bodies of final texts from Twilio, oldest
// first. A text Twilio still has on its way is tried again later; one
// Twilio no longer has counts as done. Any other failure (Twilio away,
// credentials refused) ends the sweep: the text is tried again later, and
// the others with it.
func (e *Engine) redactAtTwilio(ctx context.Context, now time.Time) (int, error) {
	r, ok := e.SMS.(smsRedactor)
	if !ok {
		return 0, nil
	}
	todo, err := e.Store.ToRedact(ctx, now, now, redactBatch)
	if err != nil {
		return 0, err
	}
	done := 0
	for _, m := range todo {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		err := r.Redact(ctx, m.SID)
		var se *sms.Error
		switch {
		case err == nil, errors.As(err, &se) && se.Code == 20404:
			if err := e.Store.MarkRedacted(ctx, m.ID, e.now()); err != nil {
				return done, err
			}
			done++
		case errors.Is(err, sms.ErrNotFinal):
			e.log().WithField("sid", m.SID).Debug("privacy: Twilio still has the text on its way; its body is redacted later")
			if err := e.Store.PostponeRedact(ctx, m.ID, now.Add(redactRetry)); err != nil {
				return done, err
			}
		default:
			e.log().WithError(err).WithField("sid", m.SID).Warn("privacy: Twilio did not redact a text's body; trying again in an hour")
			return done, e.Store.PostponeRedact(ctx, m.ID, now.Add(redactRetry))
		}
	}
	return done, nil
}

// retainAfterTrack runs a retention sweep; its failure is logged, not
// returned: forgetting is retried on the next pass and must not stop
// tracking.
func (e *Engine) retainAfterTrack(ctx context.Context) {
	if _, err := e.Retain(ctx); err != nil && ctx.Err() == nil {
		e.log().WithError(err).Warn("privacy: the retention sweep failed; it runs again with the next pass")
	}
}
