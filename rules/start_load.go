package rules

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/nudge-study/nudge/rules/logic"
)

// maxOccurrences bounds a timed rule's schedule: more is a typing error
// (days: 3650), and each occurrence is a message.
const maxOccurrences = 1000

// decodeTiming decodes a rule's start, every and remind and checks them
// against each other and the rule's other keys.
func (l *loader) decodeTiming(d *decoder, n *yaml.Node, m *mapping, r *Rule) {
	at := func(key string, v *yaml.Node) { r.pos[key] = d.pos(v) }
	if v := m.get("start"); v != nil {
		at("start", v)
		r.Start = decodeStart(d, v, r)
	}
	if v := m.get("every"); v != nil {
		at("every", v)
		r.Every = decodeEvery(d, v, r)
		if m.get("start") == nil {
			d.errorf(v, "every needs start: the date field day 0 of the series is counted from, e.g. start: { field: \"[ema_start]\" }")
		}
	}
	if v := m.get("remind"); v != nil {
		at("remind", v)
		r.Remind = l.decodeRemind(d, v, r)
		if m.get("start") == nil {
			d.errorf(v, "remind needs start: a reminder follows an occurrence of a timed rule")
		}
	}
	if r.Start == nil {
		return
	}
	if v := m.get("repeat"); v != nil {
		d.errorf(v, "repeat: a timed rule (start) repeats by start.days or every: remove repeat")
	}
	if v := m.get("once_per"); v != nil && m.get("every") != nil {
		d.errorf(v, "once_per: a series (every) follows its start field (a moved date re-times its prompts): remove once_per")
	}
	if r.Every != nil {
		if len(r.Start.Days) > 1 {
			d.errorAt(r.pos["start.days"], "start.days: with every, give one day offset (the day the series starts), e.g. days: 1")
		}
		if len(r.Start.At) > 0 {
			d.errorAt(r.pos["start.at"], "start.at: with every, the times of day are every.at: remove start.at")
		}
		if r.Every.Instrument != "" && r.Instrument != "" {
			d.errorAt(r.pos["every.instrument"], "every.instrument: the rule already reads instances of %s (instrument): "+
				"a series reads the participant's base row; remove instrument", r.Instrument)
		}
		if n := r.Every.Days * len(r.Every.At); n > maxOccurrences {
			d.errorAt(r.pos["every"], "every: %d prompts is too many (at most %d): fewer days or times", n, maxOccurrences)
		}
	} else if n := len(r.Start.Days) * max(1, len(r.Start.At)); n > maxOccurrences {
		d.errorAt(r.pos["start"], "start: %d occurrences is too many (at most %d)", n, maxOccurrences)
	}
	// A time outside the allowed hours is never allowed: both are clock
	// times in the participant's zone.
	if r.Window != nil {
		ats, key := r.Start.At, "start.at"
		if r.Every != nil {
			ats, key = r.Every.At, "every.at"
		}
		for i, a := range ats {
			if !r.Window.containsClock(a) {
				d.errorAt(r.pos[fmt.Sprintf("%s.%d", key, i)], "%s: %s is outside the allowed hours %s (window): move it inside, or widen the window",
					key, formatClock(a), r.Window)
			}
		}
	}
}

// containsClock reports whether a clock time (minutes after midnight) is
// inside the window.
func (w *Window) containsClock(m int) bool {
	if w.From < w.To {
		return w.From <= m && m < w.To
	}
	return m >= w.From || m < w.To
}

func decodeStart(d *decoder, v *yaml.Node, r *Rule) *Start {
	m := d.mapping(v, "start", "field", "days", "at")
	if m == nil {
		return nil
	}
	s := &Start{}
	if n := m.get("field"); n != nil {
		r.pos["start.field"] = d.pos(n)
		s.Field = decodeRef(d, n, "start.field", "[quit_date]")
	} else {
		d.errorf(v, "start needs field: the date field the messages are timed from, e.g. field: \"[quit_date]\"")
	}
	if n := m.get("days"); n != nil {
		r.pos["start.days"] = d.pos(n)
		s.Days = decodeDays(d, n)
	}
	if n := m.get("at"); n != nil {
		r.pos["start.at"] = d.pos(n)
		s.At = decodeAtClocks(d, n, "start.at", r)
	}
	return s
}

// decodeDays reads one whole number of days or a list of them.
func decodeDays(d *decoder, n *yaml.Node) []int {
	items := []*yaml.Node{n}
	if resolve(n).Kind == yaml.SequenceNode {
		items, _ = d.list(n, "start.days")
		if len(items) == 0 {
			d.errorf(n, "start.days: the list is empty: give day offsets from the date, e.g. days: [7, 14, 28] (negative = before it)")
		}
	}
	var days []int
	seen := map[int]bool{}
	for _, it := range items {
		day, ok := d.integer(it, "start.days")
		switch {
		case !ok:
			continue
		case day < -3660 || day > 3660:
			d.errorf(it, "start.days: %d is more than ten years from the date: give days, e.g. 7 or -1", day)
		case seen[day]:
			d.errorf(it, "start.days: %d is listed twice: remove one", day)
		default:
			seen[day] = true
			days = append(days, day)
		}
	}
	return days
}

// decodeAtClocks reads one "HH:MM" or a list of them, sorted; positions of
// each item are kept as <what>.<i> for later errors.
func decodeAtClocks(d *decoder, n *yaml.Node, what string, r *Rule) []int {
	items := []*yaml.Node{n}
	if resolve(n).Kind == yaml.SequenceNode {
		items, _ = d.list(n, what)
		if len(items) == 0 {
			d.errorf(n, "%s: the list is empty: give times of day, e.g. at: [\"09:00\", \"14:00\"]", what)
		}
	}
	var ats []int
	for _, it := range items {
		s, ok := d.str(it, what)
		if !ok {
			continue
		}
		c, ok := parseClock(s)
		switch {
		case !ok:
			d.errorf(it, "%s: %q is not a time of day: write HH:MM on a 24-hour clock, e.g. \"10:00\" (quoted)", what, s)
		case slices.Contains(ats, c):
			d.errorf(it, "%s: %s is listed twice: remove one", what, s)
		default:
			r.pos[fmt.Sprintf("%s.%d", what, len(ats))] = d.pos(it)
			ats = append(ats, c)
		}
	}
	// Keep each time's position with it while sorting.
	idx := make([]int, len(ats))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return ats[a] - ats[b] })
	sorted := make([]int, len(ats))
	pos := make([]Pos, len(ats))
	for i, j := range idx {
		sorted[i], pos[i] = ats[j], r.pos[fmt.Sprintf("%s.%d", what, j)]
	}
	for i := range pos {
		r.pos[fmt.Sprintf("%s.%d", what, i)] = pos[i]
	}
	return sorted
}

func decodeEvery(d *decoder, v *yaml.Node, r *Rule) *Every {
	m := d.mapping(v, "every", "days", "at", "instrument")
	if m == nil {
		return nil
	}
	e := &Every{}
	if n := m.get("days"); n != nil {
		if days, ok := d.integer(n, "every.days"); ok {
			if days < 1 || days > 3660 {
				d.errorf(n, "every.days: %d: give the number of study days (at least 1), e.g. days: 14", days)
			} else {
				e.Days = days
			}
		}
	} else {
		d.errorf(v, "every needs days: how many study days the series lasts, e.g. days: 14")
	}
	if n := m.get("at"); n != nil {
		e.At = decodeAtClocks(d, n, "every.at", r)
	} else {
		d.errorf(v, "every needs at: the times of day of the prompts, e.g. at: [\"09:00\", \"14:00\", \"19:00\"]")
	}
	if n := m.get("instrument"); n != nil {
		r.pos["every.instrument"] = d.pos(n)
		if s, ok := d.str(n, "every.instrument"); ok {
			if !eventNameRE.MatchString(s) {
				d.errorf(n, "every.instrument: %q is not a REDCap unique instrument name (a-z, 0-9, '_')", s)
			}
			e.Instrument = s
		}
	}
	return e
}

func (l *loader) decodeRemind(d *decoder, v *yaml.Node, r *Rule) *Remind {
	m := d.mapping(v, "remind", "after", "unless")
	if m == nil {
		return nil
	}
	rem := &Remind{}
	if n := m.get("after"); n != nil {
		if s, ok := d.str(n, "remind.after"); ok {
			dur, err := parseDuration(s)
			if err != nil {
				d.errorf(n, "remind.after: %v", err)
			}
			rem.After = dur
		}
	} else {
		d.errorf(v, "remind needs after: how long after the prompt the reminder goes out, e.g. after: 30m")
	}
	if n := m.get("unless"); n != nil {
		r.pos["remind.unless"] = d.pos(n)
		s, ok := d.str(n, "remind.unless")
		if ok && strings.TrimSpace(s) != "" {
			e, err := logic.Parse(s)
			var se *logic.SyntaxError
			switch {
			case errors.As(err, &se):
				d.errorAt(d.valuePos(n, se.Col-1), "remind.unless: %s", se.Msg)
			case err != nil:
				d.errorf(n, "remind.unless: %v", err)
			default:
				rem.Unless, rem.Refs = e, e.Refs()
			}
		}
	}
	return rem
}

// Skip reports whether the reminder of an occurrence is not needed: its
// unless condition is true in scope (the occurrence's row). A condition
// that cannot be evaluated sends no reminder.
func (rem *Remind) Skip(scope *Scope) (bool, error) {
	if rem.Unless == nil {
		return false, nil
	}
	return rem.Unless.True(scope)
}
