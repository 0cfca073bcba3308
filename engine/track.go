package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/storage"
)

const (
	// giveUpTracking is when a message that never reached a final status
	// stops being polled: some carriers never confirm delivery.
	giveUpTracking = 72 * time.Hour
	trackBatch     = 1000
)

// TrackStats counts what one tracking sweep did.
type TrackStats struct {
	Polled, Changed, Final int
}

// Track polls Twilio once for every sent SMS whose next poll is due and
// stores each status change. A message is polled again after a delay that
// grows with its age (1 s for a fresh message, up to 1 h), and no more once
// its status is final. A message without a final status 72 h after it was
// sent — because the carrier never confirmed it, or because every poll
// failed — gets nudge's final status "unknown", which is written back. A
// status nudge does not know is logged and skipped for that message only.
// A retention sweep (Retain) follows each tracking sweep that succeeded.
func (e *Engine) Track(ctx context.Context) (TrackStats, error) {
	st, err := e.track(ctx)
	if err == nil {
		e.retainAfterTrack(ctx)
	}
	return st, err
}

func (e *Engine) track(ctx context.Context) (TrackStats, error) {
	var st TrackStats
	if e.SMS == nil {
		return st, nil
	}
	now := e.now()
	rows, err := e.Store.Tracking(ctx, "sms", now, trackBatch)
	if err != nil {
		return st, err
	}
	for _, m := range rows {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		log := e.log().WithField("sid", m.SID)
		got, err := e.SMS.Fetch(ctx, m.SID)
		now = e.now()
		st.Polled++
		age := now.Sub(m.SentAt)
		if age >= giveUpTracking && (err != nil || !storage.IsFinalStatus(got.Status)) {
			log.WithField("last_status", m.Status).Warn("no final status after the tracking time; recording unknown")
			if _, err := e.Store.RecordStatus(ctx, m.ID, storage.StatusUnknown, 0, now, "poll"); err != nil {
				return st, err
			}
			st.Changed++
			st.Final++
			continue
		}
		if err != nil {
			log.WithError(err).Warn("status poll failed; will try again")
			if err := e.Store.SetNextPoll(ctx, m.ID, now.Add(pollDelay(age))); err != nil {
				return st, err
			}
			continue
		}
		changed, err := e.Store.RecordStatus(ctx, m.ID, got.Status, got.ErrorCode, now, "poll")
		switch {
		case errors.Is(err, storage.ErrUnknownStatus):
			log.WithField("status", got.Status).Warn("Twilio reported a status nudge does not know; skipped for this message")
		case err != nil:
			return st, err
		case changed:
			st.Changed++
			log.WithFields(map[string]any{"status": got.Status, "error_code": got.ErrorCode}).Info("sms status changed")
			if err := e.afterStatus(ctx, m, got.Status, got.ErrorCode); err != nil {
				return st, err
			}
		}
		if storage.IsFinalStatus(got.Status) {
			st.Final++
			continue
		}
		if err := e.Store.SetNextPoll(ctx, m.ID, now.Add(pollDelay(age))); err != nil {
			return st, err
		}
	}
	return st, nil
}

// afterStatus applies the error policy to a message that ended with an
// error code (sms.DecideStatus): a bad number is flagged, carrier filtering
// sets the message aside for review, an unregistered or overloaded sender
// is paused. An undelivered or failed text queues the rule's email
// fallback (see fallbackAfterStatus).
func (e *Engine) afterStatus(ctx context.Context, m storage.Message, status string, code int) error {
	if err := e.fallbackAfterStatus(ctx, m, status, code); err != nil {
		return err
	}
	if code == 0 || !storage.IsFinalStatus(status) {
		return nil
	}
	pol, ok := sms.DecideStatus(code)
	if !ok {
		return nil
	}
	now := e.now()
	log := e.msgLog(m).WithFields(map[string]any{"code": code, "action": pol.Action.String()})
	switch pol.Action {
	case sms.BadNumber:
		log.Warn("the number cannot get texts; it is flagged until REDCap holds another")
		return e.Store.FlagBadNumber(ctx, storage.BadNumber{Phone: m.To, Code: code, Reason: pol.Advice, At: now})
	case sms.Review:
		log.Warn("set aside for review: " + pol.Advice)
		return e.Store.MarkReview(ctx, m.ID, code, pol.Advice, now)
	case sms.PauseSender, sms.SlowSender:
		reason := fmt.Sprintf("Twilio error %d: %s", code, pol.Advice)
		log.WithField("sender", redact(m.From)).Error("sending paused: " + reason)
		return e.pauseSender(ctx, m.From, reason, code, now)
	}
	return nil
}

// pollDelay is how long to wait before polling a message of the given age
// again: a quarter of its age, between 1 s and 1 h.
func pollDelay(age time.Duration) time.Duration {
	return min(max(age/4, time.Second), time.Hour)
}
