package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nudge-study/nudge/engine/email"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

const (
	// staleSending is how long a row may sit in "sending" without a
	// recorded outcome before another pass treats it as left behind by a
	// crash: from then on it is settled like an unanswered create.
	staleSending = 2 * time.Minute
	// settleLookups lookups that find nothing, the first
	// twilio.unanswered_lookup_after and the last at least
	// twilio.unanswered_resend_after after the attempt, prove Twilio never
	// took a message; only then is it sent again.
	settleLookups = 3
	// senderLease is how long the sending lease lasts without renewal; it
	// is renewed before every send.
	senderLease = time.Minute
	dueBatch    = 10000
	// sendBound bounds one create, which runs on its own context so that a
	// shutdown never cuts a request in flight (the HTTP client's timeout
	// ends it sooner).
	sendBound = 2 * time.Minute
	// pauseRetry is the first wait before a paused sender is tried again;
	// it doubles with the pause's age up to maxPauseRetry.
	pauseRetry    = 5 * time.Minute
	maxPauseRetry = time.Hour
)

// DispatchStats counts what one dispatch did.
type DispatchStats struct {
	Sent      int `json:"sent"`
	Retried   int `json:"retried"`   // back in the queue: Twilio or SMTP could not take it now
	Failed    int `json:"failed"`    // refused for a reason of its own
	Canceled  int `json:"canceled"`  // no longer applied (withdrawn, opted out, rule disabled …)
	Expired   int `json:"expired"`   // not sent before its expiry
	Held      int `json:"held"`      // left queued by the kill switch or a paused sender
	Unsettled int `json:"unsettled"` // unanswered creates, waiting for lookups
	Review    int `json:"review"`    // set aside for a person
	// Problems are account, sender and connection problems that held
	// sending back, in words; `nudge run` exits non-zero when there are any.
	Problems []string `json:"problems,omitempty"`
}

func (s *DispatchStats) add(o DispatchStats) {
	s.Sent += o.Sent
	s.Retried += o.Retried
	s.Failed += o.Failed
	s.Canceled += o.Canceled
	s.Expired += o.Expired
	s.Held += o.Held
	s.Unsettled += o.Unsettled
	s.Review += o.Review
	for _, p := range o.Problems {
		s.problem(p)
	}
}

func (s *DispatchStats) problem(p string) {
	for _, q := range s.Problems {
		if q == p {
			return
		}
	}
	s.Problems = append(s.Problems, p)
}

// Dispatch sends every message that is due. First it expires queued
// messages whose time has passed and settles rows left in "sending"; then
// it sends SMS (one worker per sending number, each paced at its own rate)
// and email side by side. A message's sender is the number it goes out
// from, also through a Messaging Service (the number of its pool chosen
// when it was planned). Right before each send the message is checked
// against the participant's current data (see recheck), the kill switch
// and its sender's pause. Only one process sends at a time — it
// holds the database's sending lease — so the pacing holds even with
// several nudge processes on one database; the others return at once and
// leave the queue to the holder. The lease is renewed while the dispatch
// runs; if it is lost, no further message is sent and the error is
// ErrLeaseLost.
func (e *Engine) Dispatch(ctx context.Context) (DispatchStats, error) {
	e.dispatchMu.Lock()
	defer e.dispatchMu.Unlock()
	held, err := e.renewSending(ctx)
	if err != nil || !held {
		return DispatchStats{}, err
	}
	lctx, stop := e.holdLease(ctx, "sending", e.owner())
	defer func() {
		stop()
		if err := e.Store.Unlock(context.WithoutCancel(ctx), "sending", e.owner()); err != nil {
			e.log().WithError(err).Warn("releasing the sending lease")
		}
	}()
	total, err := e.dispatch(lctx)
	return total, leaseErr(lctx, err)
}

// dispatch is Dispatch under the sending lease.
func (e *Engine) dispatch(ctx context.Context) (DispatchStats, error) {
	var total DispatchStats
	expired, err := e.Store.ExpireDue(ctx, e.now())
	if err != nil {
		return total, err
	}
	if total.Expired = len(expired); total.Expired > 0 {
		e.log().WithField("messages", total.Expired).Warn("messages not sent before they expired; they will not be sent late")
	}
	settled, err := e.settleSending(ctx)
	total.add(settled)
	if err != nil {
		return total, err
	}
	if err := e.seedPacer(ctx); err != nil {
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
	fresh := &freshness{e: e}
	worker := func(msgs []storage.Message, send func(context.Context, storage.Message, []storage.Message, *freshness) (DispatchStats, bool, error)) {
		defer wg.Done()
		for i, m := range msgs {
			if ctx.Err() != nil {
				return
			}
			st, stop, err := send(ctx, m, msgs[i+1:], fresh)
			tick(m)
			mu.Lock()
			total.add(st)
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
			if err != nil || stop {
				return // a store error, or the sender cannot send now: keep the rest queued
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
	if total.Canceled+total.Failed+total.Expired+total.Review > 0 {
		e.kickReport()
	}
	if len(errs) > 0 {
		return total, errors.Join(errs...)
	}
	return total, ctx.Err()
}

// prepared is a due message checked and ready to be claimed, or the
// outcome that settled it before any claim.
type prepared struct {
	content storage.Content
	zone    string
	stats   DispatchStats
	stop    bool // the worker stops: its sender cannot send now
	done    bool // settled (or held) without a send
}

// prepare runs the checks every message passes right before its send: the
// kill switch, its sender's pause, its expiry, the participant's current
// data and the allowed hours. Anything that settles the message is stored
// here.
func (e *Engine) prepare(ctx context.Context, m storage.Message, rest []storage.Message, fresh *freshness) (prepared, error) {
	var p prepared
	log := e.msgLog(m)
	now := e.now()
	if why, err := e.held(ctx, m); err != nil || why != "" {
		if why != "" {
			log.WithField("why", why).Info("held: the kill switch is set")
			p.stats.Held, p.done = 1, true
		}
		return p, err
	}
	if !m.ExpiresAt.IsZero() && !now.Before(m.ExpiresAt) {
		log.Warn("not sent before it expired; it will not be sent late")
		p.stats.Expired, p.done = 1, true
		return p, e.Store.Expire(ctx, m.ID, "not sent before it expired", now)
	}
	c, zone, reason, err := e.recheck(ctx, m, rest, fresh)
	if errors.Is(err, errRetimed) {
		// The start date of a timed rule moved: the message now waits for
		// its new time.
		p.stats.Held, p.done = 1, true
		return p, nil
	}
	if err != nil {
		// REDCap could not be read: nothing can be checked, so nothing is
		// sent; the message waits.
		log.WithError(err).Warn("could not read the participant's current data; the message waits")
		p.stats.Held, p.done, p.stop = 1, true, true
		p.stats.problem("REDCap could not be read for project " + m.Project + " before sending")
		return p, nil
	}
	if reason != "" {
		log.WithField("reason", reason).Info("canceled: it no longer applies")
		p.stats.Canceled, p.done = 1, true
		if err := e.Store.Cancel(ctx, m.ID, reason, now); err != nil {
			return p, err
		}
		if why := addressFallback(reason); why != "" && m.Channel == storage.ChannelSMS {
			// The number was removed or spoiled since the text was
			// planned: the rule's email fallback stands in, as it would
			// have at plan time.
			return p, e.enqueueFallback(ctx, m, why)
		}
		return p, nil
	}
	if c.To != m.To {
		log.WithField("new_to", redact(c.To)).Info("the participant's address changed; sending to the new one")
	} else if c.Body != m.Body || c.Subject != m.Subject || c.HTML != m.HTML {
		log.Info("the participant's data changed the text; sending the current text")
	}
	if m.Channel == storage.ChannelSMS {
		out, err := e.Store.IsOptedOut(ctx, c.To)
		if err != nil {
			return p, err
		}
		if out {
			log.Info("canceled: the participant opted out")
			p.stats.Canceled, p.done = 1, true
			return p, e.Store.Cancel(ctx, m.ID, "opted out", now)
		}
		until, err := e.Store.NumberPausedUntil(ctx, c.To, now)
		if err != nil {
			return p, err
		}
		if !until.IsZero() {
			// The participant asked for a pause (a reply rule's pause): the
			// message waits until it ends, or expires meanwhile.
			p.done = true
			if !m.ExpiresAt.IsZero() && !until.Before(m.ExpiresAt) {
				log.Info("the participant paused their texts until after it expires; it will not be sent")
				p.stats.Expired = 1
				return p, e.Store.Expire(ctx, m.ID, "the participant paused their texts until after it expired", now)
			}
			log.WithField("not_before", until.Format(time.RFC3339)).Info("the participant paused their texts; held until the pause ends")
			p.stats.Held = 1
			return p, e.Store.Snooze(ctx, m.ID, "the participant paused their texts", now, until)
		}
	}
	if later, ok := e.outsideWindow(m, zone); ok {
		log.WithField("not_before", later.Format(time.RFC3339)).Info("outside the allowed hours now; held until they open")
		p.done = true
		if !m.ExpiresAt.IsZero() && !later.Before(m.ExpiresAt) {
			p.stats.Expired = 1
			return p, e.Store.Expire(ctx, m.ID, "the allowed hours ended before it could be sent", now)
		}
		return p, e.Store.Snooze(ctx, m.ID, "outside the allowed hours", now, later)
	}
	p.content, p.zone = c, zone
	return p, nil
}

// sendSMS sends one outbox row. The row is claimed (→ sending, with its
// checked recipient and text) in a committed transaction before Twilio is
// called, so a second worker or a crashed pass can never send it again
// blind. stop tells the worker to leave the rest of this sender's queue.
func (e *Engine) sendSMS(ctx context.Context, m storage.Message, rest []storage.Message, fresh *freshness) (DispatchStats, bool, error) {
	log := e.msgLog(m)
	if e.backingOff(m.From) {
		return DispatchStats{Held: 1}, true, nil
	}
	pause, probe, err := e.senderPause(ctx, m.From)
	if err != nil {
		return DispatchStats{}, false, err
	}
	if pause != nil && !probe {
		var st DispatchStats
		st.Held = 1
		st.problem(pauseProblem(*pause))
		return st, true, nil
	}
	p, err := e.prepare(ctx, m, rest, fresh)
	if err != nil || p.done {
		return p.stats, p.stop, err
	}
	c := p.content
	// Wait for the pacer first, then claim right before the create: a
	// process killed while it waits leaves the row queued, not "sending"
	// (a claimed row nobody can prove unsent is looked up for ten minutes
	// before it may go), and the claim's time, which seeds the next
	// process's pacer, is when the create went out.
	if e.Pacer != nil {
		if err := e.Pacer.Wait(ctx, m.From, max(c.Segments, 1)); err != nil {
			return DispatchStats{}, true, nil // cancelled before the claim: still queued
		}
	}
	if held, err := e.renewSending(ctx); err != nil || !held {
		// The lease was lost (this process stalled for a minute): another
		// process sends now. The row stays queued, unclaimed.
		return DispatchStats{}, true, err
	}
	later, capped, err := e.claimText(ctx, m, &c, p.zone)
	if err != nil {
		if errors.Is(err, storage.ErrNotClaimable) {
			return DispatchStats{}, false, nil // another worker has it
		}
		return DispatchStats{}, false, err
	}
	if capped != "" {
		return e.holdText(ctx, m, capped, later)
	}
	start := e.now()
	var validity time.Duration
	if !m.ExpiresAt.IsZero() {
		if validity = m.ExpiresAt.Sub(start); validity < time.Second {
			return DispatchStats{Expired: 1}, false, e.Store.Expire(ctx, m.ID, "not sent before it expired", start)
		}
	}
	// The create runs to its end even when ctx is cancelled (a shutdown):
	// an interrupted create is one nobody can tell was sent.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendBound)
	res, err := e.SMS.Send(sctx, m.From, c.To, c.Body, validity)
	cancel()
	if e.Pacer != nil {
		e.Pacer.Done(m.From, max(c.Segments, 1))
	}
	// The outcome is stored whatever happened to ctx meanwhile.
	ctx = context.WithoutCancel(ctx)
	now := e.now()
	if err == nil {
		if err := e.Store.MarkSent(ctx, m.ID, res.SID, res.Status, res.Segments, now); err != nil {
			return DispatchStats{}, false, err
		}
		e.senderOK(m.From)
		if res.From != "" && res.From != m.From {
			// Pacing and lookups go by the number asked for: a Messaging
			// Service that picks another one breaks both.
			log.WithFields(map[string]any{"sender": redact(m.From), "sent_from": redact(res.From)}).Warn(
				"Twilio sent from another number than nudge asked for: list only numbers of the Messaging Service's pool in the config")
		}
		if pause != nil {
			log.WithField("sender", pause.Sender).Info("the paused sender sent again; resuming it")
			if err := e.Store.ResumeSender(ctx, pause.Sender); err != nil {
				return DispatchStats{}, false, err
			}
		}
		log.WithFields(map[string]any{"sid": res.SID, "status": res.Status, "segments": res.Segments}).Info("sms sent")
		return DispatchStats{Sent: 1}, false, nil
	}
	var se *sms.Error
	if !errors.As(err, &se) {
		se = &sms.Error{Message: err.Error(), Kind: sms.Retryable, Err: err}
	}
	return e.smsFailed(ctx, m, c, se, start, now)
}

// holdText puts a text that may not go now (why: a cap, the allowed hours)
// back in the queue until later, or expires it when that is not before its
// expiry (later is zero).
func (e *Engine) holdText(ctx context.Context, m storage.Message, why string, later time.Time) (DispatchStats, bool, error) {
	log := e.msgLog(m).WithField("reason", why)
	now := e.now()
	if later.IsZero() {
		log.Info("held until after it expires; it will not be sent")
		return DispatchStats{Expired: 1}, false, e.Store.Expire(ctx, m.ID, why+"; not sent before it expired", now)
	}
	log.WithField("not_before", later.Format(time.RFC3339)).Info("held until it may go")
	return DispatchStats{Held: 1}, false, e.Store.Snooze(ctx, m.ID, why+"; planned for "+later.In(e.zone(m, "")).Format("2006-01-02 15:04 MST"), now, later)
}

// smsFailed applies the error policy (sms.Decide) to a create Twilio did
// not answer with a message.
func (e *Engine) smsFailed(ctx context.Context, m storage.Message, c storage.Content, se *sms.Error, start, now time.Time) (DispatchStats, bool, error) {
	pol := sms.Decide(se)
	log := e.msgLog(m).WithFields(map[string]any{"code": se.Code, "http_status": se.HTTPStatus, "action": pol.Action.String()})
	var st DispatchStats
	switch pol.Action {
	case sms.Settle:
		// Twilio may be in trouble: the sender backs off as after a 429,
		// so an outage does not leave the whole queue unsettled.
		wait := e.senderBackoff(m.From, se.RetryAfter)
		log.WithError(se).WithField("retry_in", wait.Round(time.Second).String()).Warn("Twilio did not answer the create; the message is looked up before anything is sent again, and the sender backs off")
		st.Unsettled = 1
		st.problem(fmt.Sprintf("Twilio did not answer creates from %s: %s", redact(m.From), se.Message))
		return st, true, e.Store.MarkAmbiguous(ctx, m.ID, "no answer from Twilio: "+se.Message, start)
	case sms.Backoff:
		wait := e.senderBackoff(m.From, se.RetryAfter)
		st.problem(fmt.Sprintf("Twilio could not take messages from %s: %s", redact(m.From), se.Message))
		if at := now.Add(wait); !m.ExpiresAt.IsZero() && !at.Before(m.ExpiresAt) {
			log.WithError(se).Warn("Twilio could not take the sms before it expired")
			st.Expired = 1
			return st, true, e.Store.Expire(ctx, m.ID, "Twilio could not take it before it expired: "+se.Message, now)
		}
		log.WithError(se).WithField("retry_in", wait.Round(time.Second).String()).Warn("Twilio could not take the sms now; the sender backs off")
		st.Retried = 1
		return st, true, e.Store.Snooze(ctx, m.ID, se.Message, now, now.Add(wait))
	case sms.PauseAccount, sms.PauseSender, sms.SlowSender:
		sender := m.From
		if pol.Action == sms.PauseAccount {
			sender = storage.AccountSender
		}
		reason := fmt.Sprintf("Twilio error %d: %s; %s", se.Code, maskedMessage(se), pol.Advice)
		if se.Code == 0 {
			reason = fmt.Sprintf("Twilio answered HTTP %d; %s", se.HTTPStatus, pol.Advice)
		}
		if err := e.pauseSender(ctx, sender, reason, se.Code, now); err != nil {
			return st, true, err
		}
		log.WithField("sender", redact(sender)).Error("sending paused: " + reason)
		st.Held = 1
		st.problem(pauseProblem(storage.SenderPause{Sender: sender, Reason: reason}))
		return st, true, e.Store.Snooze(ctx, m.ID, "sender paused: "+reason, now, now)
	case sms.Review:
		log.Warn("sms set aside for review: " + pol.Advice)
		st.Review = 1
		return st, false, e.Store.MarkReview(ctx, m.ID, se.Code, pol.Advice, now)
	}
	reason := fmt.Sprintf("%s; %s", maskedMessage(se), pol.Advice)
	st.Failed = 1
	if err := e.Store.MarkFailed(ctx, m.ID, se.Code, reason, now); err != nil {
		return st, false, err
	}
	switch pol.Action {
	case sms.BadNumber:
		log.Warn("sms refused: the number cannot get texts; it is flagged until REDCap holds another")
		if err := e.Store.FlagBadNumber(ctx, storage.BadNumber{Phone: c.To, Code: se.Code, Reason: pol.Advice, At: now}); err != nil {
			return st, false, err
		}
		return st, false, e.enqueueFallback(ctx, m, rules.FallbackInvalid)
	case sms.OptedOut:
		log.Warn("sms refused: the participant opted out at Twilio; recording the opt-out")
		return st, false, e.recordOptOut(ctx, c.To, fmt.Sprintf("twilio-%d", se.Code), now)
	}
	log.Warn("sms refused by Twilio: " + pol.Advice)
	return st, false, e.enqueueFallback(ctx, m, rules.FallbackFailed)
}

// maskedMessage is Twilio's message for an error with phone numbers masked.
func maskedMessage(se *sms.Error) string {
	return sms.MaskNumbers(se.Message)
}

// sendEmail hands one outbox row to the SMTP server. Its Message-ID is
// derived from the outbox key, so every attempt carries the same one.
func (e *Engine) sendEmail(ctx context.Context, m storage.Message, rest []storage.Message, fresh *freshness) (DispatchStats, bool, error) {
	log := e.msgLog(m)
	if e.backingOff("email") {
		return DispatchStats{Held: 1}, true, nil
	}
	p, err := e.prepare(ctx, m, rest, fresh)
	if err != nil || p.done {
		return p.stats, p.stop, err
	}
	c := p.content
	if err := e.Store.Claim(ctx, m.ID, e.now(), &c); err != nil {
		if errors.Is(err, storage.ErrNotClaimable) {
			return DispatchStats{}, false, nil
		}
		return DispatchStats{}, false, err
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendBound)
	id, err := e.Email.Send(sctx, email.Message{To: c.To, Subject: c.Subject, Text: c.Body, HTML: c.HTML,
		MessageID: email.MessageID(m.Key, m.From), Headers: map[string]string{"X-Nudge-Key": m.Key}})
	cancel()
	ctx = context.WithoutCancel(ctx)
	now := e.now()
	switch {
	case err == nil:
		if err := e.Store.MarkSent(ctx, m.ID, id, "accepted", 0, now); err != nil {
			return DispatchStats{}, false, err
		}
		e.senderOK("email")
		log.Info("email accepted by the SMTP server")
		return DispatchStats{Sent: 1}, false, nil
	case email.IsAmbiguous(err):
		log.WithError(err).Error("the SMTP server's answer to the email was lost; it may have been delivered, so it is not resent: check the mail server's log for its Message-ID")
		return DispatchStats{Review: 1}, false, e.Store.MarkReview(ctx, m.ID, 0,
			"the SMTP server may have accepted it (its final answer was lost): check the mail server's log for "+id+" before sending it again", now)
	case email.IsPermanent(err):
		log.WithError(err).Warn("email refused")
		return DispatchStats{Failed: 1}, false, e.Store.MarkFailed(ctx, m.ID, 0, err.Error(), now)
	}
	var st DispatchStats
	st.problem("the SMTP server could not take email: " + err.Error())
	wait := e.senderBackoff("email", 0)
	if at := now.Add(wait); !m.ExpiresAt.IsZero() && !at.Before(m.ExpiresAt) {
		st.Expired = 1
		return st, true, e.Store.Expire(ctx, m.ID, "the SMTP server could not take it before it expired: "+err.Error(), now)
	}
	log.WithError(err).Warn("email not accepted now; will retry")
	st.Retried = 1
	return st, true, e.Store.Snooze(ctx, m.ID, err.Error(), now, now.Add(wait))
}

// renewSending takes or renews the database-wide sending lease.
func (e *Engine) renewSending(ctx context.Context) (bool, error) {
	return e.Store.TryLock(ctx, "sending", e.owner(), senderLease, e.now())
}

// outsideWindow checks a message against its rule's allowed hours and,
// for a text, the study's quiet hours, in the participant's zone, at the
// moment of sending (a long queue or a slow pacer can push a send past the
// end of the window it was planned in) and says when they next open.
func (e *Engine) outsideWindow(m storage.Message, zone string) (time.Time, bool) {
	r := e.study().Rule(m.Rule)
	if r == nil {
		return time.Time{}, false // a staff notification
	}
	now := e.now()
	next, ok := r.NextAllowed(now, e.zone(m, zone), e.study().Config.QuietFor(r))
	if !ok {
		return time.Time{}, true // never: it expires
	}
	return next, next.After(now)
}

// zone is the participant's time zone for a message: the one rechecked
// right before the send, else the one it was planned in, else the study's.
func (e *Engine) zone(m storage.Message, zone string) *time.Location {
	if zone == "" {
		zone = m.Zone
	}
	if zone != "" {
		if loc, err := time.LoadLocation(zone); err == nil {
			return loc
		}
	}
	return e.study().Config.Location
}

// claimText claims a text for sending unless, now, it is outside its
// allowed hours (the pacer's wait may have carried it out of them) or the
// study's caps forbid another text to its number; then it says why and
// when it may go (zero: not before the message expires). The checks and
// the claim run under one lock, so two texts to one number in one pass
// (from two sending numbers, or queued back to back) never both pass the
// count.
func (e *Engine) claimText(ctx context.Context, m storage.Message, c *storage.Content, zone string) (later time.Time, why string, err error) {
	caps := e.study().Config.Caps
	r := e.study().Rule(m.Rule)
	if r == nil {
		return time.Time{}, "", e.Store.Claim(ctx, m.ID, e.now(), c) // a staff notification
	}
	e.capMu.Lock()
	defer e.capMu.Unlock()
	now := e.now()
	loc := e.zone(m, zone)
	quiet := e.study().Config.QuietFor(r)
	if !r.Allowed(now, loc, quiet) {
		// The pacer's wait carried the send out of the allowed hours.
		later, _ := r.NextAllowed(now, loc, quiet)
		if !m.ExpiresAt.IsZero() && !later.Before(m.ExpiresAt) {
			later = time.Time{}
		}
		return later, "outside the allowed hours", nil
	}
	if !caps.Active() {
		return time.Time{}, "", e.Store.Claim(ctx, m.ID, now, c)
	}
	texts, err := e.Store.Texts(ctx, c.To, now.Add(-8*24*time.Hour), false, "")
	if err != nil {
		return time.Time{}, "", err
	}
	ok, why := caps.Allows(now, loc, texts)
	if ok {
		return time.Time{}, "", e.Store.Claim(ctx, m.ID, now, c)
	}
	for t := now; m.ExpiresAt.IsZero() || t.Before(m.ExpiresAt); {
		t, _ = r.NextAllowed(rules.NextDay(t, loc), loc, quiet)
		if fits, _ := caps.Allows(t, loc, texts); fits && (m.ExpiresAt.IsZero() || t.Before(m.ExpiresAt)) {
			return t, why, nil
		}
		if m.ExpiresAt.IsZero() && t.After(now.Add(8*24*time.Hour)) {
			break
		}
	}
	return time.Time{}, why, nil
}

// held says why the kill switch holds a message ("" = it does not). A run
// report to the study team is never held: it is how they hear of the
// kill switch.
func (e *Engine) held(ctx context.Context, m storage.Message) (string, error) {
	if isReport(m) {
		return "", nil
	}
	ps, err := e.Store.Pauses(ctx)
	if err != nil {
		return "", err
	}
	for _, p := range ps {
		switch {
		case p.Scope == storage.PauseAll,
			p.Scope == storage.PauseProject && p.Name == m.Project,
			p.Scope == storage.PauseRule && p.Name == m.Rule:
			return pauseWords(p), nil
		}
	}
	return "", nil
}

// Held describes, in words, what holds sending back now: each setting of
// the kill switch and each paused sender (with why). /healthz and the run
// summary show it.
func (e *Engine) Held(ctx context.Context) ([]string, error) {
	ps, err := e.Store.Pauses(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range ps {
		out = append(out, pauseWords(p)+" (nudge resume lifts it)")
	}
	senders, err := e.Store.PausedSenders(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range senders {
		out = append(out, pauseProblem(p))
	}
	return out, nil
}

// pauseWords describes a kill-switch setting.
func pauseWords(p storage.Pause) string {
	s := "all sending is paused"
	if p.Scope != storage.PauseAll {
		s = fmt.Sprintf("%s %s is paused", p.Scope, p.Name)
	}
	if p.Reason != "" {
		s += ": " + p.Reason
	}
	return s
}

// pauseProblem describes a paused sender.
func pauseProblem(p storage.SenderPause) string {
	who := "sender " + redact(p.Sender)
	if p.Sender == storage.AccountSender {
		who = "the Twilio account"
	}
	return who + " is paused: " + p.Reason
}

// senderPause returns the pause holding a sending number (its own, or the
// account's), and whether this message may go as a probe: the pause's
// retry time has come, so one message is sent to see if the cause is gone.
func (e *Engine) senderPause(ctx context.Context, from string) (*storage.SenderPause, bool, error) {
	ps, err := e.Store.PausedSenders(ctx)
	if err != nil {
		return nil, false, err
	}
	for _, p := range ps {
		if p.Sender == from || p.Sender == storage.AccountSender {
			return &p, !e.now().Before(p.RetryAt), nil
		}
	}
	return nil, false, nil
}

// pauseSender pauses a sender (again), trying it next after a wait that
// grows with how long it has been paused.
func (e *Engine) pauseSender(ctx context.Context, sender, reason string, code int, now time.Time) error {
	since := now
	if ps, err := e.Store.PausedSenders(ctx); err == nil {
		for _, p := range ps {
			if p.Sender == sender {
				since = p.At
			}
		}
	}
	wait := min(max(now.Sub(since), pauseRetry), maxPauseRetry)
	return e.Store.PauseSender(ctx, storage.SenderPause{Sender: sender, Reason: reason, Code: code, At: since, RetryAt: now.Add(wait)})
}

// backoffState is a sender's run of temporary failures.
type backoffState struct {
	failures int
	until    time.Time // the sender sends nothing before then
}

// senderBackoff counts one more temporary failure of a sender and returns
// how long it waits: 30 s doubling to an hour, with ±20% jitter so that
// senders do not come back in step, and never less than Twilio's
// Retry-After. Until then the sender sends nothing: its queue waits.
func (e *Engine) senderBackoff(sender string, retryAfter time.Duration) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.backoffs == nil {
		e.backoffs = make(map[string]*backoffState)
	}
	b := e.backoffs[sender]
	if b == nil {
		b = &backoffState{}
		e.backoffs[sender] = b
	}
	b.failures++
	d := time.Duration(float64(backoff(b.failures)) * (0.8 + 0.4*rand.Float64()))
	d = max(d, retryAfter)
	b.until = e.now().Add(d)
	return d
}

// backingOff reports whether a sender waits after temporary failures.
func (e *Engine) backingOff(sender string) bool {
	e.mu.Lock()
	b := e.backoffs[sender]
	e.mu.Unlock()
	return b != nil && e.now().Before(b.until)
}

// senderOK clears a sender's temporary failures.
func (e *Engine) senderOK(sender string) {
	e.mu.Lock()
	delete(e.backoffs, sender)
	e.mu.Unlock()
}

// seedPacer starts each sending number's pacing from its last send as the
// database knows it, so a restart or a lease handover never sends the
// first text early.
func (e *Engine) seedPacer(ctx context.Context) error {
	if e.Pacer == nil {
		return nil
	}
	last, err := e.Store.LastSends(ctx)
	if err != nil {
		return err
	}
	for from, l := range last {
		e.Pacer.Seed(from, l.At, l.Segments)
	}
	return nil
}

// settleSending settles rows in "sending". An email row can only have been
// left there by a crash mid-send: nobody can tell whether the SMTP server
// took it, so it is set aside for review. An SMS row whose create went
// unanswered (or that a crash left behind) is looked up at Twilio after a
// settle delay, more than once: found, it is marked sent; resent only when
// settleLookups lookups, the last at least twilio.unanswered_resend_after after the attempt,
// found nothing.
func (e *Engine) settleSending(ctx context.Context) (DispatchStats, error) {
	var total DispatchStats
	rows, err := e.Store.Sending(ctx)
	if err != nil {
		return total, err
	}
	now := e.now()
	for _, m := range rows {
		if m.AmbiguousAt.IsZero() && now.Sub(m.UpdatedAt) < staleSending {
			continue // a worker may still be on it
		}
		if m.Channel == storage.ChannelEmail {
			if err := e.Store.MarkReview(ctx, m.ID, 0, "interrupted while handing it to the SMTP server: check the mail server's log before sending it again", now); err != nil {
				return total, err
			}
			total.Review++
			continue
		}
		if e.SMS == nil {
			continue
		}
		if m.AmbiguousAt.IsZero() {
			// Left by a crash: unanswered since its claim.
			m.AmbiguousAt = m.UpdatedAt
			if err := e.Store.MarkAmbiguous(ctx, m.ID, "left sending by an interrupted process", m.AmbiguousAt); err != nil {
				return total, err
			}
		}
		st, err := e.settleOne(ctx, m, now)
		total.add(st)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// settleTimes are when an unanswered create is first looked up, the least
// time between two lookups, and when lookups that found nothing prove it
// was never taken.
func (e *Engine) settleTimes() (first, gap, resend time.Duration) {
	first, resend = rules.DefaultLookupAfter, rules.DefaultResendAfter
	if t := e.study().Config.Twilio; t != nil && t.ResendAfter > 0 {
		first, resend = t.LookupAfter, t.ResendAfter
	}
	return first, (resend - first) / (settleLookups - 1), resend
}

// settleOne makes one lookup of an ambiguous SMS, when one is due.
func (e *Engine) settleOne(ctx context.Context, m storage.Message, now time.Time) (DispatchStats, error) {
	first, gap, resend := e.settleTimes()
	switch {
	case now.Before(m.AmbiguousAt.Add(first)):
		return DispatchStats{Unsettled: 1}, nil
	case m.Lookups > 0 && now.Before(m.UpdatedAt.Add(gap)):
		return DispatchStats{Unsettled: 1}, nil
	}
	log := e.msgLog(m)
	// A margin before the attempt for clocks that disagree.
	found, err := e.SMS.Find(ctx, m.From, m.To, m.AmbiguousAt.Add(-2*time.Minute))
	if err != nil {
		log.WithError(err).Warn("could not look up an unanswered sms; it stays unsettled")
		var st DispatchStats
		st.Unsettled = 1
		st.problem("Twilio could not be reached to look up unanswered messages: " + err.Error())
		return st, nil
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
			log.WithField("sid", f.SID).Info("the unanswered sms was found at Twilio; it is not sent again")
			if f.ErrorCode != 0 || storage.IsFinalStatus(f.Status) {
				changed, err := e.Store.RecordStatus(ctx, m.ID, f.Status, f.ErrorCode, now, "lookup")
				if err != nil && !errors.Is(err, storage.ErrUnknownStatus) {
					return DispatchStats{Sent: 1}, err
				}
				if changed {
					if err := e.fallbackAfterStatus(ctx, m, f.Status, f.ErrorCode); err != nil {
						return DispatchStats{Sent: 1}, err
					}
				}
			}
			return DispatchStats{Sent: 1}, nil
		}
	}
	if err := e.Store.CountLookup(ctx, m.ID, now); err != nil {
		return DispatchStats{}, err
	}
	if m.Lookups+1 < settleLookups || now.Before(m.AmbiguousAt.Add(resend)) {
		return DispatchStats{Unsettled: 1}, nil
	}
	if !m.ExpiresAt.IsZero() && !now.Before(m.ExpiresAt) {
		log.Warn("Twilio never took the unanswered sms, and it has expired; it is not sent")
		return DispatchStats{Expired: 1}, e.Store.Expire(ctx, m.ID, "Twilio never took it, and it expired", now)
	}
	log.Info("Twilio never took the unanswered sms (looked up several times); it goes back to the queue")
	return DispatchStats{Retried: 1}, e.Store.MarkRetry(ctx, m.ID, "Twilio never took it (not found by repeated lookups)", now, now)
}

// backoff is the wait before attempt n (1-based): 30 s, 1 min, 2 min, … capped at 1 h.
func backoff(n int) time.Duration {
	d := 30 * time.Second << max(n-1, 0)
	if d > time.Hour || d <= 0 {
		d = time.Hour
	}
	return d
}
