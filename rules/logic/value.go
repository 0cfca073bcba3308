package logic

import (
	"math"
	"strconv"
)

// Kind is the dynamic type of a Value.
type Kind uint8

// The kinds a Value can have.
const (
	KindBlank  Kind = iota // no value: an empty field, "" or '', a failed calculation
	KindString             // text, including field values such as "1" that look numeric
	KindNumber             // a number from a literal or a calculation
	KindBool               // the result of a comparison, and, or
)

// String names the kind for messages.
func (k Kind) String() string {
	switch k {
	case KindString:
		return "text"
	case KindNumber:
		return "number"
	case KindBool:
		return "true/false"
	default:
		return "blank"
	}
}

// Value is the result of evaluating an expression: blank, text, a number
// or a truth value. The zero Value is blank. Values are small and are passed
// by value; evaluating them does not allocate.
type Value struct {
	kind Kind
	str  string  // KindString
	num  float64 // KindNumber; KindBool stores 1 or 0
}

// StringValue returns a text value; the empty string is blank, as in REDCap.
func StringValue(s string) Value {
	if s == "" {
		return Value{}
	}
	return Value{kind: KindString, str: s}
}

// NumberValue returns a number; NaN and ±Inf (0/0, sqrt(-1) …) are blank,
// which is how REDCap shows a calculation it cannot carry out.
func NumberValue(f float64) Value {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Value{}
	}
	return Value{kind: KindNumber, num: f}
}

// BoolValue returns a truth value.
func BoolValue(b bool) Value {
	if b {
		return Value{kind: KindBool, num: 1}
	}
	return Value{kind: KindBool}
}

// Kind reports the dynamic type of v.
func (v Value) Kind() Kind { return v.kind }

// IsBlank reports whether v is blank.
func (v Value) IsBlank() bool { return v.kind == KindBlank }

// Number returns v as a number when it is one or looks like one: a number,
// text such as "12", "-0.5" or "1e3", or a truth value (1 or 0).
func (v Value) Number() (float64, bool) {
	switch v.kind {
	case KindNumber, KindBool:
		return v.num, true
	case KindString:
		if !looksNumeric(v.str) {
			return 0, false
		}
		f, err := strconv.ParseFloat(v.str, 64)
		if err != nil || math.IsInf(f, 0) {
			return 0, false
		}
		return f, true
	}
	return 0, false
}

// String returns v as text: "" for blank, numbers in plain decimal notation
// (12, 0.5, -3.25), and "true" or "false" for truth values.
func (v Value) String() string {
	switch v.kind {
	case KindString:
		return v.str
	case KindNumber:
		return formatNumber(v.num)
	case KindBool:
		if v.num != 0 {
			return "true"
		}
		return "false"
	}
	return ""
}

// text is the value as text for string functions and string comparison;
// truth values count as 1 and 0 there, as they do in arithmetic.
func (v Value) text() string {
	if v.kind == KindBool {
		return formatNumber(v.num)
	}
	return v.String()
}

func formatNumber(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// looksNumeric reports whether s is a plain decimal number: an optional sign,
// digits with an optional fraction, and an optional exponent. No spaces, no
// hex, no "Inf" or "NaN": field values such as "NaN" or "0x10" are text.
func looksNumeric(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < len(s) && isDigit(s[i]) {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for i < len(s) && isDigit(s[i]) {
			i++
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(s)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// truth is a value's truth as a condition. Blank is false; numbers (and text
// that looks numeric, such as a yes/no field's "1" or "0") are true when not
// zero. Other text has no truth value in REDCap logic: that is an error.
func truth(v Value) (bool, bool) {
	switch v.kind {
	case KindBlank:
		return false, true
	case KindBool, KindNumber:
		return v.num != 0, true
	}
	f, ok := v.Number()
	if !ok {
		return false, false
	}
	return f != 0, true
}

// compare applies a comparison operator with REDCap's rules:
//   - A blank equals only a blank: [x] = "" is true when x is empty and
//     [x] = 0 is false. <> is the negation of =.
//   - <, <=, >, >= with a blank on either side are false (a missing value is
//     neither smaller nor larger than anything; [x] < 5 is false when x is
//     empty, and so is "" <= "").
//   - When both sides are numbers or look numeric they compare as numbers:
//     '01' = 1 and '1.0' = '1' are true, '10' > '9' is true.
//   - Otherwise both compare as text, byte by byte and case-sensitively:
//     'abc' = 'ABC' is false, '2024-01-02' > '2024-01-01' is true.
func compare(op opKind, a, b Value) bool {
	if a.kind == KindBlank || b.kind == KindBlank {
		same := a.kind == b.kind
		switch op {
		case opEq:
			return same
		case opNe:
			return !same
		}
		return false
	}
	c := 0
	fa, oka := a.Number()
	fb, okb := b.Number()
	if oka && okb {
		switch {
		case fa < fb:
			c = -1
		case fa > fb:
			c = 1
		}
	} else {
		sa, sb := a.text(), b.text()
		switch {
		case sa < sb:
			c = -1
		case sa > sb:
			c = 1
		}
	}
	switch op {
	case opEq:
		return c == 0
	case opNe:
		return c != 0
	case opLt:
		return c < 0
	case opLe:
		return c <= 0
	case opGt:
		return c > 0
	case opGe:
		return c >= 0
	}
	return false
}
