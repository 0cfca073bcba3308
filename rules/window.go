package rules

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nudge-study/nudge/rules/logic"
)

// Window is the local time of day messages may be sent: [From, To). A
// window with From after To runs across midnight (e.g. 22:00–06:00); a
// rule's window may do so only with overnight: true (the loader refuses it
// otherwise). The study's quiet hours are a Window too.
type Window struct {
	From, To  int  // minutes after local midnight
	Overnight bool // overnight: true was written
	// TimezoneField is the field holding the participant's IANA zone, as
	// written: bare (tz) or of another event ([enrollment_arm_1][tz]); the
	// zero Ref = the project's timezone_field, else the study zone.
	TimezoneField logic.Ref
	Pos           Pos
}

// String formats the window as "HH:MM-HH:MM".
func (w *Window) String() string {
	return formatClock(w.From) + "-" + formatClock(w.To)
}

func formatClock(m int) string {
	return fmt.Sprintf("%02d:%02d", m/60, m%60)
}

// Contains reports whether t falls inside the window in loc.
func (w *Window) Contains(t time.Time, loc *time.Location) bool {
	if w == nil {
		return true
	}
	if loc == nil {
		loc = time.UTC
	}
	t = t.In(loc)
	m := t.Hour()*60 + t.Minute()
	if w.From < w.To {
		return w.From <= m && m < w.To
	}
	return m >= w.From || m < w.To
}

// Next returns now when now is inside the window in loc, else the start of
// the next window. Window starts are wall-clock times, so they follow
// daylight-saving changes; a start that falls in a skipped hour becomes
// the moment the clock jumps (02:30 on a spring-forward day becomes 03:00).
func (w *Window) Next(now time.Time, loc *time.Location) time.Time {
	if w == nil || w.Contains(now, loc) {
		return now
	}
	if loc == nil {
		loc = time.UTC
	}
	y, mo, d := now.In(loc).Date()
	for i := 0; i < 3; i++ {
		start := time.Date(y, mo, d+i, w.From/60, w.From%60, 0, 0, loc)
		start = afterGap(start, time.Date(y, mo, d+i, w.From/60, w.From%60, 0, 0, time.UTC), loc)
		if start.After(now) {
			return start
		}
	}
	// Unreachable: a start on one of the next two days is always after now.
	return now
}

// End returns when the window that contains t (in loc) closes: for t
// outside the window, when the next one closes. Like starts, ends are
// wall-clock times.
func (w *Window) End(t time.Time, loc *time.Location) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	start := w.Next(t, loc).In(loc)
	y, mo, d := start.Date()
	if w.To <= w.From && start.Hour()*60+start.Minute() >= w.From {
		d++ // an overnight window closes the next morning
	}
	end := time.Date(y, mo, d, w.To/60, w.To%60, 0, 0, loc)
	return afterGap(end, time.Date(y, mo, d, w.To/60, w.To%60, 0, 0, time.UTC), loc)
}

// ExpiresAt is when a message of the rule due at due (in the participant's
// zone loc) stops being worth sending: due plus the rule's expires, or by
// default the end of the allowed hours it is due in, or a day after due
// for a rule without allowed hours.
func (r *Rule) ExpiresAt(due time.Time, loc *time.Location) time.Time {
	switch {
	case r.Expires > 0:
		return due.Add(r.Expires)
	case r.Window != nil:
		return r.Window.End(due, loc)
	}
	return due.Add(24 * time.Hour)
}

// afterGap corrects a start whose wall-clock time did not exist (a
// daylight-saving gap): time.Date then lands before the gap, and the first
// minute at or past the wanted wall-clock time is when the clock jumps.
// want is that wall-clock time written in UTC.
func afterGap(start, want time.Time, loc *time.Location) time.Time {
	wall := func(t time.Time) time.Time {
		t = t.In(loc)
		return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, time.UTC)
	}
	for i := 0; i < 24*60 && wall(start).Before(want); i++ {
		start = start.Add(time.Minute)
	}
	return start
}

// Location is the time zone the rule's hours apply in for one
// participant: the zone named in the rule's timezone field (its window's,
// else its project's timezone_field), or the study zone when the rule has
// no such field or it is blank. A value that is not an IANA zone name is an
// error (the participant is skipped with it); the error names the field,
// not its value.
//
// A bare field is read where ResolveTimezoneFields found it designated.
// Before that ran (no form-event mapping known), a bare field that is blank
// on the row's event but holds a value on another event is an error too:
// the zone lives elsewhere, and the study zone would be a guess.
//
// It is the zone of everything judged per participant: the rule's window,
// the study's quiet hours and the caps' local days, also for a rule
// without a window.
func (r *Rule) Location(scope *Scope, study *time.Location) (*time.Location, error) {
	ref, resolved := r.timezoneRef()
	if ref.Field == "" {
		return study, nil
	}
	v, _ := scope.Lookup(ref)
	v = strings.TrimSpace(v)
	if v == "" {
		if ref.Event == "" && !resolved {
			if ev := valueElsewhere(scope, ref.Field); ev != "" {
				return nil, fmt.Errorf("%s is blank on this event (%s) but holds a value on %s: the time zone is read from the rule's own event; "+
					"write timezone_field: \"[%s][%s]\" so the participant's zone is used", ref, scope.Row().Event, ev, ev, ref.Field)
			}
		}
		return study, nil
	}
	loc, err := loadZone(v)
	if err != nil {
		return nil, fmt.Errorf("%s does not hold an IANA time zone name: correct it in REDCap (e.g. America/Chicago) or clear it to use the study time zone", ref)
	}
	return loc, nil
}

// valueElsewhere is the first event other than the scope row's own whose
// rows hold a value of field, or "".
func valueElsewhere(scope *Scope, field string) string {
	own := scope.Row().Event
	for _, row := range scope.Record().Rows {
		if v, _ := row.Value(field); row.Event != own && strings.TrimSpace(v) != "" {
			return row.Event
		}
	}
	return ""
}

// zoneState is where ResolveTimezoneFields puts the reference a rule's
// bare timezone field resolves to. It is read by every plan and may be set
// again by a later check (a reload), so it is atomic.
type zoneState struct {
	ref atomic.Pointer[logic.Ref]
}

// timezoneRef is the reference the rule reads the participant's zone from:
// the resolved one when ResolveTimezoneFields has run (resolved), else the
// field as written.
func (r *Rule) timezoneRef() (ref logic.Ref, resolved bool) {
	if r.tz != nil {
		if p := r.tz.ref.Load(); p != nil {
			return *p, true
		}
	}
	if r.TimezoneField.Field == "" && r.Window != nil {
		return r.Window.TimezoneField, false
	}
	return r.TimezoneField, false
}

// resolveTimezone sets the reference the rule's timezone field is read from.
func (r *Rule) resolveTimezone(ref logic.Ref) {
	if r.tz == nil {
		return
	}
	r.tz.ref.Store(&ref)
}

// QuietFor is the study's quiet hours as they apply to a rule's messages:
// texts keep them, email is exempt (nil).
func (c *Config) QuietFor(r *Rule) *Window {
	if r == nil || r.Channel != ChannelSMS {
		return nil
	}
	return c.QuietHours
}

// Allowed reports whether a message of the rule may go out at t in the
// participant's zone loc: inside the rule's window and outside quiet.
func (r *Rule) Allowed(t time.Time, loc *time.Location, quiet *Window) bool {
	return r.Window.Contains(t, loc) && (quiet == nil || !quiet.Contains(t, loc))
}

// NextAllowed returns the first moment at or after t at which a message of
// the rule may go out in loc (see Allowed), and false when there is none
// (the rule's window lies wholly inside the quiet hours, which the loader
// refuses).
func (r *Rule) NextAllowed(t time.Time, loc *time.Location, quiet *Window) (time.Time, bool) {
	for i := 0; i < 8; i++ {
		t = r.Window.Next(t, loc)
		if quiet == nil || !quiet.Contains(t, loc) {
			return t, true
		}
		t = quiet.End(t, loc)
	}
	return t, false
}

// sendableMinutes reports whether some minute of the day lies inside w (nil
// = every minute) and outside quiet.
func sendableMinutes(w, quiet *Window) bool {
	day := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for m := 0; m < 24*60; m++ {
		t := day.Add(time.Duration(m) * time.Minute)
		if w.Contains(t, time.UTC) && (quiet == nil || !quiet.Contains(t, time.UTC)) {
			return true
		}
	}
	return false
}

// Caps limit the texts one phone number gets, across every rule and
// project. A day is the participant's local calendar day; a week is the
// seven local days ending with that day. 0 = no limit.
type Caps struct {
	PerDay, PerWeek int
	Pos             Pos
}

// Active reports whether any cap is set.
func (c Caps) Active() bool { return c.PerDay > 0 || c.PerWeek > 0 }

// Allows reports whether one more text at t fits the caps, given the times
// of the other texts counted for the same number, all judged in the
// participant's zone loc; when it does not, the reason names the cap.
func (c Caps) Allows(t time.Time, loc *time.Location, texts []time.Time) (bool, string) {
	if !c.Active() {
		return true, ""
	}
	day := LocalDay(t, loc)
	var today, week int
	for _, x := range texts {
		d := LocalDay(x, loc)
		if d == day {
			today++
		}
		if d <= day && d > day-7 {
			week++
		}
	}
	switch {
	case c.PerDay > 0 && today >= c.PerDay:
		return false, "cap reached: " + plural(c.PerDay, "text") + " a day"
	case c.PerWeek > 0 && week >= c.PerWeek:
		return false, "cap reached: " + plural(c.PerWeek, "text") + " in 7 days"
	}
	return true, ""
}

// NextDay is the start of the local calendar day after t's in loc (the
// first moment of that day when midnight itself is skipped by a
// daylight-saving change).
func NextDay(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	start := time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	return afterGap(start, time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC), loc)
}

// LocalDay numbers the calendar day t falls on in loc (days since
// 1970-01-01), so that days compare and subtract whatever their length.
func LocalDay(t time.Time, loc *time.Location) int {
	y, m, d := t.In(loc).Date()
	return int(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
