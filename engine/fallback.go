package engine

import (
	"context"
	"strings"
	"time"

	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// fallback decides the email fallback of an SMS rule for a selected row
// whose number is missing or invalid; smsWhy is why no text can go. ok is
// false when the rule has no fallback for that reason: the row is then
// skipped as usual. The email is planned like a message of the rule itself
// (same occurrence, repeat schedule, allowed hours and expiry) under the
// text's key plus rules.FallbackKeySuffix, so the occurrence has one
// message either way and never both a text and an email planned at once.
func (pl *planner) fallback(r *rules.Rule, rec *rules.Record, d rules.Decision, snap *Snapshot, smsWhy string) (Decision, bool) {
	why := rules.FallbackInvalid
	if strings.TrimSpace(d.To) == "" {
		why = rules.FallbackMissing
	}
	if !r.Fallback.Applies(why) {
		return Decision{}, false
	}
	fr := r.FallbackRule()
	raw, _ := pl.passes[r.Project].Scope(rec, d.Row, pl.now).Lookup(r.Fallback.To)
	d.To = raw
	out := pl.decide(fr, rec, d, snap)
	if !fr.Timed() && out.Message != nil {
		// A timed rule's keys carry the suffix already (timedKey).
		out.Message.Key += rules.FallbackKeySuffix
	}
	switch out.Outcome {
	case Send:
		out.Reason = smsWhy + "; email fallback " + out.Reason
	case Deferred:
		out.Reason = smsWhy + "; email fallback to " + redact(out.Message.To) + ", " + out.Reason
	case Skipped:
		out.Reason = smsWhy + "; no email fallback: " + out.Reason
	default:
		out.Reason = smsWhy + "; " + out.Reason
	}
	return out, true
}

// fallbackAfterStatus queues the email fallback of an SMS that reached a
// final status: undelivered or failed, unless the error code says the
// participant opted out or a person must look first (carrier filtering).
// Delivered, canceled, expired and unknown never fall back.
func (e *Engine) fallbackAfterStatus(ctx context.Context, m storage.Message, status string, code int) error {
	why := ""
	switch status {
	case "undelivered":
		why = rules.FallbackUndelivered
	case "failed":
		why = rules.FallbackFailed
	default:
		return nil
	}
	if pol, ok := sms.DecideStatus(code); code != 0 && ok && (pol.Action == sms.Review || pol.Action == sms.OptedOut) {
		return nil
	}
	return e.enqueueFallback(ctx, m, why)
}

// enqueueFallback queues the email fallback of an SMS that could not be
// sent or did not arrive (why: a rules.Fallback* reason), once: its key is
// the text's plus rules.FallbackKeySuffix, so a second status, a second
// poll or a restart finds it queued already. It is worked out from the
// participant's current data (the rule's condition, the email address,
// the text) like any queued message right before its send, and checked
// again then. When it cannot be sent (the condition is false now, no email
// address) it is stored skipped, with the reason, and never sent.
func (e *Engine) enqueueFallback(ctx context.Context, m storage.Message, why string) error {
	r := e.study().Rule(m.Rule)
	if m.Channel != storage.ChannelSMS || rules.IsFallbackKey(m.Key) || isNotification(m) || r == nil ||
		r.Channel != rules.ChannelSMS || !r.Fallback.Applies(why) {
		return nil
	}
	now := e.now()
	loc := e.study().Config.Location
	if m.Zone != "" {
		if l, err := time.LoadLocation(m.Zone); err == nil {
			loc = l
		}
	}
	due := now
	if r.Window != nil {
		due = r.Window.Next(now, loc)
	}
	from := ""
	if c := e.study().Config.SMTP; c != nil {
		from = c.From
	}
	fm := storage.Message{Key: m.Key + rules.FallbackKeySuffix, Project: m.Project, Rule: m.Rule, Record: m.Record,
		Event: m.Event, Instrument: m.Instrument, Instance: m.Instance, Occurrence: m.Occurrence, OncePer: m.OncePer,
		Channel: storage.ChannelEmail, From: from, Zone: m.Zone, State: storage.StatePlanned,
		NotBefore: due, ExpiresAt: r.ExpiresAt(due, loc), CreatedAt: now}
	log := e.msgLog(fm).WithField("why", why)
	c, _, reason, err := e.recheck(ctx, fm, nil, &freshness{e: e})
	switch {
	case err != nil:
		// REDCap could not be read now: the email is queued to the field,
		// and its address and text are read before it is sent (as for
		// every message), or it is canceled then.
		log.WithError(err).Warn("could not read the participant's current data for the email fallback; it is checked before it is sent")
		fm.To = r.Fallback.To.String()
	case reason != "":
		fm.State, fm.Reason, fm.To = storage.StateSkipped, "email fallback not sent: "+reason, ""
	default:
		fm.To, fm.Subject, fm.Body, fm.HTML = c.To, c.Subject, c.Body, c.HTML
	}
	inserted, err := e.Store.Enqueue(ctx, &fm)
	switch {
	case err != nil:
		return err
	case !inserted:
		return nil // queued before: a repeated status, poll or restart
	case fm.State == storage.StateSkipped:
		log.WithField("reason", reason).Info("the text did not arrive; no email fallback")
	default:
		log.Info("the text did not arrive; email fallback queued")
	}
	return nil
}

// How the reasons of a text without a usable number begin (see
// planner.address), so that a text canceled for one right before it was
// sent falls back to email like one planned without a number.
const (
	reasonNoPhone      = "no phone number in "
	reasonBadPhone     = "invalid phone number in "
	reasonFlaggedPhone = "Twilio reported the number in "
)

// addressFallback is the fallback reason (rules.FallbackMissing or
// rules.FallbackInvalid) of a cancel reason saying the text has no usable
// number, or "".
func addressFallback(reason string) string {
	switch {
	case strings.HasPrefix(reason, reasonNoPhone):
		return rules.FallbackMissing
	case strings.HasPrefix(reason, reasonBadPhone), strings.HasPrefix(reason, reasonFlaggedPhone):
		return rules.FallbackInvalid
	}
	return ""
}
