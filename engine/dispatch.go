package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nudge-study/nudge/engine/email"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/storage"
)

const (
	// maxAttempts bounds how often a message Twilio or the SMTP server
	// provably did not take is tried again.
	maxAttempts = 5
	// staleSending is how long a row may sit in "sending" before another
	// pass treats it as left behind by a crash and looks it up.
	staleSending = 2 * time.Minute
	// senderLease is how long the sending lease lasts without renewal; it
	// is renewed before every send.
	senderLease = time.Minute
	dueBatch    = 10000
)

// DispatchStats counts what one dispatch did.
type DispatchStats struct {
	Sent, Retried, Failed, Skipped int
}

func (s *DispatchStats) add(o DispatchStats) {
	s.Sent += o.Sent
	s.Retried += o.Retried
	s.Failed += o.Failed
	s.Skipped += o.Skipped
}

// Dispatch sends every message that is due: first it resolves rows a crash
// left in "sending", then it sends SMS (one worker per sending number, each
// paced by its own limiter) and email side by side. Only one process sends
// at a time — it holds the database's sending lease — so the pacing holds
// even with several nudge processes on one database; the others return at
// once and leave the queue to the holder.
func (e *Engine) Dispatch(ctx context.Context) (DispatchStats, error) {
	e.dispatchMu.Lock()
	defer e.dispatchMu.Unlock()
	var total DispatchStats
	held, err := e.renewSending(ctx)
	if err != nil || !held {
		return total, err
	}
	defer func() {
		if err := e.Store.Unlock(context.WithoutCancel(ctx), "sending", e.owner()); err != nil {
			e.log().WithError(err).Warn("releasing the sending lease")
		}
	}()
	if err := e.resolveSending(ctx, e.now().Add(-staleSending)); err != nil {
		return total, err
	}
	now := e.now()
	var smsDue, mailDue []storage.Message
	if e.SMS != nil {
		if smsDue, err = e.Store.Due(ctx, "sms", now, dueBatch); err != nil {
			return total, err
		}
	}
	if e.Email != nil {
		if mailDue, err = e.Store.Due(ctx, "email", now, dueBatch); err != nil {
			return total, err
		}
	}
	all := len(smsDue) + len(mailDue)
	if all == 0 {
		return total, nil
	}
	var done atomic.Int64
	tick := func(m storage.Message) {
		e.progress(Progress{Stage: "dispatch", Done: int(done.Add(1)), Total: all, Message: m.Rule})
	}

	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	worker := func(msgs []storage.Message, send func(context.Context, storage.Message) (DispatchStats, error)) {
		defer wg.Done()
		for _, m := range msgs {
			if ctx.Err() != nil {
				return
			}
			st, err := send(ctx, m)
			tick(m)
			mu.Lock()
			total.add(st)
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
			if err != nil {
				return // a store error: stop this worker, keep the rest queued
			}
		}
	}
	bySender := make(map[string][]storage.Message)
	for _, m := range smsDue {
		bySender[m.From] = append(bySender[m.From], m)
	}
	senders := make([]string, 0, len(bySender))
	for from := range bySender {
		senders = append(senders, from)
	}
	sort.Strings(senders)
	for _, from := range senders {
		wg.Add(1)
		go worker(bySender[from], e.sendSMS)
	}
	if len(mailDue) > 0 {
		wg.Add(1)
		go worker(mailDue, e.sendEmail)
	}
	wg.Wait()
	if len(errs) > 0 {
		return total, errors.Join(errs...)
	}
	return total, ctx.Err()
}

// sendSMS sends one outbox row. The row is claimed (planned → sending) in a
// committed transaction before Twilio is called, so a second worker or a
// crashed pass can never send it again blind.
func (e *Engine) sendSMS(ctx context.Context, m storage.Message) (DispatchStats, error) {
	log := e.log().WithFields(map[string]any{"message": m.ID, "rule": m.Rule, "record": m.Record, "to": redact(m.To)})
	out, err := e.Store.IsOptedOut(ctx, m.To)
	if err != nil {
		return DispatchStats{}, err
	}
	if out {
		log.Info("not sent: the participant opted out")
		return DispatchStats{Skipped: 1}, e.Store.MarkSkipped(ctx, m.ID, "opted out", e.now())
	}
	if later, ok := e.outsideWindow(m); ok {
		log.WithField("not_before", later.Format(time.RFC3339)).Info("outside the allowed hours now; held until they open")
		return DispatchStats{}, e.Store.MarkRetry(ctx, m.ID, "outside the allowed hours", e.now(), later)
	}
	// Claim first, then wait for the pacer: the claim's disk write then
	// overlaps the wait instead of delaying the send.
	if err := e.Store.Claim(ctx, m.ID, e.now()); err != nil {
		if errors.Is(err, storage.ErrNotClaimable) {
			return DispatchStats{}, nil // another worker has it
		}
		return DispatchStats{}, err
	}
	if held, err := e.renewSending(ctx); err != nil || !held {
		// The lease was lost (this process stalled for a minute): another
		// process sends now. The row goes back to the queue unsent.
		return DispatchStats{}, errors.Join(err, e.Store.MarkRetry(context.WithoutCancel(ctx), m.ID, "sending lease lost", e.now(), e.now()))
	}
	if e.Pacer != nil {
		if err := e.Pacer.Wait(ctx, m.From, max(m.Segments, 1)); err != nil {
			// Cancelled before the request: provably not sent, so it goes
			// back to the queue. A fresh context: ctx is already done.
			return DispatchStats{}, e.Store.MarkRetry(context.WithoutCancel(ctx), m.ID, "interrupted before sending", e.now(), e.now())
		}
	}
	res, err := e.SMS.Send(ctx, m.From, m.To, m.Body)
	if e.Pacer != nil {
		e.Pacer.Done(m.From, max(m.Segments, 1))
	}
	now := e.now()
	if err == nil {
		if err := e.Store.MarkSent(ctx, m.ID, res.SID, res.Status, res.Segments, now); err != nil {
			return DispatchStats{}, err
		}
		if _, err := e.Store.RecordStatus(ctx, m.ID, res.Status, 0, now, "create"); err != nil {
			return DispatchStats{}, err
		}
		log.WithFields(map[string]any{"sid": res.SID, "status": res.Status, "segments": res.Segments}).Info("sms sent")
		return DispatchStats{Sent: 1}, nil
	}

	var se *sms.Error
	if !errors.As(err, &se) {
		// Send checks the context before calling Twilio: nothing left.
		log.WithError(err).Warn("sms not sent; will retry")
		return DispatchStats{Retried: 1}, e.Store.MarkRetry(ctx, m.ID, err.Error(), now, now)
	}
	log = log.WithFields(map[string]any{"code": se.Code, "http_status": se.HTTPStatus})
	switch se.Kind {
	case sms.Retryable:
		if m.Attempts+1 >= maxAttempts {
			log.Warn("sms failed: Twilio did not take it after several attempts")
			return DispatchStats{Failed: 1}, e.Store.MarkFailed(ctx, m.ID, se.Code, fmt.Sprintf("gave up after %d attempts: %s", maxAttempts, se.Message), now)
		}
		at := now.Add(backoff(m.Attempts + 1))
		log.WithField("retry_at", at.Format(time.RFC3339)).Warn("Twilio did not take the sms; will retry")
		return DispatchStats{Retried: 1}, e.Store.MarkRetry(ctx, m.ID, se.Message, now, at)
	case sms.Ambiguous:
		// Look it up now, even when ctx was cancelled mid-request (a
		// shutdown): a bounded, detached context, so the row is settled
		// before the process stops rather than left ambiguous.
		log.Warn("Twilio did not answer; looking the message up before anything else")
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		return e.resolveOne(lctx, m)
	default:
		if se.Code == 21610 {
			if err := e.Store.OptOut(ctx, m.To, "twilio-21610", now); err != nil {
				return DispatchStats{}, err
			}
		}
		log.Warn("sms refused by Twilio")
		return DispatchStats{Failed: 1}, e.Store.MarkFailed(ctx, m.ID, se.Code, se.Message, now)
	}
}

// sendEmail hands one outbox row to the SMTP server.
func (e *Engine) sendEmail(ctx context.Context, m storage.Message) (DispatchStats, error) {
	log := e.log().WithFields(map[string]any{"message": m.ID, "rule": m.Rule, "record": m.Record, "to": redact(m.To)})
	if later, ok := e.outsideWindow(m); ok {
		log.WithField("not_before", later.Format(time.RFC3339)).Info("outside the allowed hours now; held until they open")
		return DispatchStats{}, e.Store.MarkRetry(ctx, m.ID, "outside the allowed hours", e.now(), later)
	}
	if err := e.Store.Claim(ctx, m.ID, e.now()); err != nil {
		if errors.Is(err, storage.ErrNotClaimable) {
			return DispatchStats{}, nil
		}
		return DispatchStats{}, err
	}
	id, err := e.Email.Send(ctx, email.Message{To: m.To, Subject: m.Subject, Text: m.Body, HTML: m.HTML,
		Headers: map[string]string{"X-Nudge-Key": m.Key}})
	now := e.now()
	switch {
	case err == nil:
		if err := e.Store.MarkSent(ctx, m.ID, id, "accepted", 0, now); err != nil {
			return DispatchStats{}, err
		}
		log.Info("email accepted by the SMTP server")
		return DispatchStats{Sent: 1}, nil
	case email.IsPermanent(err) || m.Attempts+1 >= maxAttempts:
		log.WithError(err).Warn("email refused")
		return DispatchStats{Failed: 1}, e.Store.MarkFailed(ctx, m.ID, 0, err.Error(), now)
	default:
		at := now.Add(backoff(m.Attempts + 1))
		log.WithError(err).Warn("email not accepted; will retry")
		return DispatchStats{Retried: 1}, e.Store.MarkRetry(ctx, m.ID, err.Error(), now, at)
	}
}

// renewSending takes or renews the database-wide sending lease.
func (e *Engine) renewSending(ctx context.Context) (bool, error) {
	return e.Store.TryLock(ctx, "sending", e.owner(), senderLease, e.now())
}

// outsideWindow checks a message against its rule's allowed hours at the
// moment of sending (a long queue or a slow pacer can push a send past the
// end of the window it was planned in) and says when they next open.
func (e *Engine) outsideWindow(m storage.Message) (time.Time, bool) {
	r := e.Study.Rule(m.Rule)
	if r == nil || r.Window == nil || m.Zone == "" {
		return time.Time{}, false
	}
	loc, err := time.LoadLocation(m.Zone)
	if err != nil {
		loc = e.Study.Config.Location
	}
	now := e.now()
	next := r.Window.Next(now, loc)
	return next, next.After(now)
}

// resolveSending settles rows left in "sending" (last touched before
// `before`): an SMS is looked up at Twilio and marked sent if found, queued
// again if provably not there; an email cannot be looked up, so it is marked
// failed rather than risk a duplicate.
func (e *Engine) resolveSending(ctx context.Context, before time.Time) error {
	rows, err := e.Store.Sending(ctx)
	if err != nil {
		return err
	}
	for _, m := range rows {
		if m.UpdatedAt.After(before) {
			continue // another worker may still be on it
		}
		if m.Channel == "email" {
			if err := e.Store.MarkFailed(ctx, m.ID, 0, "interrupted while handing it to the SMTP server; not resent to avoid a duplicate", e.now()); err != nil {
				return err
			}
			continue
		}
		if e.SMS == nil {
			continue
		}
		if _, err := e.resolveOne(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// resolveOne looks an ambiguous SMS up at Twilio by sender, recipient and
// time, and settles it.
func (e *Engine) resolveOne(ctx context.Context, m storage.Message) (DispatchStats, error) {
	now := e.now()
	found, err := e.SMS.Find(ctx, m.From, m.To, m.UpdatedAt.Add(-time.Minute))
	if err != nil {
		// Cannot tell: leave it in "sending"; the next pass asks again.
		e.log().WithError(err).WithField("message", m.ID).Warn("could not look up an ambiguous sms; left for the next pass")
		return DispatchStats{}, nil
	}
	for _, f := range found {
		// A message another outbox row already owns is not this one (two
		// rules may text the same number within minutes); an empty body is
		// accepted because accounts can have bodies redacted.
		if other, err := e.Store.GetBySID(ctx, f.SID); err == nil && other.ID != m.ID {
			continue
		}
		if f.Body == m.Body || f.Body == "" {
			if err := e.Store.MarkSent(ctx, m.ID, f.SID, f.Status, f.Segments, now); err != nil {
				return DispatchStats{}, err
			}
			_, err := e.Store.RecordStatus(ctx, m.ID, f.Status, f.ErrorCode, now, "lookup")
			return DispatchStats{Sent: 1}, err
		}
	}
	return DispatchStats{Retried: 1}, e.Store.MarkRetry(ctx, m.ID, "not found at Twilio after an unanswered request", now, now)
}

// backoff is the wait before attempt n (1-based): 30 s, 1 min, 2 min, … capped at 1 h.
func backoff(n int) time.Duration {
	d := 30 * time.Second << max(n-1, 0)
	if d > time.Hour || d <= 0 {
		d = time.Hour
	}
	return d
}
