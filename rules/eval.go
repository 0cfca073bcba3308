package rules

import (
	"encoding/binary"
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
// nobody. To evaluate rules over many records, use a Pass.
func (r *Rule) Evaluate(rec *Record, now time.Time, missing []string) []Decision {
	return NewPass(now, missing).Evaluate(r, rec, nil)
}

// memoMax bounds how many verdicts a Pass remembers per rule, so that
// values that differ on every record (names, dates of birth) cost no more
// memory than the records hold already.
const memoMax = 4096

// Pass evaluates rules over the records of one project at one moment. A
// condition's verdict depends only on the values of the fields it reads
// (the moment and the missing-data codes being fixed), and those values
// repeat from record to record: a Pass remembers the verdict, and the
// reason a row is not selected, for each combination it has seen, once for
// all the rules with the same condition. A Pass
// is not safe for concurrent use.
type Pass struct {
	now     time.Time
	missing map[string]bool
	memo    map[*Rule]*memo
	nth     []*memo // by the numbers EvaluateNth's caller gives the rules
	// shared holds the verdicts by condition: rules whose conditions read
	// the same (and read 'today' in the same zone) share them.
	shared map[condKey]*verdicts
	key    []byte
	scope  Scope // the row being evaluated; reused, as nothing keeps it
	// unexplained leaves the reason of rows not selected blank (see
	// LeaveUnexplained).
	unexplained bool
}

// LeaveUnexplained makes Evaluate leave the Reason of the rows a rule does
// not select blank, for a caller that only counts them: working out which
// part of the condition is false, with the values it reads, is most of the
// cost of a row whose values the Pass has not seen before.
func (p *Pass) LeaveUnexplained() { p.unexplained = true }

// memo is what a Pass remembers for one rule: the condition's references
// and, by the values they have, the verdicts.
type memo struct {
	rule     *Rule
	refs     []logic.Ref
	verdicts *verdicts
	// cols is the column list of the rows last evaluated, and at says
	// where in it each reference's value lies (see plainColumn); to is
	// the same for the rule's `to` field.
	cols *columns
	at   []int
	to   int
}

// memoAt is memoFor for the rule a caller numbered n (see EvaluateNth).
func (p *Pass) memoAt(n int, r *Rule, cols *columns) *memo {
	if n < 0 {
		return p.memoFor(r, cols)
	}
	if n < len(p.nth) {
		if m := p.nth[n]; m != nil && m.rule == r && m.cols == cols {
			return m
		}
	} else {
		p.nth = append(p.nth, make([]*memo, n+1-len(p.nth))...)
	}
	m := p.memoFor(r, cols)
	p.nth[n] = m
	return m
}

// memoFor is the Pass's memo of rule r, ready for rows with columns cols.
func (p *Pass) memoFor(r *Rule, cols *columns) *memo {
	m := p.memo[r]
	if m == nil {
		m = &memo{rule: r, to: -1}
		if r.When != nil {
			m.refs = r.When.Refs()
			k := condKey{text: r.When.String(), zone: r.zone}
			m.verdicts = p.shared[k]
			if m.verdicts == nil {
				m.verdicts = &verdicts{byKey: map[string]verdict{}}
				p.shared[k] = m.verdicts
			}
		}
		m.at = make([]int, len(m.refs))
		for i := range m.at {
			m.at[i] = -1
		}
		p.memo[r] = m
	}
	if cols != m.cols {
		m.cols = cols
		for i, ref := range m.refs {
			m.at[i] = plainColumn(cols, ref)
		}
		m.to = plainColumn(cols, r.To)
	}
	return m
}

// lookupAt is scope.Lookup(ref), with the value read straight from the
// row when at (from plainColumn, for the row's columns) says where it is.
func lookupAt(scope *Scope, ref logic.Ref, at int) (string, bool) {
	if row := scope.row; at >= 0 {
		// As lookupDefault: an instance row's blank falls back to the base row.
		if v, ok := row.at(at); ok && (v != "" || row.Instance == 0) {
			return v, true
		}
	}
	return scope.Lookup(ref)
}

// condKey is a condition as written, with the zone it reads 'today' in.
type condKey struct {
	text string
	zone *time.Location
}

type verdict struct {
	selected bool
	reason   string
}

// verdicts are a condition's verdicts by the values it reads (the key),
// and the last one given: rules with the same condition are evaluated one
// after the other on a row, so the row's verdict is looked up once, and
// values that differ on every record (past memoMax) are evaluated once per
// row.
type verdicts struct {
	byKey   map[string]verdict
	lastKey []byte
	last    verdict
	hasLast bool
	// lastRow is the row last given a verdict (last). The verdict of a
	// condition depends on nothing but the row (with its record) and the
	// Pass, so other rules with the condition take it as it is.
	lastRow *Row
	// lookups and hits count the verdicts looked up by key and found.
	lookups, hits int
}

// useful reports whether looking verdicts up by the values read is worth
// its cost: until memoMax lookups, and then while one in four or more is
// found.
func (vs *verdicts) useful() bool {
	return vs.lookups < memoMax || 4*vs.hits >= vs.lookups
}

// rememberRow makes v the verdict of row, with no key.
func (vs *verdicts) rememberRow(row *Row, v verdict) {
	vs.lastKey, vs.last, vs.hasLast, vs.lastRow = vs.lastKey[:0], v, false, row
}

// remember makes v, for key and row, the last verdict given.
func (vs *verdicts) remember(row *Row, key []byte, v verdict) {
	vs.lastKey, vs.last, vs.hasLast, vs.lastRow = append(vs.lastKey[:0], key...), v, true, row
}

// NewPass returns a Pass at time now; missing lists the project's
// missing-data codes.
func NewPass(now time.Time, missing []string) *Pass {
	return &Pass{now: now, missing: missingSet(missing), memo: map[*Rule]*memo{}, shared: map[condKey]*verdicts{}}
}

// Scope returns the scope of row within rec at time now, with the Pass's
// missing-data codes (as NewScope, without building their set again).
func (p *Pass) Scope(rec *Record, row *Row, now time.Time) *Scope {
	return &Scope{rec: rec, row: row, now: now, missing: p.missing}
}

// Evaluate appends to out the rule's Decision for each candidate row of
// rec, as Rule.Evaluate does, and returns the extended slice.
func (p *Pass) Evaluate(r *Rule, rec *Record, out []Decision) []Decision {
	return p.EvaluateNth(-1, r, rec, out)
}

// EvaluateNth is Evaluate for a caller that numbers the rules it has
// evaluated from 0: n is r's number (the same for every record), with
// which the Pass finds what it remembers of r at once. A negative n
// numbers nothing.
func (p *Pass) EvaluateNth(n int, r *Rule, rec *Record, out []Decision) []Decision {
	now := p.now
	if r.zone != nil {
		now = now.In(r.zone)
	}
	for _, row := range rec.Rows {
		if !r.Candidate(row) {
			continue
		}
		// Only what changed is set: the scope is written for every rule
		// and row of a pass, mostly with the record, time and codes it
		// already holds.
		scope := &p.scope
		if scope.rec != rec || scope.row != row {
			scope.rec, scope.row = rec, row
		}
		if scope.now != now {
			scope.now = now
		}
		if scope.missing == nil {
			scope.missing = p.missing
		}
		m := p.memoAt(n, r, row.cols)
		d := Decision{Record: rec.ID, Row: row}
		if r.ToAddress != "" {
			d.To = r.ToAddress
		} else {
			d.To, _ = lookupAt(scope, r.To, m.to)
		}
		switch {
		case !r.Enabled:
			d.Reason = "the rule is disabled (enabled: false)"
		case r.When == nil:
			d.Selected = true
		case m.verdicts.lastRow == row:
			// Another rule with this condition, on this row: its verdict.
			d.Selected, d.Reason = m.verdicts.last.selected, m.verdicts.last.reason
		case !m.verdicts.useful():
			// Values that seldom repeat (an email address, a date):
			// looking verdicts up costs more than it saves.
			d.Selected, d.Reason, d.Err = p.decide(r, rec, row, scope)
			if d.Err == nil {
				m.verdicts.rememberRow(row, verdict{selected: d.Selected, reason: d.Reason})
			}
		default:
			p.key = p.key[:0]
			for i, ref := range m.refs {
				v, ok := lookupAt(scope, ref, m.at[i])
				if ok {
					p.key = append(p.key, 1)
				} else {
					p.key = append(p.key, 0)
				}
				p.key = binary.AppendUvarint(p.key, uint64(len(v)))
				p.key = append(p.key, v...)
			}
			vs := m.verdicts
			if vs.hasLast && string(vs.lastKey) == string(p.key) {
				d.Selected, d.Reason = vs.last.selected, vs.last.reason
				vs.lastRow = row
				break
			}
			vs.lookups++
			if v, hit := vs.byKey[string(p.key)]; hit {
				vs.hits++
				d.Selected, d.Reason = v.selected, v.reason
				vs.remember(row, p.key, v)
				break
			}
			d.Selected, d.Reason, d.Err = p.decide(r, rec, row, scope)
			if d.Err == nil {
				v := verdict{selected: d.Selected, reason: d.Reason}
				if len(vs.byKey) < memoMax {
					vs.byKey[string(p.key)] = v
				}
				vs.remember(row, p.key, v)
			}
		}
		out = append(out, d)
	}
	return out
}

// decide evaluates r's condition on row: whether it selects the row, why
// not (unless the Pass leaves that unexplained), or why it cannot say.
func (p *Pass) decide(r *Rule, rec *Record, row *Row, scope *Scope) (selected bool, reason string, err error) {
	ok, err := r.When.True(scope)
	switch {
	case err != nil:
		return false, "the condition could not be evaluated: " + err.Error(),
			fmt.Errorf("rule %q, record %s%s: %w", r.Name, rec.ID, rowLabel(row), err)
	case ok:
		return true, "", nil
	case !p.unexplained:
		return false, explain(r.When, scope), nil
	}
	return false, "", nil
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
		return part.String() + " is false"
	}
	return part.String() + " is false (" + vals + ")"
}

// describeRefs shows each reference's value: `[x] is "0"`, `[y] is blank`.
func describeRefs(refs []logic.Ref, scope *Scope) string {
	var b strings.Builder
	for i, ref := range refs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(ref.String())
		if v, _ := scope.Lookup(ref); v == "" {
			b.WriteString(" is blank")
		} else {
			b.WriteString(" is ")
			b.WriteString(strconv.Quote(v))
		}
	}
	return b.String()
}
