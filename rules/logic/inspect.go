package logic

import (
	"strings"
	"unicode/utf8"
)

// Comparison is a reference compared with a literal, as in [consent] = '1'
// or 2 <> [arm], for checks against a data dictionary.
type Comparison struct {
	Ref     Ref
	Op      string // "=", "<>", "<", "<=", ">", ">="; as written ("==" and "!=" too)
	Literal Value  // the literal the reference is compared with
	Col     int    // 1-based rune column of the comparison in the source
	Text    string // the comparison's source text
}

// Comparisons lists every comparison of a plain reference with a literal,
// in source order.
func (e *Expr) Comparisons() []Comparison {
	var out []Comparison
	e.walk(func(n *node) {
		if !n.op.isComparison() {
			return
		}
		l, r := unparen(n.kids[0]), unparen(n.kids[1])
		if l.op == opLit && r.op == opRef {
			l, r = r, l
		}
		if l.op != opRef || r.op != opLit {
			return
		}
		a, b := n.kids[0], n.kids[1]
		opText := strings.TrimSpace(e.text[a.pos+len(a.text) : b.pos])
		out = append(out, Comparison{Ref: l.ref, Op: opText, Literal: r.val, Col: e.col(n.pos), Text: n.text})
	})
	return out
}

func unparen(n *node) *node {
	for n.op == opParen {
		n = n.kids[0]
	}
	return n
}

func (e *Expr) walk(f func(*node)) {
	var rec func(n *node)
	rec = func(n *node) {
		f(n)
		for _, k := range n.kids {
			rec(k)
		}
	}
	rec(e.root)
}

func (e *Expr) col(off int) int { return utf8.RuneCountInString(e.text[:off]) + 1 }

// Step is one part of an expression with its value, for explaining an
// evaluation: Depth 0 is the whole expression, its operands are at depth 1,
// and so on.
type Step struct {
	Depth int
	Text  string // the part's source text
	Value Value
	Err   error
}

// Explain evaluates the expression part by part: the whole, then each
// operand of and / or, each comparison and function call, and each
// reference, in source order. Literals and parentheses are not steps of
// their own. A part is evaluated even when and / or would skip it, so that
// every part shows its value.
func (e *Expr) Explain(env Env) []Step {
	var out []Step
	var rec func(n *node, depth int)
	rec = func(n *node, depth int) {
		n = unparen(n)
		if n.op == opLit {
			return
		}
		v, err := n.eval(env)
		out = append(out, Step{Depth: depth, Text: n.text, Value: v, Err: err})
		for _, k := range n.kids {
			rec(k, depth+1)
		}
	}
	rec(e.root, 0)
	return out
}
