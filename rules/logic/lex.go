package logic

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokKind uint8

const (
	tEOF     tokKind = iota
	tNum             // 12, 0.5, .5
	tStr             // '…' or "…"; text holds the content without quotes
	tBracket         // […]; text holds the content without brackets
	tIdent           // and, or, true, false, function names, stray words
	tOp              // an operator; op says which
	tLParen
	tRParen
	tComma
)

type token struct {
	kind     tokKind
	op       opKind
	text     string
	kw       string // "and" or "or" for the tolerated && and ||
	pos, end int    // byte offsets of the token in the source
}

// Note is a construct REDCap accepts although its documentation never
// teaches it (==, &&, ||), with the canonical form to write instead.
// nudge accepts it too; `nudge check` shows the note as a warning.
type Note struct {
	Col       int    // 1-based rune column of the construct
	Found     string // what the source says, e.g. "=="
	Canonical string // what to write instead, e.g. "="
}

func (n Note) String() string {
	return fmt.Sprintf("col %d: %s works but is not REDCap's documented syntax: write %s", n.Col, n.Found, n.Canonical)
}

// tolerated are the undocumented operators REDCap accepts, with their
// canonical spelling.
var tolerated = map[string]string{"==": "=", "&&": "and", "||": "or"}

// lex splits src into tokens, ending with a tEOF token at len(src). Lines
// whose first non-blank characters are # or // are comments, as in
// REDCap's logic editor, and are skipped to the end of the line.
func lex(src string) ([]token, []Note, error) {
	var toks []token
	var notes []Note
	i := 0
	lineStart := true // only blanks since the start of the line
	for {
		for i < len(src) {
			r, n := utf8.DecodeRuneInString(src[i:])
			if lineStart && (r == '#' || r == '/' && strings.HasPrefix(src[i:], "//")) {
				for i < len(src) && src[i] != '\n' {
					i++
				}
				continue
			}
			if !unicode.IsSpace(r) {
				break
			}
			if r == '\n' || r == '\r' {
				lineStart = true
			}
			i += n
		}
		if i >= len(src) {
			return append(toks, token{kind: tEOF, pos: len(src), end: len(src)}), notes, nil
		}
		lineStart = false
		t, err := lexOne(src, i)
		if err != nil {
			return nil, nil, err
		}
		if canon, ok := tolerated[t.text]; ok && t.kind != tStr && t.kind != tBracket {
			notes = append(notes, Note{Col: utf8.RuneCountInString(src[:t.pos]) + 1, Found: t.text, Canonical: canon})
		}
		toks = append(toks, t)
		i = t.end
	}
}

func lexOne(src string, i int) (token, error) {
	c := src[i]
	tok := func(k tokKind, op opKind, n int) (token, error) {
		return token{kind: k, op: op, text: src[i : i+n], pos: i, end: i + n}, nil
	}
	next := byte(0)
	if i+1 < len(src) {
		next = src[i+1]
	}
	switch {
	case c == '[':
		j := i + 1
		for j < len(src) && isBracketChar(src[j]) {
			j++
		}
		switch {
		case j == i+1 && j < len(src) && src[j] == ']':
			return token{}, errAt(src, i, "empty [ ]: put a field name inside, as in [consent]")
		case j == i+1:
			return token{}, errAt(src, j, "expected a field name after [")
		case j >= len(src) || src[j] != ']':
			return token{}, errAt(src, j, "expected ] to close %s", src[i:j])
		}
		return token{kind: tBracket, text: src[i+1 : j], pos: i, end: j + 1}, nil
	case c == '\'' || c == '"':
		for j := i + 1; j < len(src); j++ {
			if src[j] == c {
				return token{kind: tStr, text: src[i+1 : j], pos: i, end: j + 1}, nil
			}
		}
		return token{}, errAt(src, i, "this text has no closing %c", c)
	case isDigit(c) || c == '.' && isDigit(next):
		j := i
		for j < len(src) && isDigit(src[j]) {
			j++
		}
		if j < len(src) && src[j] == '.' {
			j++
			for j < len(src) && isDigit(src[j]) {
				j++
			}
		}
		return tok(tNum, 0, j-i)
	case isIdentStart(c):
		j := i + 1
		for j < len(src) && isIdentChar(src[j]) {
			j++
		}
		return tok(tIdent, 0, j-i)
	}
	switch c {
	case '(':
		return tok(tLParen, 0, 1)
	case ')':
		return tok(tRParen, 0, 1)
	case ',':
		return tok(tComma, 0, 1)
	case '+':
		return tok(tOp, opAdd, 1)
	case '-':
		return tok(tOp, opSub, 1)
	case '*':
		return tok(tOp, opMul, 1)
	case '/':
		return tok(tOp, opDiv, 1)
	case '^':
		return tok(tOp, opPow, 1)
	case '=':
		if next == '=' {
			return tok(tOp, opEq, 2) // tolerated, noted by lex
		}
		return tok(tOp, opEq, 1)
	case '<':
		switch next {
		case '>':
			return tok(tOp, opNe, 2)
		case '=':
			return tok(tOp, opLe, 2)
		}
		return tok(tOp, opLt, 1)
	case '>':
		if next == '=' {
			return tok(tOp, opGe, 2)
		}
		return tok(tOp, opGt, 1)
	case '!':
		if next == '=' {
			return tok(tOp, opNe, 2)
		}
		return token{}, errAt(src, i, "REDCap logic has no '!': use <> or != to mean \"not equal\"")
	case '&':
		if next == '&' {
			return token{kind: tIdent, kw: "and", text: src[i : i+2], pos: i, end: i + 2}, nil
		}
		return token{}, errAt(src, i, "use 'and' to combine conditions")
	case '|':
		if next == '|' {
			return token{kind: tIdent, kw: "or", text: src[i : i+2], pos: i, end: i + 2}, nil
		}
		return token{}, errAt(src, i, "use 'or' to combine conditions")
	}
	r, _ := utf8.DecodeRuneInString(src[i:])
	switch r {
	case '\u2018', '\u2019', '\u201c', '\u201d':
		return token{}, errAt(src, i, "%c is a curly quote, which REDCap does not accept: type a straight ' or \" (word processors change them)", r)
	}
	return token{}, errAt(src, i, "unexpected character %q", r)
}

// isBracketChar reports whether c may appear between [ and ]: field and
// event names, checkbox codes in ( ), smart variables with - and :.
func isBracketChar(c byte) bool {
	return isIdentChar(c) || c == '-' || c == ':' || c == '(' || c == ')' || c == '.'
}

func isIdentStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) }

// errAt returns a *SyntaxError at byte offset off of src.
func errAt(src string, off int, format string, args ...any) *SyntaxError {
	if off > len(src) {
		off = len(src)
	}
	return &SyntaxError{Col: utf8.RuneCountInString(src[:off]) + 1, Msg: fmt.Sprintf(format, args...)}
}
