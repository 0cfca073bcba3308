package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// PlanHorizon is how far ahead the occurrences of timed rules (start,
// every) are planned: each pass queues those due within it, with NotBefore
// their due time, so that `nudge serve` sends them on the minute and a
// `nudge run` at that minute finds them due.
const PlanHorizon = 24 * time.Hour

// errRetimed tells prepare that recheck moved a timed message to its new
// due time: nothing is sent now.
var errRetimed = errors.New("re-timed")

// loadTimed reads the stored messages of the timed rules among active, by
// key, once per pass.
func (pl *planner) loadTimed(ctx context.Context, active []*rules.Rule) error {
	byProject := map[string][]string{}
	for _, r := range active {
		if r.Timed() {
			byProject[r.Project] = append(byProject[r.Project], r.Name)
		}
	}
	if len(byProject) == 0 {
		return nil
	}
	keys, err := pl.e.Store.KeysOfRules(ctx, byProject)
	pl.timedKeys = keys
	pl.timedOther = map[string][]string{}
	for k := range keys {
		if base, _ := splitOncePer(k); base != k {
			pl.timedOther[base] = append(pl.timedOther[base], k)
		}
	}
	return err
}

// splitOncePer splits a timed message key into the key without its
// once_per part and the once_per digest ("" when it has none). Keys are
// project/rule/record/event/instance[/v<digest>]/occurrence[/r][/email],
// each part path-escaped, so the sixth part is the digest when it starts
// with v.
func splitOncePer(key string) (base, digest string) {
	parts := strings.Split(key, "/")
	if len(parts) < 7 || !strings.HasPrefix(parts[5], "v") {
		return key, ""
	}
	return strings.Join(append(parts[:5:5], parts[6:]...), "/"), strings.TrimPrefix(parts[5], "v")
}

// wentOut reports whether a stored message was, or may have been, sent.
func wentOut(s storage.State) bool {
	return !s.Queued() && s != storage.StateCanceled && s != storage.StateExpired && s != storage.StateSkipped
}

// storedOtherValue finds a stored message of the same occurrence under
// another once_per part of its key (value: the digest now; "" = the rule
// has no once_per). With once_per, a message sent before the rule had it
// counts for every value (nudge cannot know which it was for); one for
// another value does not (a moved visit gets its own reminder). Without
// once_per, a message of any value counts: removing once_per never sends
// an occurrence again. A queued one stays queued and follows the rule as
// it is now when it goes.
func (pl *planner) storedOtherValue(key, value string) (storage.KeyState, bool) {
	base, _ := splitOncePer(key)
	if value != "" {
		k, ok := pl.timedKeys[base]
		return k, ok && wentOut(k.State)
	}
	for _, other := range pl.timedOther[base] {
		if k := pl.timedKeys[other]; wentOut(k.State) || k.State.Queued() {
			return k, true
		}
	}
	return storage.KeyState{}, false
}

// timedSlot is when one message of a timed rule may go out and until when:
// occurrence occs[i], or its reminder.
type timedSlot struct {
	occ       rules.Occurrence
	reminder  bool
	notBefore time.Time
	expiresAt time.Time
}

// slot works out occurrence occs[i]'s (or its reminder's) send time:
// its due time, moved into the allowed hours if needed, and its expiry.
func slot(r *rules.Rule, occs []rules.Occurrence, i int, reminder bool, loc *time.Location) timedSlot {
	due := occs[i].Due
	if reminder {
		due = due.Add(r.Remind.After)
	}
	s := timedSlot{occ: occs[i], reminder: reminder, notBefore: due}
	if r.Window != nil {
		s.notBefore = r.Window.Next(due, loc)
	}
	s.expiresAt = r.ExpiresAtTimed(s.notBefore, rules.NextDue(occs, i), loc)
	return s
}

// describe says which message a slot is, for reasons.
func (s timedSlot) describe(loc *time.Location) string {
	if s.reminder {
		return fmt.Sprintf("reminder for occurrence %d of %d, due %s", s.occ.N, s.occ.Total, s.notBefore.In(loc).Format("2006-01-02 15:04 MST"))
	}
	o := s.occ
	o.Due = s.notBefore
	return o.Describe(loc)
}

// timedKey is the outbox key of occurrence n of a timed rule for a row:
// the ordinary key with n as its occurrence part (and value, the digest
// of the once_per field, when the rule has one); a reminder's ends in /r.
func timedKey(r *rules.Rule, rec *rules.Record, row *rules.Row, value string, n int, reminder bool) string {
	k := messageKey(r.Project, r.Name, rec.ID, r.KeyEvent(row), row.Instance, value, n)
	if reminder {
		k += "/r"
	}
	if r.IsFallback {
		// The email that stands in for the text has the text's key plus
		// the suffix, for each occurrence and reminder alike.
		k += rules.FallbackKeySuffix
	}
	return k
}

// occurrenceScope is the scope occurrence n of a timed rule is read and
// written in: the row the rule selected, or with every.instrument that
// instrument's instance n on the row's event (an empty instance when
// REDCap has none yet, whose other fields come from the base row).
func occurrenceScope(r *rules.Rule, rec *rules.Record, row *rules.Row, n int, now time.Time, missing []string) (*rules.Scope, *rules.Row) {
	if r.Every == nil || r.Every.Instrument == "" {
		return rules.NewScope(rec, row, now, missing), row
	}
	for _, x := range rec.Rows {
		if x.Event == row.Event && x.RepeatInstrument == r.Every.Instrument && x.Instance == n {
			return rules.NewScope(rec, x, now, missing), x
		}
	}
	inst := &rules.Row{Event: row.Event, RepeatInstrument: r.Every.Instrument, Instance: n, Values: map[string]string{}}
	withInst := &rules.Record{ID: rec.ID, Rows: append(append([]*rules.Row(nil), rec.Rows...), inst)}
	return rules.NewScope(withInst, inst, now, missing), inst
}

// decideTimed plans a timed rule's messages for one selected row: each
// occurrence (and reminder) due within PlanHorizon that has no message
// yet is queued with NotBefore its due time; a queued one whose time
// changed (the start date moved) is re-timed; one whose expiry has passed
// is missed, never sent late. Stored occurrences are never planned again.
func (pl *planner) decideTimed(r *rules.Rule, rec *rules.Record, d rules.Decision, snap *Snapshot, out Decision, to string) Decision {
	row := d.Row
	scope := pl.passes[r.Project].Scope(rec, row, pl.now)
	loc, err := r.Location(scope, pl.e.study().Config.Location)
	if err != nil {
		out.Outcome, out.Reason = Skipped, err.Error()
		return out
	}
	occs, err := r.Occurrences(scope, loc)
	if err != nil {
		out.Outcome, out.Reason = Skipped, err.Error()
		return out
	}
	// With once_per, each value of the field (each visit date) has its own
	// messages: a value already messaged is never messaged again.
	value, reason := r.OncePerDigest(rules.NewScope(rec, row, pl.now, snap.Missing))
	if reason != "" {
		out.Outcome, out.Reason = Skipped, reason
		return out
	}
	var (
		planned          []*storage.Message
		firstPlanned     string
		queued, next     string
		missed, lastDone time.Time
		missedWhy        string
		heldWhy          string // why a new occurrence cannot go before it expires (caps, quiet hours, a pause)
		done             int
		promptMissed     bool // the prompt considered last was missed
	)
	horizon := pl.now.Add(PlanHorizon)
	consider := func(i int, reminder bool) (stop bool) {
		s := slot(r, occs, i, reminder, loc)
		key := timedKey(r, rec, row, value, s.occ.N, reminder)
		k, stored := pl.timedKeys[key]
		if !stored && r.IsFallback {
			// An occurrence whose text is stored is not emailed as well.
			k, stored = pl.timedKeys[strings.TrimSuffix(key, rules.FallbackKeySuffix)]
		}
		other := false
		if !stored {
			k, stored = pl.storedOtherValue(key, value)
			other = stored
		}
		switch {
		case other && k.State.Queued():
			// Queued under the rule's former once_per: checked against the
			// rule as it is now right before it goes.
			if queued == "" {
				queued = s.describe(loc) + ", is queued"
			}
			return false
		case stored && !k.State.Queued():
			done++
			lastDone = s.notBefore
			return false
		case stored && k.ExpiresAt.Equal(s.expiresAt):
			// Queued for this slot (a snooze may have moved its NotBefore).
			if queued == "" {
				queued = s.describe(loc) + ", is queued"
			}
			return false
		case reminder && promptMissed:
			return false // no reminder of a prompt never sent
		case !stored && !s.expiresAt.After(pl.now):
			promptMissed = !reminder
			missed = s.notBefore
			missedWhy = fmt.Sprintf("missed: %s and expired %s", s.describe(loc), s.expiresAt.In(loc).Format("2006-01-02 15:04 MST"))
			return false
		case s.notBefore.After(horizon):
			if next == "" {
				next = "next: " + s.describe(loc)
			}
			return true
		}
		// New, or queued for another time: planned now (a stored key is
		// re-timed when enqueued, never inserted twice).
		oscope, orow := occurrenceScope(r, rec, row, s.occ.N, pl.now, snap.Missing)
		if reminder && !stored {
			if skip, err := r.Remind.Skip(oscope); err != nil || skip {
				return false // done already (or unreadable): no reminder
			}
		}
		notBefore, why := pl.timedWhen(r, loc, to, key, s)
		if !notBefore.Before(s.expiresAt) {
			// Tried again at the next pass; missed once it expires.
			if heldWhy == "" {
				heldWhy = fmt.Sprintf("%s: %s; the first time it may go out is after it would expire", s.describe(loc), why)
			}
			return false
		}
		c, reason := pl.content(r, oscope, to)
		if reason != "" {
			out.Outcome, out.Reason = Skipped, reason
			return true
		}
		m := &storage.Message{
			Key: key, Project: r.Project, Rule: r.Name, Record: rec.ID, Event: row.Event,
			Instrument: orow.RepeatInstrument, Instance: orow.Instance, Occurrence: s.occ.N, OncePer: value,
			Channel: r.Channel, To: c.To, From: pl.sender(r, c.To), Subject: c.Subject, Body: c.Body, HTML: c.HTML,
			Segments: c.Segments, State: storage.StatePlanned, NotBefore: notBefore, ExpiresAt: s.expiresAt,
			Zone: loc.String(), CreatedAt: pl.now, Retime: true,
		}
		planned = append(planned, m)
		if r.Channel == rules.ChannelSMS {
			// Counted for the caps of the rules planned after this one.
			pl.planned[to] = append(pl.planned[to], notBefore)
		}
		if firstPlanned == "" {
			firstPlanned = s.describe(loc)
			if why != "" {
				firstPlanned += fmt.Sprintf(" (%s; planned for %s)", why, notBefore.In(loc).Format("2006-01-02 15:04 MST"))
			}
			if stored {
				firstPlanned += " (re-timed: the start date changed)"
			}
		}
		return false
	}
	for i := range occs {
		promptMissed = false
		if consider(i, false) {
			break
		}
		if r.Remind != nil && consider(i, true) {
			break
		}
	}
	if out.Outcome == Skipped {
		return out
	}
	switch {
	case len(planned) > 0:
		out.Message, out.More = planned[0], planned[1:]
		out.Outcome, out.Reason = Send, firstPlanned
		if planned[0].NotBefore.After(pl.now) {
			out.Outcome = Deferred
		}
		if len(planned) > 1 {
			out.Reason += fmt.Sprintf(" (and %d more within %s)", len(planned)-1, PlanHorizon)
		}
		out.Reason += "; to " + redact(to)
	case heldWhy != "":
		out.Outcome, out.Reason = Skipped, joinReasons(heldWhy, queued, next)
	case !missed.IsZero() && missed.After(lastDone):
		out.Outcome, out.Reason = Skipped, joinReasons(missedWhy, queued, next)
	case queued != "" || next != "":
		out.Outcome, out.Reason = Done, joinReasons(queued, next)
	default:
		out.Outcome, out.Reason = Done, fmt.Sprintf("all %d occurrences are past (%d sent or settled)", len(occs), done)
	}
	return out
}

// timedWhen is when a timed rule's slot may go out: its due time, for a
// text moved past a pause the participant asked for, out of the study's
// quiet hours and within the caps, as the dispatcher will check again
// right before the send. A time at or past s.expiresAt means it cannot go
// in time; why says what moved it.
func (pl *planner) timedWhen(r *rules.Rule, loc *time.Location, to, key string, s timedSlot) (time.Time, string) {
	t := s.notBefore
	if r.Channel != rules.ChannelSMS {
		return t, ""
	}
	cfg := pl.e.study().Config
	quiet := cfg.QuietFor(r)
	why := ""
	if until := pl.paused[to]; until.After(t) {
		t, why = until, "the participant paused their texts"
	}
	if next, _ := r.NextAllowed(t, loc, quiet); next.After(t) {
		t = next
		if why == "" {
			why = "in the study's quiet hours " + quiet.String()
		}
	}
	if !cfg.Caps.Active() {
		return t, why
	}
	texts := append(pl.capTexts(to, key), pl.planned[to]...)
	for t.Before(s.expiresAt) {
		ok, capWhy := cfg.Caps.Allows(t, loc, texts)
		if ok {
			break
		}
		why = capWhy
		t, _ = r.NextAllowed(rules.NextDay(t, loc), loc, quiet)
	}
	return t, why
}

func joinReasons(parts ...string) string {
	s := ""
	for _, p := range parts {
		if p == "" {
			continue
		}
		if s != "" {
			s += "; "
		}
		s += p
	}
	return s
}

// recheckTimed checks a queued message of a timed rule against the
// participant's current data: its occurrence must still be in the
// schedule at the time it was planned for. When the start date moved, the
// message follows: to its new time (errRetimed: nothing is sent now), or,
// if that time is already past its expiry, it is canceled as missed. A
// reminder is canceled when its unless condition is now true. It returns
// the scope to render the message in.
func (e *Engine) recheckTimed(ctx context.Context, r *rules.Rule, m storage.Message, rec *rules.Record, row *rules.Row,
	loc *time.Location, now time.Time, missing []string) (*rules.Scope, string, error) {
	scope := rules.NewScope(rec, row, now, missing)
	occs, err := r.Occurrences(scope, loc)
	if err != nil {
		return nil, err.Error(), nil
	}
	i := m.Occurrence - 1
	if i < 0 || i >= len(occs) {
		return nil, fmt.Sprintf("the rule's schedule no longer has occurrence %d", m.Occurrence), nil
	}
	reminder := storage.IsReminderKey(strings.TrimSuffix(m.Key, rules.FallbackKeySuffix))
	if reminder && r.Remind == nil {
		return nil, "the rule no longer sends reminders", nil
	}
	s := slot(r, occs, i, reminder, loc)
	if !s.expiresAt.Equal(m.ExpiresAt) {
		// The schedule moved (a new start date, a changed rule).
		switch {
		case !s.expiresAt.After(now):
			return nil, fmt.Sprintf("missed: %s and expired %s (the start date changed)", s.describe(loc),
				s.expiresAt.In(loc).Format("2006-01-02 15:04 MST")), nil
		case s.notBefore.After(now):
			if err := e.Store.Retime(ctx, m.ID, s.notBefore, s.expiresAt, now); err != nil {
				return nil, "", err
			}
			e.msgLog(m).WithField("not_before", s.notBefore.Format(time.RFC3339)).Info("the start date changed; re-timed")
			return nil, "", errRetimed
		}
		// Due at the new time already and not expired: sent now, with the
		// new expiry stored.
		if err := e.Store.Retime(ctx, m.ID, now, s.expiresAt, now); err != nil {
			return nil, "", err
		}
	}
	oscope, _ := occurrenceScope(r, rec, row, m.Occurrence, now, missing)
	if reminder {
		skip, err := r.Remind.Skip(oscope)
		switch {
		case err != nil:
			return nil, "remind.unless can no longer be evaluated: " + err.Error(), nil
		case skip:
			return nil, fmt.Sprintf("no reminder needed: remind.unless is true for occurrence %d", m.Occurrence), nil
		}
	}
	return oscope, "", nil
}
