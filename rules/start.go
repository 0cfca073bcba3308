package rules

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nudge-study/nudge/rules/logic"
)

// Start makes a rule timed: its messages are due at moments computed from
// a date (or datetime) field, in the participant's zone, instead of "the
// first pass after the rule selects them". Written
//
//	start: { field: "[quit_date]", days: [7, 14, 28], at: "10:00" }
//
// Each day offset (negative = before the date) and each clock time make one
// occurrence, in time order. Without at, a datetime field's own time of
// day is used. With Every (a series), Days holds one offset: the day the
// series starts.
type Start struct {
	Field logic.Ref
	Days  []int // day offsets from the field's date; [0] when not written
	At    []int // minutes after local midnight; nil = the field's own time
}

// Every makes a timed rule an EMA series: prompts on each of Days study
// days counted from the start date (day 0 = the date in the start field,
// moved by start.days), at each of the clock times At.
type Every struct {
	Days int
	At   []int // minutes after local midnight, sorted
	// Instrument, when set, is the repeating instrument whose instance k
	// holds the answers to occurrence k: [current-instance], remind's
	// unless and the write-back of occurrence k go to that instance.
	Instrument string
}

// Remind sends a reminder After a timed occurrence unless Unless (read on
// the occurrence's row: its instance of every.instrument) is true then.
type Remind struct {
	After  time.Duration
	Unless *logic.Expr
	Refs   []logic.Ref
}

// DefaultTimedExpiry is how long after it is due an occurrence of a timed
// rule without `expires` may still be sent: at most this long, and never
// after the next occurrence of the schedule is due (nor after its allowed
// hours end).
const DefaultTimedExpiry = 2 * time.Hour

// Occurrence is one due moment of a timed rule: the N-th (1-based, in time
// order) of Total.
type Occurrence struct {
	N, Total int
	Due      time.Time
}

// Timed reports whether the rule's messages are due at computed moments.
func (r *Rule) Timed() bool { return r.Start != nil }

// ErrNoStartDate means the start field holds no date: nothing is due.
var ErrNoStartDate = errors.New("no start date")

// Occurrences lists the rule's occurrences for one participant: the start
// field read in scope, the clock times in loc. The error says why there
// are none (a blank field, a value that is not a date, a date field without
// at).
func (r *Rule) Occurrences(scope *Scope, loc *time.Location) ([]Occurrence, error) {
	v, _ := scope.Lookup(r.Start.Field)
	v = strings.TrimSpace(v)
	if v == "" || scope.IsMissingCode(v) {
		return nil, fmt.Errorf("%w: %s is blank", ErrNoStartDate, r.Start.Field)
	}
	return r.ScheduleFrom(v, loc)
}

// ScheduleFrom is Occurrences for the start field's value v (as REDCap
// exports it: YYYY-MM-DD, or YYYY-MM-DD HH:MM[:SS]).
func (r *Rule) ScheduleFrom(v string, loc *time.Location) ([]Occurrence, error) {
	if loc == nil {
		loc = time.UTC
	}
	date, clock, hasClock, ok := parseStartValue(v)
	if !ok {
		return nil, fmt.Errorf("%s does not hold a date (YYYY-MM-DD): correct it in REDCap", r.Start.Field)
	}
	type slot struct{ day, min int }
	var slots []slot
	switch {
	case r.Every != nil:
		first := 0
		if len(r.Start.Days) > 0 {
			first = r.Start.Days[0]
		}
		for d := 0; d < r.Every.Days; d++ {
			for _, at := range r.Every.At {
				slots = append(slots, slot{first + d, at})
			}
		}
	default:
		ats := r.Start.At
		if len(ats) == 0 {
			if !hasClock {
				return nil, fmt.Errorf("%s holds a date without a time: give start.at, e.g. at: \"10:00\"", r.Start.Field)
			}
			ats = []int{clock}
		}
		days := r.Start.Days
		if len(days) == 0 {
			days = []int{0}
		}
		for _, d := range days {
			for _, at := range ats {
				slots = append(slots, slot{d, at})
			}
		}
	}
	occs := make([]Occurrence, len(slots))
	for i, s := range slots {
		occs[i].Due = WallTime(date.Year(), date.Month(), date.Day()+s.day, s.min, loc)
	}
	sort.SliceStable(occs, func(i, j int) bool { return occs[i].Due.Before(occs[j].Due) })
	for i := range occs {
		occs[i].N, occs[i].Total = i+1, len(occs)
	}
	return occs, nil
}

// parseStartValue reads a REDCap date or datetime as exported.
func parseStartValue(v string) (date time.Time, clock int, hasClock, ok bool) {
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		t, err := time.Parse(layout, v)
		if err == nil {
			return t, t.Hour()*60 + t.Minute(), len(layout) > len("2006-01-02"), true
		}
	}
	return time.Time{}, 0, false, false
}

// WallTime is the moment the clock in loc shows min minutes after midnight
// on the given day (the day may overflow, as with time.Date). A time the
// clock skips (a daylight-saving gap) becomes the moment the clock jumps;
// a time the clock shows twice (the hour repeated in autumn) is the first.
func WallTime(y int, mo time.Month, d, min int, loc *time.Location) time.Time {
	want := time.Date(y, mo, d, min/60, min%60, 0, 0, time.UTC)
	guess := time.Date(y, mo, d, min/60, min%60, 0, 0, loc)
	wall := func(t time.Time) time.Time {
		t = t.In(loc)
		return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, time.UTC)
	}
	// The zone's offsets around the day: the same, or the two sides of a
	// change. The instants showing want are want minus one of them.
	var best time.Time
	var earliest time.Time
	for _, probe := range []time.Time{guess.Add(-12 * time.Hour), guess.Add(12 * time.Hour)} {
		_, off := probe.In(loc).Zone()
		u := want.Add(-time.Duration(off) * time.Second)
		if earliest.IsZero() || u.Before(earliest) {
			earliest = u
		}
		if wall(u).Equal(want) && (best.IsZero() || u.Before(best)) {
			best = u
		}
	}
	if !best.IsZero() {
		return best.In(loc)
	}
	// In a gap: from the earlier instant (before the jump), the first
	// minute whose wall clock is at or past want.
	return afterGap(earliest, want, loc).In(loc)
}

// ExpiresAtTimed is when occurrence n (1-based) of occs stops being worth
// sending if not sent: due plus the rule's expires, or by default
// DefaultTimedExpiry after due but never after the next occurrence is due,
// nor (with allowed hours) after they end. due is when it may go out (its
// occurrence's time, or the reminder's).
func (r *Rule) ExpiresAtTimed(due time.Time, next time.Time, loc *time.Location) time.Time {
	if r.Expires > 0 {
		return due.Add(r.Expires)
	}
	end := due.Add(DefaultTimedExpiry)
	if !next.IsZero() && next.After(due) && next.Before(end) {
		end = next
	}
	if r.Window != nil {
		if w := r.Window.End(due, loc); w.Before(end) {
			end = w
		}
	}
	return end
}

// NextDue is the due time of the occurrence after occs[i], zero for the last.
func NextDue(occs []Occurrence, i int) time.Time {
	if i+1 < len(occs) {
		return occs[i+1].Due
	}
	return time.Time{}
}

// Describe says which occurrence o is and when it is due, in loc:
// "occurrence 3 of 42, due 2027-01-16 19:00 HST".
func (o Occurrence) Describe(loc *time.Location) string {
	return fmt.Sprintf("occurrence %d of %d, due %s", o.N, o.Total, o.Due.In(loc).Format("2006-01-02 15:04 MST"))
}
