package logic

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

type opKind uint8

const (
	opLit opKind = iota
	opRef
	opParen
	opNeg
	opPos
	opOr
	opAnd
	opEq
	opNe
	opLt
	opLe
	opGt
	opGe
	opAdd
	opSub
	opMul
	opDiv
	opPow
	opCall
)

func (o opKind) isComparison() bool { return opEq <= o && o <= opGe }

// node is one node of the syntax tree.
type node struct {
	op   opKind
	pos  int    // byte offset of text in the source
	text string // this node's slice of the source
	val  Value  // opLit
	ref  Ref    // opRef
	fn   *builtin
	kids []*node // operands, or a call's arguments
}

type parser struct {
	src   string
	toks  []token
	notes []Note
	i     int
	depth int // current nesting of parentheses, calls, signs and ^
}

// maxDepth bounds nesting so that no input can exhaust the stack; real
// conditions nest a handful of levels.
const maxDepth = 100

// enter notes one more level of nesting at t; leave undoes it.
func (p *parser) enter(t token) error {
	p.depth++
	if p.depth > maxDepth {
		return p.errAt(t, "the condition is nested more than %d levels deep", maxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

func newParser(src string) (*parser, error) {
	toks, notes, err := lex(src)
	if err != nil {
		return nil, err
	}
	return &parser{src: src, toks: toks, notes: notes}, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

// prev is the last token consumed, for messages about what came before.
func (p *parser) prev() (token, bool) {
	if p.i == 0 {
		return token{}, false
	}
	return p.toks[p.i-1], true
}

func (p *parser) errAt(t token, format string, args ...any) *SyntaxError {
	return errAt(p.src, t.pos, format, args...)
}

// col is the 1-based rune column of byte offset off.
func (p *parser) col(off int) int { return utf8.RuneCountInString(p.src[:off]) + 1 }

func (p *parser) mk(op opKind, start, end int, kids ...*node) *node {
	return &node{op: op, pos: start, text: p.src[start:end], kids: kids}
}

func (p *parser) parse() (*node, error) {
	if p.peek().kind == tEOF {
		return nil, p.errAt(p.peek(), "the condition is empty")
	}
	n, _, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.unexpected(t)
	}
	return n, nil
}

// unexpected explains a token that cannot continue a complete expression.
func (p *parser) unexpected(t token) *SyntaxError {
	switch t.kind {
	case tRParen:
		return p.errAt(t, "unexpected ): there is no ( for it to close")
	case tComma:
		return p.errAt(t, "unexpected , outside a function call")
	case tBracket, tStr, tNum:
		return p.errAt(t, "unexpected %s: is an operator (=, and, or, …) missing before it?", describe(t))
	case tIdent:
		return p.errAt(t, "unexpected word '%s': expected and, or, or an operator", t.text)
	}
	return p.errAt(t, "unexpected %s", describe(t))
}

// describe names a token for messages: [field], 'text', an operator, ….
func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of condition"
	case tStr:
		return "'" + shorten(t.text) + "'"
	case tBracket:
		return "[" + shorten(t.text) + "]"
	case tLParen:
		return "("
	case tRParen:
		return ")"
	case tComma:
		return ","
	}
	return t.text
}

// shorten cuts long text in messages to 30 bytes, on a rune boundary.
func shorten(s string) string {
	if len(s) <= 30 {
		return s
	}
	cut := 30
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Each level returns the node and the byte offset where it starts, so that
// a binary node's text spans both operands.

func (p *parser) parseOr() (*node, int, error) {
	if err := p.enter(p.peek()); err != nil {
		return nil, 0, err
	}
	defer p.leave()
	l, start, err := p.parseAnd()
	if err != nil {
		return nil, 0, err
	}
	for isKeyword(p.peek(), "or") {
		p.next()
		r, _, err := p.parseAnd()
		if err != nil {
			return nil, 0, err
		}
		l = p.mk(opOr, start, p.end(), l, r)
	}
	return l, start, nil
}

func (p *parser) parseAnd() (*node, int, error) {
	l, start, err := p.parseCmp()
	if err != nil {
		return nil, 0, err
	}
	for isKeyword(p.peek(), "and") {
		p.next()
		r, _, err := p.parseCmp()
		if err != nil {
			return nil, 0, err
		}
		l = p.mk(opAnd, start, p.end(), l, r)
	}
	return l, start, nil
}

// parseCmp parses one comparison. Comparisons do not chain: a = b = c is an
// error rather than a guess.
func (p *parser) parseCmp() (*node, int, error) {
	l, start, err := p.parseAdd()
	if err != nil {
		return nil, 0, err
	}
	t := p.peek()
	if t.kind != tOp || !t.op.isComparison() {
		return l, start, nil
	}
	p.next()
	r, _, err := p.parseAdd()
	if err != nil {
		return nil, 0, err
	}
	if t2 := p.peek(); t2.kind == tOp && t2.op.isComparison() {
		return nil, 0, p.errAt(t2, "a second comparison %s right after %s: combine comparisons with and / or", t2.text, p.src[start:p.end()])
	}
	return p.mk(t.op, start, p.end(), l, r), start, nil
}

func (p *parser) parseAdd() (*node, int, error) {
	l, start, err := p.parseMul()
	if err != nil {
		return nil, 0, err
	}
	for t := p.peek(); t.kind == tOp && (t.op == opAdd || t.op == opSub); t = p.peek() {
		p.next()
		r, _, err := p.parseMul()
		if err != nil {
			return nil, 0, err
		}
		l = p.mk(t.op, start, p.end(), l, r)
	}
	return l, start, nil
}

func (p *parser) parseMul() (*node, int, error) {
	l, start, err := p.parsePow()
	if err != nil {
		return nil, 0, err
	}
	for t := p.peek(); t.kind == tOp && (t.op == opMul || t.op == opDiv); t = p.peek() {
		p.next()
		r, _, err := p.parsePow()
		if err != nil {
			return nil, 0, err
		}
		l = p.mk(t.op, start, p.end(), l, r)
	}
	return l, start, nil
}

// parsePow parses ^, which groups to the right (2^3^2 = 2^9) and binds
// looser than a sign: -2^2 = (-2)^2 = 4.
func (p *parser) parsePow() (*node, int, error) {
	l, start, err := p.parseUnary()
	if err != nil {
		return nil, 0, err
	}
	if t := p.peek(); t.kind == tOp && t.op == opPow {
		p.next()
		if err := p.enter(t); err != nil {
			return nil, 0, err
		}
		defer p.leave()
		r, _, err := p.parsePow()
		if err != nil {
			return nil, 0, err
		}
		l = p.mk(opPow, start, p.end(), l, r)
	}
	return l, start, nil
}

func (p *parser) parseUnary() (*node, int, error) {
	t := p.peek()
	if t.kind == tOp && (t.op == opSub || t.op == opAdd) {
		p.next()
		if err := p.enter(t); err != nil {
			return nil, 0, err
		}
		defer p.leave()
		x, _, err := p.parseUnary()
		if err != nil {
			return nil, 0, err
		}
		op := opNeg
		if t.op == opAdd {
			op = opPos
		}
		return p.mk(op, t.pos, p.end(), x), t.pos, nil
	}
	n, err := p.parsePrimary()
	return n, t.pos, err
}

// end is the byte offset just after the last token consumed.
func (p *parser) end() int {
	t, _ := p.prev()
	return t.end
}

func (p *parser) parsePrimary() (*node, error) {
	t := p.peek()
	switch t.kind {
	case tNum:
		p.next()
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, p.errAt(t, "%s is not a number", t.text)
		}
		n := p.mk(opLit, t.pos, t.end)
		n.val = NumberValue(f)
		return n, nil
	case tStr:
		p.next()
		n := p.mk(opLit, t.pos, t.end)
		n.val = StringValue(t.text)
		return n, nil
	case tBracket:
		return p.parseRef()
	case tLParen:
		p.next()
		x, _, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if c := p.peek(); c.kind != tRParen {
			if c.kind == tEOF {
				return nil, p.errAt(c, "unexpected end of condition: expected ) to close the ( at col %d", p.col(t.pos))
			}
			return nil, p.errAt(c, "expected ) to close the ( at col %d, found %s", p.col(t.pos), describe(c))
		}
		p.next()
		return p.mk(opParen, t.pos, p.end(), x), nil
	case tIdent:
		switch {
		case isKeyword(t, "true"), isKeyword(t, "false"):
			p.next()
			n := p.mk(opLit, t.pos, t.end)
			n.val = BoolValue(isKeyword(t, "true"))
			return n, nil
		case p.toks[p.i+1].kind == tLParen:
			return p.parseCall()
		case isKeyword(t, "and"), isKeyword(t, "or"):
			return nil, p.missingOperand(t)
		}
		return nil, p.errAt(t, "unexpected word '%s': put field names in [brackets] and text in 'quotes'", t.text)
	}
	return nil, p.missingOperand(t)
}

// missingOperand explains why t cannot start a value, using the token before
// it for context.
func (p *parser) missingOperand(t token) *SyntaxError {
	prev, ok := p.prev()
	after := ""
	if ok {
		after = " after " + describe(prev)
	}
	if t.kind == tEOF {
		switch {
		case !ok:
			return p.errAt(t, "the condition is empty")
		case prev.kind == tOp && prev.op.isComparison():
			return p.errAt(t, "unexpected end of condition: a comparison needs a value after %s", prev.text)
		case isKeyword(prev, "and"), isKeyword(prev, "or"):
			return p.errAt(t, "unexpected end of condition: '%s' needs a condition after it", prev.text)
		}
		return p.errAt(t, "unexpected end of condition: expected a value%s", after)
	}
	if prev.kind == tOp && prev.op.isComparison() {
		return p.errAt(t, "a comparison needs a value after %s, found %s", prev.text, describe(t))
	}
	return p.errAt(t, "expected a value (a [field], a number or 'text')%s, found %s", after, describe(t))
}

func isKeyword(t token, kw string) bool {
	return t.kind == tIdent && (t.kw == kw || t.kw == "" && strings.EqualFold(t.text, kw))
}

func (p *parser) parseCall() (*node, error) {
	name := p.next()
	open := p.next() // (
	fn := lookupBuiltin(name.text)
	if fn == nil {
		msg := "unknown function '" + name.text + "'"
		if s := suggest(name.text); s != "" {
			msg += " (did you mean " + s + "?)"
		}
		return nil, p.errAt(name, "%s", msg)
	}
	var args []*node
	if p.peek().kind == tRParen {
		p.next()
	} else {
		for {
			a, _, err := p.parseOr()
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			c := p.next()
			if c.kind == tRParen {
				break
			}
			if c.kind != tComma {
				if c.kind == tEOF {
					return nil, p.errAt(c, "unexpected end of condition: expected ) to close %s( at col %d", name.text, p.col(open.pos))
				}
				return nil, p.errAt(c, "expected , or ) in %s(…), found %s", name.text, describe(c))
			}
		}
	}
	if len(args) < fn.min || fn.max >= 0 && len(args) > fn.max {
		return nil, p.errAt(name, "%s takes %s, not %d", fn.name, fn.arity(), len(args))
	}
	n := p.mk(opCall, name.pos, p.end(), args...)
	n.fn = fn
	if fn.check != nil {
		if err := fn.check(p.src, args); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// parseRef parses one to three adjacent bracket groups into a Ref. With two
// groups, a number or an instance keyword in the second makes it [field][instance];
// otherwise it is [event][field].
func (p *parser) parseRef() (*node, error) {
	first := p.next()
	parts := []token{first}
	for p.peek().kind == tBracket && p.peek().pos == parts[len(parts)-1].end {
		if len(parts) == 3 {
			return nil, p.errAt(p.peek(), "too many [ ] in a row: the most is [event][field][instance]")
		}
		parts = append(parts, p.next())
	}
	var r Ref
	var field token
	switch {
	case len(parts) == 1:
		field = parts[0]
	case len(parts) == 2 && IsInstance(parts[1].text):
		field = parts[0]
		r.Instance = parts[1].text
	case len(parts) == 2:
		r.Event = parts[0].text
		field = parts[1]
	default:
		r.Event = parts[0].text
		field = parts[1]
		if !IsInstance(parts[2].text) {
			return nil, p.errAt(parts[2], "[%s] is not an instance: use a number or current-instance, previous-instance, next-instance, first-instance, last-instance", parts[2].text)
		}
		r.Instance = parts[2].text
	}
	if r.Event != "" && !validName(r.Event, true) {
		return nil, p.errAt(parts[0], "[%s] is not an event name: use letters, digits and _ as in [baseline_arm_1]", r.Event)
	}
	if err := p.fieldSpec(field, &r); err != nil {
		return nil, err
	}
	n := p.mk(opRef, first.pos, p.end())
	n.ref = r
	return n, nil
}

// fieldSpec fills r.Field and r.Code from the text of a [field] or
// [field(code)] group.
func (p *parser) fieldSpec(t token, r *Ref) error {
	s := t.text
	if isAllDigits(s) {
		return p.errAt(t, "[%s] is an instance number: put it after a field, as in [field][%s]", s, s)
	}
	if i := strings.IndexByte(s, '('); i >= 0 {
		code := s[i+1:]
		if !strings.HasSuffix(code, ")") || strings.ContainsAny(code[:len(code)-1], "()") || len(code) == 1 {
			return errAt(p.src, t.pos+1+i, "a checkbox choice is written [field(code)], as in [race(2)]")
		}
		r.Code = code[:len(code)-1]
		for j := 0; j < len(r.Code); j++ {
			if c := r.Code[j]; !isIdentChar(c) && c != '-' && c != '.' {
				return errAt(p.src, t.pos+1+i, "(%s) is not a checkbox choice code: use letters, digits and _", r.Code)
			}
		}
		s = s[:i]
	} else if strings.IndexByte(s, ')') >= 0 {
		return errAt(p.src, t.pos+1+strings.IndexByte(s, ')'), "unexpected ) in [%s]", s)
	}
	r.Field = s
	if strings.Contains(s, "-") {
		// A smart variable, possibly with parameters: [event-name],
		// [survey-date-completed:consent]. Passed to Env.Lookup as written.
		name, _, _ := strings.Cut(s, ":")
		if !validName(name, true) || r.Code != "" {
			return p.errAt(t, "[%s] is not a field name or smart variable", t.text)
		}
		return nil
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		switch mod := s[i+1:]; {
		case mod == "value" && r.Code == "":
		case (mod == ModChecked || mod == ModUnchecked) && r.Code == "":
			r.Modifier = mod
		default:
			return errAt(p.src, t.pos+1+i, "[%s]: logic accepts only [%s:value], [%s:checked] and [%s:unchecked]; ':%s' is piping syntax for messages", t.text, s[:i], s[:i], s[:i], mod)
		}
		s = s[:i]
		r.Field = s
	}
	if !validName(s, false) {
		return p.errAt(t, "[%s] is not a field name: use letters, digits and _", s)
	}
	return nil
}

// validName reports whether s is a field name (letters, digits, _, not
// starting with a digit) or, with dash, an event or smart variable name.
func validName(s string, dash bool) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isIdentChar(c) && !(dash && c == '-') {
			return false
		}
	}
	return dash || !isDigit(s[0])
}

func isAllDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// IsInstance reports whether s names a repeat instance in the second or
// third bracket of a reference: a number, or current-, previous-, next-,
// first- or last-instance. Piping in templates reads references the same way.
func IsInstance(s string) bool {
	switch s {
	case "current-instance", "previous-instance", "next-instance", "first-instance", "last-instance":
		return true
	}
	return isAllDigits(s)
}
