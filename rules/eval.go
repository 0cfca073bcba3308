package rules

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nudge-study/nudge/rules/logic"
)

// Decision is a rule's verdict on one candidate row of a record.
type Decision struct {
	Record   string
	Row      *Row
	Selected bool
	Reason   string // why the row was not selected ("" when selected)
	To       string // the raw value of the rule's `to` field
	Err      error  // the condition could not be evaluated (not selected)
}

// Candidate reports whether row is one the rule is evaluated on: a row of
// the rule's event (any event when none is set); an instance row of the
// rule's instrument when one is set, otherwise a row outside repeating
// instruments (the base row, or a repeating event's instances).
func (r *Rule) Candidate(row *Row) bool {
	if r.Event != "" && row.Event != r.Event {
		return false
	}
	if r.Instrument != "" {
		return row.RepeatInstrument == r.Instrument && row.Instance > 0
	}
	return row.RepeatInstrument == ""
}

// Evaluate decides, for each candidate row of rec, whether the rule
// selects it at time now; missing lists the project's missing-data codes.
// 'today' and 'now' in the condition are read in the study time zone, not
// in now's zone nor the machine's: on a server running in UTC, 'today' is
// still the study's date. Whether a message is then sent (repeat, window,
// opt-outs, a blank `to`) is the engine's decision. A disabled rule selects
// nobody.
func (r *Rule) Evaluate(rec *Record, now time.Time, missing []string) []Decision {
	if r.zone != nil {
		now = now.In(r.zone)
	}
	var out []Decision
	for _, row := range rec.Rows {
		if !r.Candidate(row) {
			continue
		}
		scope := NewScope(rec, row, now, missing)
		d := Decision{Record: rec.ID, Row: row}
		if r.ToAddress != "" {
			d.To = r.ToAddress
		} else {
			d.To, _ = scope.Lookup(r.To)
		}
		switch {
		case !r.Enabled:
			d.Reason = "the rule is disabled (enabled: false)"
		case r.When == nil:
			d.Selected = true
		default:
			ok, err := r.When.True(scope)
			switch {
			case err != nil:
				d.Err = fmt.Errorf("rule %q, record %s%s: %w", r.Name, rec.ID, rowLabel(row), err)
				d.Reason = "the condition could not be evaluated: " + err.Error()
			case ok:
				d.Selected = true
			default:
				d.Reason = explain(r.When, scope)
			}
		}
		out = append(out, d)
	}
	return out
}

// rowLabel describes a row's event and instance for messages.
func rowLabel(row *Row) string {
	var b strings.Builder
	if row.Event != "" {
		b.WriteString(", event " + row.Event)
	}
	if row.Instance > 0 {
		if row.RepeatInstrument != "" {
			b.WriteString(", " + row.RepeatInstrument)
		}
		b.WriteString(" #" + strconv.Itoa(row.Instance))
	}
	return b.String()
}

// explain names the first part of a false condition that is false, with
// the values of the fields it reads.
func explain(e *logic.Expr, scope *Scope) string {
	part := e
	for _, c := range e.Conjuncts() {
		ok, err := c.True(scope)
		if err != nil {
			return fmt.Sprintf("%s could not be evaluated: %v", c, err)
		}
		if !ok {
			part = c
			break
		}
	}
	vals := describeRefs(part.Refs(), scope)
	if vals == "" {
		return fmt.Sprintf("%s is false", part)
	}
	return fmt.Sprintf("%s is false (%s)", part, vals)
}

// describeRefs shows each reference's value: `[x] is "0"`, `[y] is blank`.
func describeRefs(refs []logic.Ref, scope *Scope) string {
	parts := make([]string, 0, len(refs))
	for _, ref := range refs {
		v, _ := scope.Lookup(ref)
		if v == "" {
			parts = append(parts, ref.String()+" is blank")
		} else {
			parts = append(parts, fmt.Sprintf("%s is %q", ref, v))
		}
	}
	return strings.Join(parts, ", ")
}
