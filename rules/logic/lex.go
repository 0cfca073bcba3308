package logic

import (
	"fmt"
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
	pos, end int // byte offsets of the token in the source
}

// lex splits src into tokens, ending with a tEOF token at len(src).
func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for {
		for i < len(src) {
			r, n := utf8.DecodeRuneInString(src[i:])
			if !unicode.IsSpace(r) {
				break
			}
			i += n
		}
		if i >= len(src) {
			return append(toks, token{kind: tEOF, pos: len(src), end: len(src)}), nil
		}
		t, err := lexOne(src, i)
		if err != nil {
			return nil, err
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
			return token{}, errAt(src, i, "use a single = to compare (REDCap logic has no ==)")
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
		return token{}, errAt(src, i, "use 'and' to combine conditions (REDCap logic has no &&)")
	case '|':
		return token{}, errAt(src, i, "use 'or' to combine conditions (REDCap logic has no ||)")
	}
	r, _ := utf8.DecodeRuneInString(src[i:])
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
