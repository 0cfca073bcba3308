package logic

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzEnv answers every lookup with one of a few kinds of value, chosen by
// the length of the field name, so evaluation meets blanks, numbers, text
// and dates.
type fuzzEnv struct{}

var fuzzValues = []string{"", "1", "abc", "2026-11-10", "-3.5", "2026-11-10 08:30", "UNK"}

func (fuzzEnv) Lookup(r Ref) (string, bool) {
	v := fuzzValues[(len(r.Field)+len(r.Code)+len(r.Instance))%len(fuzzValues)]
	return v, v != ""
}
func (fuzzEnv) Now() time.Time              { return time.Date(2026, 11, 23, 14, 30, 0, 0, time.UTC) }
func (fuzzEnv) IsMissingCode(v string) bool { return v == "UNK" }

// FuzzParseEval checks that parsing and evaluating never panic, that a parsed
// expression prints back as its input, that errors point inside the input,
// and that conjuncts and refs round-trip.
func FuzzParseEval(f *testing.F) {
	f.Add("[consent_complete] = '2' and [sms_opt_in] = '1'")
	f.Fuzz(func(t *testing.T, src string) {
		x, err := Parse(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %T, want *SyntaxError", src, err)
			}
			if n := utf8.RuneCountInString(src); se.Col < 1 || se.Col > n+1 || se.Msg == "" {
				t.Fatalf("Parse(%q): col %d outside 1..%d or empty message %q", src, se.Col, n+1, se.Msg)
			}
			return
		}
		if x.String() != src {
			t.Fatalf("String() = %q, want the input %q", x.String(), src)
		}
		for _, r := range x.Refs() {
			y, err := Parse(r.String())
			if err != nil || len(y.Refs()) != 1 || y.Refs()[0] != r {
				t.Fatalf("%q: ref %#v prints as %q, which parses to %v, %v", src, r, r.String(), y, err)
			}
		}
		var env Env = fuzzEnv{}
		whole, wholeErr := x.True(env)
		if wholeErr != nil {
			var ee *EvalError
			if !errors.As(wholeErr, &ee) {
				t.Fatalf("True(%q) error %T, want *EvalError", src, wholeErr)
			}
		}
		all, anyErr := true, false
		for _, c := range x.Conjuncts() {
			if !strings.Contains(src, c.String()) {
				t.Fatalf("%q: conjunct %q is not part of it", src, c)
			}
			if _, err := Parse(c.String()); err != nil {
				t.Fatalf("%q: conjunct %q does not parse: %v", src, c, err)
			}
			ok, err := c.True(env)
			anyErr = anyErr || err != nil
			all = all && ok
		}
		if !anyErr && (wholeErr != nil || whole != all) {
			t.Fatalf("%q: True = %v, %v but its conjuncts give %v", src, whole, wholeErr, all)
		}
	})
}
