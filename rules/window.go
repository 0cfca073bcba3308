package rules

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nudge-study/nudge/rules/logic"
)

// Window is the local time of day messages may be sent: [From, To). A
// window with From after To runs across midnight (e.g. 22:00–06:00).
type Window struct {
	From, To int // minutes after local midnight
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
		if row.Event != own && strings.TrimSpace(row.Values[field]) != "" {
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
