// Package logic parses and evaluates REDCap logic: the language of branching
// logic, calculated fields, alerts and filterLogic, in which nudge's rule
// conditions are written.
//
// An expression is parsed once with Parse and evaluated many times against an
// Env, which supplies field values, the current time and the project's
// missing-data codes. The package is pure: it reads no clock and does no I/O.
//
// Semantics follow REDCap where REDCap is clear and are documented where
// nudge had to decide: see compare for comparisons, truth for conditions, and
// the functions in funcs.go.
package logic

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Ref is a reference to a field value: [field], [field(code)], [event][field],
// [field][instance], [event][field][instance], or a smart variable such as
// [record-name].
type Ref struct {
	Event    string // "" = the current event
	Field    string // field name, or a smart variable name like "record-name", "event-name", "current-instance"
	Code     string // checkbox choice code for [field(code)], "" otherwise
	Instance string // "" = current; "1","2",…; or "current-instance","previous-instance","last-instance","first-instance"
	// Modifier is ModChecked or ModUnchecked for [field:checked] and
	// [field:unchecked], "" otherwise ([field:value] is [field]).
	Modifier string
}

// Modifiers of a reference that logic accepts. [field:value] is the raw
// value, which is what [field] already means in logic, so it parses to a
// plain reference. On a checkbox field, [field:checked] is the codes of the
// checked choices and [field:unchecked] those of the unchecked ones,
// joined by ", " in code order (Env.Lookup answers them).
const (
	ModChecked   = "checked"
	ModUnchecked = "unchecked"
)

// String returns the reference in REDCap syntax, e.g. "[baseline_arm_1][race(2)]".
func (r Ref) String() string {
	var b strings.Builder
	if r.Event != "" {
		b.WriteString("[" + r.Event + "]")
	}
	b.WriteString("[" + r.Field)
	if r.Code != "" {
		b.WriteString("(" + r.Code + ")")
	}
	if r.Modifier != "" {
		b.WriteString(":" + r.Modifier)
	}
	b.WriteString("]")
	if r.Instance != "" {
		b.WriteString("[" + r.Instance + "]")
	}
	return b.String()
}

// IsSmart reports whether r names a smart variable ([record-name],
// [event-name], …) rather than a field: REDCap field names never contain '-'.
func (r Ref) IsSmart() bool { return strings.Contains(r.Field, "-") }

// Env supplies what an expression reads.
type Env interface {
	Lookup(r Ref) (value string, ok bool) // ok=false: no such field/row (evaluates as blank)
	Now() time.Time                       // 'today' and 'now': the date and wall clock of Now in its own Location
	IsMissingCode(v string) bool          // the project's missing-data codes
}

// Expr is a parsed expression, made by Parse. It is immutable and safe for
// concurrent use.
type Expr struct {
	text  string // what String returns
	root  *node
	notes []Note

	// Refs and Conjuncts are worked out once: a pass asks for them for
	// every row a rule does not select.
	refsOnce, conjOnce sync.Once
	refs               []Ref
	conj               []*Expr
}

// Parse parses REDCap logic. Errors are *SyntaxError.
func Parse(src string) (*Expr, error) {
	p, err := newParser(src)
	if err != nil {
		return nil, err
	}
	root, err := p.parse()
	if err != nil {
		return nil, err
	}
	return &Expr{text: src, root: root, notes: p.notes}, nil
}

// Notes lists the undocumented constructs (==, &&, ||) the expression
// uses, each with its canonical form, in source order.
func (e *Expr) Notes() []Note { return append([]Note(nil), e.notes...) }

// SyntaxError is a parse error at a 1-based rune column of the source.
type SyntaxError struct {
	Col int
	Msg string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("col %d: %s", e.Col, e.Msg) }

// EvalError is an error evaluating an expression, such as arithmetic on text.
type EvalError struct {
	Expr string // the part of the source that failed, e.g. "[weight] * 2"
	Msg  string
}

func (e *EvalError) Error() string { return fmt.Sprintf("in %s: %s", e.Expr, e.Msg) }

// String returns the source text the expression was parsed from.
func (e *Expr) String() string { return e.text }

// Refs returns every field reference, deduplicated, in order of appearance.
// Smart variables are included (see Ref.IsSmart).
func (e *Expr) Refs() []Ref {
	e.refsOnce.Do(func() { e.refs = e.findRefs() })
	return append([]Ref(nil), e.refs...)
}

func (e *Expr) findRefs() []Ref {
	var refs []Ref
	var walk func(n *node)
	walk = func(n *node) {
		if n.op == opRef {
			for _, r := range refs {
				if r == n.ref {
					return
				}
			}
			refs = append(refs, n.ref)
			return
		}
		for _, k := range n.kids {
			walk(k)
		}
	}
	walk(e.root)
	return refs
}

// Conjuncts returns the operands of a top-level chain of `and` (the
// expression itself when its top operator is not `and`). Each has String()
// equal to its slice of the source. Parentheses are not looked through:
// "([a]=1 and [b]=1) and [c]=1" has two conjuncts.
func (e *Expr) Conjuncts() []*Expr {
	e.conjOnce.Do(func() { e.conj = e.findConjuncts() })
	return append([]*Expr(nil), e.conj...)
}

func (e *Expr) findConjuncts() []*Expr {
	if e.root.op != opAnd {
		return []*Expr{e}
	}
	var out []*Expr
	var walk func(n *node)
	walk = func(n *node) {
		if n.op == opAnd {
			walk(n.kids[0])
			walk(n.kids[1])
			return
		}
		out = append(out, &Expr{text: n.text, root: n})
	}
	walk(e.root)
	return out
}

// Eval evaluates the expression.
func (e *Expr) Eval(env Env) (Value, error) { return e.root.eval(env) }

// True evaluates the expression as a condition. A blank result is false, as
// is any comparison with a blank on one side (see compare); a number or
// numeric text is true when not zero. Text that is not a number has no truth
// value and gives an *EvalError, as do type errors inside the expression
// (arithmetic on text, a date datediff cannot read).
func (e *Expr) True(env Env) (bool, error) {
	v, err := e.root.eval(env)
	if err != nil {
		return false, err
	}
	b, ok := truth(v)
	if !ok {
		return false, &EvalError{Expr: e.root.text, Msg: "the condition gives text, not true or false: compare a field with a value, e.g. [consent] = '1'"}
	}
	return b, nil
}
