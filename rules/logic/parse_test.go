package logic

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		src string
		col int
		msg string
	}{
		{"", 1, "the condition is empty"},
		{"   ", 4, "the condition is empty"},
		{"[consent_complete = '2'", 18, "expected ] to close [consent_complete"},
		{"[consent_complete", 18, "expected ] to close [consent_complete"},
		{"[a] = 1 and [b", 15, "expected ] to close [b"},
		{"[]", 1, "empty [ ]: put a field name inside, as in [consent]"},
		{"[consent_complete] =", 21, "unexpected end of condition: a comparison needs a value after ="},
		{"[age] >= ", 10, "unexpected end of condition: a comparison needs a value after >="},
		{"[a] = 1 and", 12, "unexpected end of condition: 'and' needs a condition after it"},
		{"[a] = 1 OR ", 12, "unexpected end of condition: 'OR' needs a condition after it"},
		{"[a] +", 6, "unexpected end of condition: expected a value after +"},
		{"[a] = and [b] = 1", 7, "a comparison needs a value after =, found and"},
		{"[a] = 1 and and [b] = 1", 13, "expected a value (a [field], a number or 'text') after and, found and"},
		{"[a] = )", 7, "a comparison needs a value after =, found )"},
		{"datdiff([dob], 'today', 'y')", 1, "unknown function 'datdiff' (did you mean datediff?)"},
		{"1 + frobnicate(2)", 5, "unknown function 'frobnicate'"},
		{"datediff([dob], 'today')", 1, "datediff takes 3 to 5 arguments, not 2"},
		{"if([a] = 1, 2)", 1, "if takes 3 arguments, not 2"},
		{"round()", 1, "round takes 1 or 2 arguments, not 0"},
		{"sum()", 1, "sum takes at least 1 argument, not 0"},
		{"abs(1, 2)", 1, "abs takes 1 argument, not 2"},
		{"datediff([dob], 'today', 'days')", 26, "datediff unit 'days' is not one of 'y' (years), 'M' (months), 'd' (days), 'h' (hours), 'm' (minutes), 's' (seconds)"},
		{"datediff([dob], 'today', 'd', 'iso', true)", 31, "datediff date format 'iso' is not one of 'ymd', 'mdy', 'dmy'"},
		{"datediff([dob], 'today', 'd', 'signed')", 31, "datediff's fourth argument 'signed' is not a date format ('ymd', 'mdy', 'dmy') or true/false"},
		{"datediff([dob], 'today', 'd', 'ymd', 'yes')", 38, "datediff's fifth argument 'yes' is not a date format ('ymd', 'mdy', 'dmy') or true/false"},
		{"round([a], 1", 13, "unexpected end of condition: expected ) to close round( at col 6"},
		{"round([a] 1)", 11, "expected , or ) in round(…), found 1"},
		{"round([a],)", 11, "expected a value (a [field], a number or 'text') after ,, found )"},
		{"([a] = 1", 9, "unexpected end of condition: expected ) to close the ( at col 1"},
		{"([a] = 1 [b]", 10, "expected ) to close the ( at col 1, found [b]"},
		{"[a] = 1)", 8, "unexpected ): there is no ( for it to close"},
		{"[a] = 1, 2", 8, "unexpected , outside a function call"},
		{"[a] [b] = 1", 5, "unexpected [b]: is an operator (=, and, or, …) missing before it?"},
		{"[a] = 1 '" + strings.Repeat("é", 40) + "'", 9, "unexpected '" + strings.Repeat("é", 15) + "…': is an operator (=, and, or, …) missing before it?"},
		{"[a] = 'x' 'y'", 11, "unexpected 'y': is an operator (=, and, or, …) missing before it?"},
		{"[a] = 1 nand [b] = 1", 9, "unexpected word 'nand': expected and, or, or an operator"},
		{"NA", 1, "unexpected word 'NA': put field names in [brackets] and text in 'quotes'"},
		{"[a] = yes", 7, "unexpected word 'yes': put field names in [brackets] and text in 'quotes'"},
		{"[a] = 'x", 7, "this text has no closing '"},
		{`[a] = "x`, 7, `this text has no closing "`},
		{"[a] = 1 & [b] = 1", 9, "use 'and' to combine conditions"},
		{"[a] = 1 | [b] = 1", 9, "use 'or' to combine conditions"},
		{"[a] = ‘x’", 7, "‘ is a curly quote, which REDCap does not accept: type a straight ' or \" (word processors change them)"},
		{"[a] = 1 # not a comment mid-line", 9, "unexpected character '#'"},
		{"![a]", 1, `REDCap logic has no '!': use <> or != to mean "not equal"`},
		{"[a] = 1 = 1", 9, "a second comparison = right after [a] = 1: combine comparisons with and / or"},
		{"[a] ≥ 1", 5, "unexpected character '≥'"},
		{"[é] = 1", 2, "expected a field name after ["},
		{"[ age ] = 1", 2, "expected a field name after ["},
		{"[", 2, "expected a field name after ["},
		{"'é' = [a] ; 1", 11, "unexpected character ';'"},
		{"[2] = 1", 1, "[2] is an instance number: put it after a field, as in [field][2]"},
		{"[a][b][c] = 1", 7, "[c] is not an instance: use a number or current-instance, previous-instance, next-instance, first-instance, last-instance"},
		{"[e][a][1][2] = 1", 10, "too many [ ] in a row: the most is [event][field][instance]"},
		{"[race(2] = 1", 6, "a checkbox choice is written [field(code)], as in [race(2)]"},
		{"[race()] = 1", 6, "a checkbox choice is written [field(code)], as in [race(2)]"},
		{"[race)] = 1", 6, "unexpected ) in [race)]"},
		{"[race(a:b)] = 1", 6, "(a:b) is not a checkbox choice code: use letters, digits and _"},
		{"[name:label] = 1", 6, "[name:label]: logic accepts only [name:value], [name:checked] and [name:unchecked]; ':label' is piping syntax for messages"},
		{"[1abc] = 1", 1, "[1abc] is not a field name: use letters, digits and _"},
		{"[-x] = 1", 1, "[-x] is not a field name or smart variable"},
		{"[ev.1][a] = 1", 1, "[ev.1] is not an event name: use letters, digits and _ as in [baseline_arm_1]"},
	}
	deep := strings.Repeat("(", 99) + "1" + strings.Repeat(")", 99)
	if _, err := Parse(deep); err != nil {
		t.Errorf("99 nested parentheses: %v", err)
	}
	tests = append(tests,
		struct {
			src string
			col int
			msg string
		}{"(" + deep + ")", 101, "the condition is nested more than 100 levels deep"},
		struct {
			src string
			col int
			msg string
		}{strings.Repeat("-", 200) + "1", 100, "the condition is nested more than 100 levels deep"},
		struct {
			src string
			col int
			msg string
		}{strings.Repeat("2^", 200) + "1", 200, "the condition is nested more than 100 levels deep"},
	)
	for _, tt := range tests {
		x, err := Parse(tt.src)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %v, %v; want *SyntaxError", tt.src, x, err)
			continue
		}
		if se.Col != tt.col || se.Msg != tt.msg {
			t.Errorf("Parse(%q):\n got col %d: %s\nwant col %d: %s", tt.src, se.Col, se.Msg, tt.col, tt.msg)
		}
	}
}

func TestSyntaxErrorString(t *testing.T) {
	_, err := Parse("[a] = ")
	if got, want := err.Error(), "col 7: unexpected end of condition: a comparison needs a value after ="; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestRefs(t *testing.T) {
	tests := []struct {
		src  string
		want []Ref
	}{
		{"1 + 2", nil},
		{"[a] = 1 and [b] = [a]", []Ref{{Field: "a"}, {Field: "b"}}},
		{"[race(2)] = '1' or [race(-1)] = '1'", []Ref{{Field: "race", Code: "2"}, {Field: "race", Code: "-1"}}},
		{"[baseline_arm_1][consent] = 1", []Ref{{Event: "baseline_arm_1", Field: "consent"}}},
		{"[baseline_arm_1][race(2)] = 1", []Ref{{Event: "baseline_arm_1", Field: "race", Code: "2"}}},
		{"[bp_sys][2] > [bp_sys][previous-instance]", []Ref{{Field: "bp_sys", Instance: "2"}, {Field: "bp_sys", Instance: "previous-instance"}}},
		{"[bp_sys][current-instance] + [bp_sys][last-instance] + [bp_sys][first-instance]", []Ref{
			{Field: "bp_sys", Instance: "current-instance"}, {Field: "bp_sys", Instance: "last-instance"}, {Field: "bp_sys", Instance: "first-instance"}}},
		{"[visit_arm_1][bp_sys][3]", []Ref{{Event: "visit_arm_1", Field: "bp_sys", Instance: "3"}}},
		{"[visit_arm_1][bp_sys][last-instance]", []Ref{{Event: "visit_arm_1", Field: "bp_sys", Instance: "last-instance"}}},
		{"[record-name] <> '' and [event-name] = 'x' and [current-instance] = 1", []Ref{{Field: "record-name"}, {Field: "event-name"}, {Field: "current-instance"}}},
		{"[previous-event-name][weight] > 1", []Ref{{Event: "previous-event-name", Field: "weight"}}},
		{"[survey-date-completed:consent] <> ''", []Ref{{Field: "survey-date-completed:consent"}}},
		{"datediff([dob], 'today', 'y') > 18 and if([a], [b], [c])", []Ref{{Field: "dob"}, {Field: "a"}, {Field: "b"}, {Field: "c"}}},
	}
	for _, tt := range tests {
		x, err := Parse(tt.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		if got := x.Refs(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Refs(%q) = %#v, want %#v", tt.src, got, tt.want)
		}
	}
}

func TestRefString(t *testing.T) {
	tests := []struct {
		ref  Ref
		want string
	}{
		{Ref{Field: "age"}, "[age]"},
		{Ref{Field: "race", Code: "2"}, "[race(2)]"},
		{Ref{Event: "baseline_arm_1", Field: "race", Code: "2"}, "[baseline_arm_1][race(2)]"},
		{Ref{Field: "bp", Instance: "last-instance"}, "[bp][last-instance]"},
		{Ref{Event: "v_arm_1", Field: "bp", Instance: "2"}, "[v_arm_1][bp][2]"},
		{Ref{Field: "record-name"}, "[record-name]"},
	}
	for _, tt := range tests {
		if got := tt.ref.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.ref, got, tt.want)
		}
		// The string parses back to the same reference.
		x, err := Parse(tt.want)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.want, err)
			continue
		}
		if refs := x.Refs(); len(refs) != 1 || refs[0] != tt.ref {
			t.Errorf("Parse(%q).Refs() = %v, want [%v]", tt.want, refs, tt.ref)
		}
	}
	if !(Ref{Field: "record-name"}).IsSmart() || (Ref{Field: "record_id"}).IsSmart() {
		t.Error("IsSmart: want true for record-name only")
	}
}

func TestConjuncts(t *testing.T) {
	tests := []struct {
		src  string
		want []string
	}{
		{"[a] = 1", []string{"[a] = 1"}},
		{"  [a] = 1 and [b] = 2  ", []string{"[a] = 1", "[b] = 2"}},
		{"[consent_complete] = '2' and [sms_opt_in] = '1' AND datediff([enroll_date],'today','d') >= 7",
			[]string{"[consent_complete] = '2'", "[sms_opt_in] = '1'", "datediff([enroll_date],'today','d') >= 7"}},
		{"[a] = 1 or [b] = 2 and [c] = 3", []string{"[a] = 1 or [b] = 2 and [c] = 3"}},
		{"([a] = 1 or [b] = 2) and [c] = 3", []string{"([a] = 1 or [b] = 2)", "[c] = 3"}},
		{"([a] = 1 and [b] = 2) and [c] = 3", []string{"([a] = 1 and [b] = 2)", "[c] = 3"}},
		{"([a] = 1 and [b] = 2)", []string{"([a] = 1 and [b] = 2)"}},
	}
	env := newEnv(t, map[string]string{"[a]": "1", "[b]": "2", "[c]": "4"})
	for _, tt := range tests {
		x, err := Parse(tt.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		if x.String() != tt.src {
			t.Errorf("String() = %q, want %q", x.String(), tt.src)
		}
		var got []string
		all := true
		for _, c := range x.Conjuncts() {
			got = append(got, c.String())
			ok, err := c.True(env)
			if err != nil {
				t.Errorf("%q: conjunct %q: %v", tt.src, c, err)
			}
			all = all && ok
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Conjuncts(%q) = %q, want %q", tt.src, got, tt.want)
		}
		// The conjuncts are true together exactly when the whole is.
		if whole, err := x.True(env); err != nil || whole != all {
			t.Errorf("%q: True = %v, %v; conjuncts all true = %v", tt.src, whole, err, all)
		}
	}
}
