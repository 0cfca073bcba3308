package engine

import "testing"

// redact shows the same characters however the text is written: the fast
// path for valid UTF-8 agrees with the rune-by-rune form.
func TestRedactShowsOnlyTheEnds(t *testing.T) {
	cases := map[string]string{
		"":                     "",
		"abcd":                 "••••",
		"+13125550100":         "+1••••••••00",
		"(312) 555-0110":       "••••••••••••10",
		"p1@example.org":       "••••••••••••rg",
		"+é":                   "••",
		"+éçü1234":             "+é••••34",
		"ünïcödé@exämple.org":  "•••••••••••••••••rg",
		"+1\xff\xfe55501":      "+1•••••01",
		"\xff\xfe\xfd\xfc\xfb": "•••\ufffd\ufffd",
	}
	for in, want := range cases {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
		if got, ref := redact(in), redactRunes(in); got != ref {
			t.Errorf("redact(%q) = %q, rune by rune %q", in, got, ref)
		}
	}
}
