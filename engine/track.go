package engine

import (
	"context"
	"time"

	"github.com/nudge-study/nudge/engine/sms"
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
// its status is final or it is older than 72 h.
func (e *Engine) Track(ctx context.Context) (TrackStats, error) {
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
		got, err := e.SMS.Fetch(ctx, m.SID)
		now = e.now()
		st.Polled++
		if err != nil {
			e.log().WithError(err).WithField("sid", m.SID).Warn("status poll failed; will try again")
			if err := e.Store.SetNextPoll(ctx, m.ID, now.Add(pollDelay(now.Sub(m.SentAt)))); err != nil {
				return st, err
			}
			continue
		}
		changed, err := e.Store.RecordStatus(ctx, m.ID, got.Status, got.ErrorCode, now, "poll")
		if err != nil {
			return st, err
		}
		if changed {
			st.Changed++
			e.log().WithFields(map[string]any{"sid": m.SID, "status": got.Status, "error_code": got.ErrorCode}).Info("sms status changed")
		}
		if sms.IsFinal(got.Status) {
			st.Final++
			continue
		}
		next := time.Time{} // zero: stop polling
		if age := now.Sub(m.SentAt); age < giveUpTracking {
			next = now.Add(pollDelay(age))
		}
		if err := e.Store.SetNextPoll(ctx, m.ID, next); err != nil {
			return st, err
		}
	}
	return st, nil
}

// pollDelay is how long to wait before polling a message of the given age
// again: a quarter of its age, between 1 s and 1 h.
func pollDelay(age time.Duration) time.Duration {
	return min(max(age/4, time.Second), time.Hour)
}
