package logic

import (
	"errors"
	"strings"
	"testing"
)

// TestSafetyEvalErrorsNameFieldNotValue proves that evaluation errors, which
// end up in logs and in the reasons a participant was skipped, name the
// field and the kind of problem but never the participant's value.
func TestSafetyEvalErrorsNameFieldNotValue(t *testing.T) {
	secret := map[string]string{
		"[first_name]":   "Ana Secretname",
		"[weight]":       "seventy kilos",
		"[consent_date]": "next Tuesday",
		"[us_date]":      "31-12-2026",
		"[unit]":         "fortnights",
		"[flag]":         "perhaps",
		"[fmt]":          "yyyy",
		"[phone]":        "415 555 0101",
	}
	env := newEnv(t, secret)
	tests := []struct {
		src  string
		want string // the field or operand the error must name
	}{
		{"[weight] * 2 > 100", "[weight] does not hold a number"},
		{"[weight] + 1", "[weight] does not hold a number"},
		{"-[weight] = 1", "[weight] does not hold a number"},
		{"[first_name] = 'x' or [first_name] > 2 and [weight] / 2 > 1", "[weight] does not hold a number"},
		{"sum([weight], 1) > 1", "sum: [weight] does not hold a number"},
		{"round(1.5, [weight]) = 2", "round: [weight] does not hold a number"},
		{"mod([phone], 7) = 1", "mod: [phone] does not hold a number"},
		{"[first_name]", "the condition gives text"},
		{"[first_name] and 1", "[first_name] does not hold a number or true/false"},
		{"if([first_name], 1, 2) = 1", "[first_name] does not hold a number or true/false"},
		{"datediff([consent_date], 'today', 'd') >= 3", "datediff: [consent_date] does not hold a date"},
		{"datediff('2026-01-01', [consent_date], 'd') >= 3", "datediff: [consent_date] does not hold a date"},
		{"datediff([us_date], 'today', 'd', 'mdy') >= 3", "datediff: [us_date] does not hold a date"},
		{"datediff('2026-01-01', 'today', [unit]) >= 3", "datediff: [unit] does not hold a unit"},
		{"datediff('2026-01-01', 'today', 'd', [flag]) >= 3", "datediff: [flag] does not hold true or false"},
		{"datediff('2026-01-01', 'today', 'd', [fmt], true) >= 3", "datediff: [fmt] does not hold a date format"},
		{"concat([first_name], 'x') * 2 > 1", "concat([first_name], 'x') does not give a number"},
	}
	for _, tt := range tests {
		x, err := Parse(tt.src)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.src, err)
		}
		_, err = x.True(env)
		var ee *EvalError
		if !errors.As(err, &ee) {
			t.Errorf("True(%q) error = %v, want an *EvalError", tt.src, err)
			continue
		}
		msg := err.Error()
		for _, v := range secret {
			if strings.Contains(msg, v) {
				t.Errorf("True(%q) error %q quotes the value %q", tt.src, msg, v)
			}
		}
		if !strings.Contains(msg, tt.want) {
			t.Errorf("True(%q) error %q does not say %q", tt.src, msg, tt.want)
		}
	}
}
