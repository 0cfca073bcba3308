package rules

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nudge-study/nudge/rules/logic"
)

// This file finds, in the source of a condition, the comparisons check
// looks at: a field compared with a literal, and a datediff compared with a
// number. It reads tokens rather than the logic package's syntax tree so
// that the checks stay outside that package; a comparison is only taken
// when both operands stand alone between `and`, `or`, commas, parentheses
// or the ends of the condition, where no arithmetic can bind to them.

// scanKind is the kind of a scanned token.
type scanKind uint8

const (
	sOther   scanKind = iota
	sRef              // one or more adjacent [..] groups
	sStr              // '..' or ".."
	sNum              // 12, 0.5
	sIdent            // and, or, function names, true, false
	sCmp              // = == <> != < <= > >=
	sLogical          // && ||
	sLParen
	sRParen
	sComma
)

// scanTok is one token of a condition; pos and end are byte offsets.
type scanTok struct {
	kind     scanKind
	text     string
	pos, end int
}

// scanLogic splits a condition into tokens, skipping comments (from # or //
// to the end of the line). It never fails: what it cannot read becomes
// sOther tokens, and an unclosed text runs to the end.
func scanLogic(src string) []scanTok {
	var toks []scanTok
	i := 0
	for i < len(src) {
		c := src[i]
		start := i
		add := func(k scanKind, end int) {
			toks = append(toks, scanTok{kind: k, text: src[start:end], pos: start, end: end})
			i = end
		}
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#' || strings.HasPrefix(src[i:], "//"):
			if nl := strings.IndexByte(src[i:], '\n'); nl >= 0 {
				i += nl
			} else {
				i = len(src)
			}
		case c == '[':
			j := i
			for j < len(src) && src[j] == '[' {
				k := strings.IndexByte(src[j:], ']')
				if k < 0 {
					j = len(src)
					break
				}
				j += k + 1
			}
			add(sRef, j)
		case c == '\'' || c == '"':
			k := strings.IndexByte(src[i+1:], c)
			if k < 0 {
				add(sOther, len(src))
			} else {
				add(sStr, i+1+k+1)
			}
		case c >= '0' && c <= '9' || c == '.':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.') {
				j++
			}
			add(sNum, j)
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(src) && (src[j] == '_' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			add(sIdent, j)
		case strings.HasPrefix(src[i:], "&&") || strings.HasPrefix(src[i:], "||"):
			add(sLogical, i+2)
		case strings.HasPrefix(src[i:], "<>") || strings.HasPrefix(src[i:], "!=") || strings.HasPrefix(src[i:], "<=") ||
			strings.HasPrefix(src[i:], ">=") || strings.HasPrefix(src[i:], "=="):
			add(sCmp, i+2)
		case c == '=' || c == '<' || c == '>':
			add(sCmp, i+1)
		case c == '(':
			add(sLParen, i+1)
		case c == ')':
			add(sRParen, i+1)
		case c == ',':
			add(sComma, i+1)
		default:
			_, n := utf8.DecodeRuneInString(src[i:])
			add(sOther, i+n)
		}
	}
	return toks
}

// boundary reports whether toks[i] (or the start or end, when i is out of
// range) separates whole comparisons: nothing binds across it more tightly
// than a comparison.
func boundary(toks []scanTok, i int) bool {
	if i < 0 || i >= len(toks) {
		return true
	}
	t := toks[i]
	switch t.kind {
	case sLParen, sRParen, sComma, sLogical:
		return true
	case sIdent:
		w := strings.ToLower(t.text)
		return w == "and" || w == "or"
	}
	return false
}

// literal is a text or number written in a condition.
type literal struct {
	value string
	pos   int // byte offset in the source
	text  string
}

// literalAt reads toks[i] as a literal: a text, a number or a negative
// number. It returns the literal and the index of the token after it.
func literalAt(toks []scanTok, i int) (literal, int, bool) {
	if i < 0 || i >= len(toks) {
		return literal{}, 0, false
	}
	t := toks[i]
	switch {
	case t.kind == sStr:
		return literal{value: t.text[1 : len(t.text)-1], pos: t.pos, text: t.text}, i + 1, true
	case t.kind == sNum:
		return literal{value: t.text, pos: t.pos, text: t.text}, i + 1, true
	case t.kind == sOther && t.text == "-" && i+1 < len(toks) && toks[i+1].kind == sNum && toks[i+1].pos == t.end:
		return literal{value: "-" + toks[i+1].text, pos: t.pos, text: "-" + toks[i+1].text}, i + 2, true
	}
	return literal{}, 0, false
}

// literalBefore reads the literal that ends just before toks[i], returning
// it and the index of its first token.
func literalBefore(toks []scanTok, i int) (literal, int, bool) {
	if i-2 >= 0 && toks[i-2].kind == sOther && toks[i-2].text == "-" && toks[i-1].kind == sNum {
		if l, _, ok := literalAt(toks, i-2); ok {
			return l, i - 2, true
		}
	}
	if l, _, ok := literalAt(toks, i-1); ok && toks[i-1].kind != sOther {
		return l, i - 1, true
	}
	return literal{}, 0, false
}

// fieldComparison is `[field] op literal` (or `literal op [field]`) standing
// alone in a condition.
type fieldComparison struct {
	ref  logic.Ref
	op   string // as written, with the field on the left
	lit  literal
	pos  int    // byte offset of the comparison's start
	text string // the comparison as written
}

// flipped is the operator that keeps a comparison's meaning when its
// operands are swapped.
var flipped = map[string]string{"<": ">", "<=": ">=", ">": "<", ">=": "<="}

// flip returns op with its operands swapped.
func flip(op string) string {
	if f, ok := flipped[op]; ok {
		return f
	}
	return op
}

// fieldComparisons lists every field compared with a literal in src.
// References with a modifier (a colon) or that do not parse are left out.
func fieldComparisons(src string) []fieldComparison {
	toks := scanLogic(src)
	var out []fieldComparison
	for i, t := range toks {
		if t.kind != sCmp {
			continue
		}
		if i >= 1 && toks[i-1].kind == sRef && boundary(toks, i-2) {
			if lit, after, ok := literalAt(toks, i+1); ok && boundary(toks, after) {
				if ref, ok := parseRefToken(toks[i-1].text); ok {
					start := toks[i-1].pos
					out = append(out, fieldComparison{ref: ref, op: t.text, lit: lit, pos: start,
						text: src[start:toks[after-1].end]})
				}
			}
		}
		if i+1 < len(toks) && toks[i+1].kind == sRef && boundary(toks, i+2) {
			if lit, first, ok := literalBefore(toks, i); ok && boundary(toks, first-1) {
				if ref, ok := parseRefToken(toks[i+1].text); ok {
					start := toks[first].pos
					out = append(out, fieldComparison{ref: ref, op: flip(t.text), lit: lit, pos: start,
						text: src[start:toks[i+1].end]})
				}
			}
		}
	}
	return out
}

// parseRefToken reads a [..] token as one field reference.
func parseRefToken(text string) (logic.Ref, bool) {
	if strings.Contains(text, ":") {
		return logic.Ref{}, false
	}
	e, err := logic.Parse(text)
	if err != nil {
		return logic.Ref{}, false
	}
	refs := e.Refs()
	if len(refs) != 1 || refs[0].IsSmart() {
		return logic.Ref{}, false
	}
	return refs[0], true
}

// datediffComparison is `datediff(..) op number` (or `number op
// datediff(..)`) standing alone in a condition.
type datediffComparison struct {
	call string   // the datediff call as written
	args []string // its arguments as written, trimmed
	op   string   // with the call on the left
	n    float64
	lit  string
	pos  int // byte offset of the comparison's start
}

// datediffComparisons lists every datediff compared with a number in src.
func datediffComparisons(src string) []datediffComparison {
	toks := scanLogic(src)
	var out []datediffComparison
	for i, t := range toks {
		if t.kind != sIdent || !strings.EqualFold(t.text, "datediff") || i+1 >= len(toks) || toks[i+1].kind != sLParen {
			continue
		}
		// Find the closing parenthesis and the top-level commas.
		depth, end := 0, -1
		cuts := []int{toks[i+1].end}
		for j := i + 1; j < len(toks) && end < 0; j++ {
			switch toks[j].kind {
			case sLParen:
				depth++
			case sRParen:
				depth--
				if depth == 0 {
					end = j
				}
			case sComma:
				if depth == 1 {
					cuts = append(cuts, toks[j].end)
				}
			}
		}
		if end < 0 {
			continue
		}
		var args []string
		for k, from := range cuts {
			to := toks[end].pos
			if k+1 < len(cuts) {
				to = cuts[k+1] - 1
			}
			args = append(args, strings.TrimSpace(src[from:to]))
		}
		call := src[t.pos:toks[end].end]
		var op string
		var lit literal
		start := t.pos
		switch {
		case end+1 < len(toks) && toks[end+1].kind == sCmp && boundary(toks, i-1):
			l, after, ok := literalAt(toks, end+2)
			if !ok || !boundary(toks, after) {
				continue
			}
			op, lit = toks[end+1].text, l
		case i >= 1 && toks[i-1].kind == sCmp && boundary(toks, end+1):
			l, first, ok := literalBefore(toks, i-1)
			if !ok || !boundary(toks, first-1) {
				continue
			}
			op, lit, start = flip(toks[i-1].text), l, toks[first].pos
		default:
			continue
		}
		n, err := strconv.ParseFloat(lit.value, 64)
		if err != nil {
			continue
		}
		out = append(out, datediffComparison{call: call, args: args, op: op, n: n, lit: lit.text, pos: start})
	}
	return out
}
