package logic

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Seconds in each datediff unit. REDCap counts a year as 365.2425 days and
// a month as 30.44 days; units are case-sensitive (M months, m minutes).
func unitSeconds(u string) (float64, bool) {
	switch u {
	case "y":
		return 365.2425 * 86400, true
	case "M":
		return 30.44 * 86400, true
	case "d":
		return 86400, true
	case "h":
		return 3600, true
	case "m":
		return 60, true
	case "s":
		return 1, true
	}
	return 0, false
}

func isDateFormat(s string) bool { return s == "ymd" || s == "mdy" || s == "dmy" }

// fnDatediff is datediff(d1, d2, unit[, format][, returnSignedValue]).
//
// d1 and d2 are dates (YYYY-MM-DD), datetimes (YYYY-MM-DD HH:MM[:SS]),
// 'today' (the date of Env.Now) or 'now' (Env.Now to the second). format
// (ymd, mdy or dmy) says how dates not in ISO form are written, e.g.
// 10-14-2026 with mdy; ISO dates are always accepted. The result is
// fractional, e.g. 1.5 for 36 hours in days, and its absolute value unless
// returnSignedValue is true, in which case it is d2 − d1. With four
// arguments the fourth is the format if it is ymd/mdy/dmy and the sign flag
// otherwise, as REDCap allows both.
//
// A blank date gives a blank result, so datediff([x],'today','d') > 7 is
// false while x is empty. A date that cannot be read is an error rather than
// a silent blank, so a rule on a mistyped field is noticed.
func fnDatediff(n *node, env Env) (Value, error) {
	d1, err := n.kids[0].eval(env)
	if err != nil {
		return Value{}, err
	}
	d2, err := n.kids[1].eval(env)
	if err != nil {
		return Value{}, err
	}
	u, err := n.kids[2].eval(env)
	if err != nil {
		return Value{}, err
	}
	unit, ok := unitSeconds(u.text())
	if !ok {
		return Value{}, &EvalError{Expr: n.text, Msg: "datediff: " + n.kids[2].isNot("a unit: y, M, d, h, m or s")}
	}
	format, signed := "ymd", false
	for i := 3; i < len(n.kids); i++ {
		v, err := n.kids[i].eval(env)
		if err != nil {
			return Value{}, err
		}
		if i == 3 && (len(n.kids) == 5 || isDateFormat(v.text())) {
			if !isDateFormat(v.text()) {
				return Value{}, &EvalError{Expr: n.text, Msg: "datediff: " + n.kids[i].isNot("a date format: ymd, mdy or dmy")}
			}
			format = v.text()
			continue
		}
		b, ok := flagValue(v)
		if !ok {
			return Value{}, &EvalError{Expr: n.text, Msg: "datediff: " + n.kids[i].isNot("true or false (returnSignedValue)")}
		}
		signed = b
	}
	if d1.IsBlank() || d2.IsBlank() {
		return Value{}, nil
	}
	now := env.Now()
	t1, ok := parseWhen(d1.text(), format, now)
	if !ok {
		return Value{}, n.badDate(n.kids[0], format)
	}
	t2, ok := parseWhen(d2.text(), format, now)
	if !ok {
		return Value{}, n.badDate(n.kids[1], format)
	}
	diff := float64(t2-t1) / unit
	if !signed {
		diff = math.Abs(diff)
	}
	return NumberValue(diff), nil
}

// fnDatePart is year, month and day of a date or datetime (YYYY-MM-DD,
// optionally with a time), 'today' or 'now'. A blank date gives blank; text
// that is not a date is an error, as in datediff.
func fnDatePart(n *node, env Env) (Value, error) {
	v, err := n.kids[0].eval(env)
	if err != nil || v.IsBlank() {
		return Value{}, err
	}
	secs, ok := parseWhen(v.text(), "ymd", env.Now())
	if !ok {
		return Value{}, n.badDate(n.kids[0], "ymd")
	}
	t := time.Unix(secs, 0).UTC()
	switch n.fn.name {
	case "year":
		return NumberValue(float64(t.Year())), nil
	case "month":
		return NumberValue(float64(t.Month())), nil
	}
	return NumberValue(float64(t.Day())), nil
}

// badDate reports that operand k of datediff n holds no date it can read.
func (n *node) badDate(k *node, format string) error {
	want := map[string]string{"ymd": "YYYY-MM-DD", "mdy": "MM-DD-YYYY", "dmy": "DD-MM-YYYY"}[format]
	return &EvalError{Expr: n.text, Msg: fmt.Sprintf("%s: %s: expected %s (optionally with HH:MM or HH:MM:SS), 'today' or 'now'", n.fn.name, k.isNot("a date"), want)}
}

// flagValue reads returnSignedValue: true/false (bare or quoted) or 1/0.
func flagValue(v Value) (bool, bool) {
	switch {
	case v.kind == KindString && strings.EqualFold(v.str, "true"):
		return true, true
	case v.kind == KindString && strings.EqualFold(v.str, "false"):
		return false, true
	}
	return truth(v)
}

// parseWhen reads a datediff operand as seconds since 0001-01-01 00:00 of a
// calendar without time zones: REDCap dates have none, and 'now' is taken
// from Env.Now's wall clock, so daylight-saving changes do not shift days.
func parseWhen(s, format string, now time.Time) (int64, bool) {
	switch {
	case strings.EqualFold(s, "today"):
		y, m, d := now.Date()
		return civil(y, int(m), d, 0, 0, 0), true
	case strings.EqualFold(s, "now"):
		y, m, d := now.Date()
		h, mi, sec := now.Clock()
		return civil(y, int(m), d, h, mi, sec), true
	}
	var y, m, d int
	var ok bool
	rest := ""
	if len(s) >= 10 && isSep(s[4]) && s[4] == s[7] {
		y, ok = digits(s[0:4])
		m2, ok2 := digits(s[5:7])
		d2, ok3 := digits(s[8:10])
		m, d, ok = m2, d2, ok && ok2 && ok3
		rest = s[10:]
	} else if len(s) >= 10 && isSep(s[2]) && s[2] == s[5] && format != "ymd" {
		a, ok1 := digits(s[0:2])
		b, ok2 := digits(s[3:5])
		y, ok = digits(s[6:10])
		ok = ok && ok1 && ok2
		if format == "mdy" {
			m, d = a, b
		} else {
			d, m = a, b
		}
		rest = s[10:]
	}
	if !ok || m < 1 || m > 12 || d < 1 || d > daysIn(y, m) {
		return 0, false
	}
	var h, mi, sec int
	if rest != "" {
		if len(rest) != 6 && len(rest) != 9 || rest[0] != ' ' && rest[0] != 'T' || rest[3] != ':' {
			return 0, false
		}
		h, ok = digits(rest[1:3])
		mi2, ok2 := digits(rest[4:6])
		mi, ok = mi2, ok && ok2
		if len(rest) == 9 {
			sec2, ok3 := digits(rest[7:9])
			sec, ok = sec2, ok && ok3 && rest[6] == ':'
		}
		if !ok || h > 23 || mi > 59 || sec > 59 {
			return 0, false
		}
	}
	return civil(y, m, d, h, mi, sec), true
}

func isSep(c byte) bool { return c == '-' || c == '/' }

// digits parses a fixed-width run of ASCII digits.
func digits(s string) (int, bool) {
	v := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		v = v*10 + int(s[i]-'0')
	}
	return v, true
}

func daysIn(y, m int) int {
	return time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func civil(y, m, d, h, mi, s int) int64 {
	return time.Date(y, time.Month(m), d, h, mi, s, 0, time.UTC).Unix()
}

// checkDatediff rejects, at parse time, literal units, formats and flags
// that datediff would reject when run.
func checkDatediff(src string, args []*node) error {
	if u := args[2]; u.op == opLit {
		if _, ok := unitSeconds(u.val.text()); !ok {
			return errAt(src, u.pos, "datediff unit %s is not one of 'y' (years), 'M' (months), 'd' (days), 'h' (hours), 'm' (minutes), 's' (seconds)", u.text)
		}
	}
	if len(args) == 5 {
		if f := args[3]; f.op == opLit && !isDateFormat(f.val.text()) {
			return errAt(src, f.pos, "datediff date format %s is not one of 'ymd', 'mdy', 'dmy'", f.text)
		}
	}
	if last := args[len(args)-1]; len(args) >= 4 && last.op == opLit {
		if _, ok := flagValue(last.val); !ok && !(len(args) == 4 && isDateFormat(last.val.text())) {
			return errAt(src, last.pos, "datediff's %s argument %s is not a date format ('ymd', 'mdy', 'dmy') or true/false", ordinal(len(args)), last.text)
		}
	}
	return nil
}

func ordinal(i int) string {
	return map[int]string{4: "fourth", 5: "fifth"}[i]
}
