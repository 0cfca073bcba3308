package logic

import (
	"errors"
	"strings"
	"testing"
)

// evalCase is one expression and the value REDCap's documentation gives
// for it (or, where REDCap is silent, the decision nudge documents).
type evalCase struct {
	src  string
	want Value
}

func runEvalCases(t *testing.T, env Env, tests []evalCase) {
	t.Helper()
	for _, tt := range tests {
		x, err := Parse(tt.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		got, err := x.Eval(env)
		if err != nil {
			t.Errorf("Eval(%q): %v", tt.src, err)
			continue
		}
		if !sameValue(got, tt.want) {
			t.Errorf("Eval(%q) = %s %q, want %s %q", tt.src, got.Kind(), got, tt.want.Kind(), tt.want)
		}
	}
}

// TestSpecialFunctions covers the special functions of REDCap's logic
// help that were added for the whole language, with the examples of its
// documentation where it gives them.
func TestSpecialFunctions(t *testing.T) {
	env := newEnv(t, map[string]string{
		"[a]": "3", "[b]": "1", "[c]": "2", "[d]": "10", "[none]": "",
		"[first]": "Ada", "[last]": "Lovelace", "[phone]": "(415) 555-0101",
		"[dob]": "1990-05-17", "[visit]": "2026-02-28 23:59", "[unk]": "UNK", "[na]": "NA",
	})
	runEvalCases(t, env, []evalCase{
		// median: blanks ignored, the middle value or the mean of the two middle ones.
		{"median([a], [b], [c])", num(2)},
		{"median([a], [b], [c], [d])", num(2.5)},
		{"median([a], [none], [b])", num(2)},
		{"median([none])", blank},
		{"median(5)", num(5)},
		// stdev: the sample standard deviation, blanks ignored.
		{"stdev(2, 4, 4, 4, 5, 5, 7, 9)", num(2.138089935299395)},
		{"stdev([a], [b], [c])", num(1)},
		{"stdev([a], [none])", blank}, // one number has no sample deviation
		{"stdev([none], [none])", blank},
		// log: natural without a base, otherwise to the base.
		{"log(100, 10)", num(2)},
		{"log(8, 2)", num(3)},
		{"round(log(exponential(1)), 6)", num(1)},
		{"log([d], [none])", num(2.302585092994046)},
		{"log(0)", blank},
		{"log(-1, 10)", blank},
		{"log(5, 1)", blank},
		{"log([none], 10)", blank},
		// exponential and exponents.
		{"exponential(0)", num(1)},
		{"round(exponential(2), 4)", num(7.3891)},
		{"(4)^(3)", num(64)},
		{"([d]+43)^(2)", num(2809)},
		// rounding examples of the help text.
		{"roundup(14.384, 1)", num(14.4)},
		{"rounddown(14.384, 1)", num(14.3)},
		{"round(14.384, 1)", num(14.4)},
		{"abs(-7.1)", num(7.1)},
		{"abs(45)", num(45)},
		{"mod(10, 3)", num(1)},
		{"sqrt(16)", num(4)},
		// missing-data codes (the test project's codes are UNK and NA).
		{"ismissingcode([unk])", yes},
		{"ismissingcode([none])", no},
		{"ismissingcode([a])", no},
		{"isblanknotmissingcode([none])", yes},
		{"isblanknotmissingcode([unk])", no},
		{"isblanknotmissingcode([a])", no},
		{"isblankormissingcode([unk])", yes},
		{"isblankormissingcode([none])", yes},
		{"hasmissingcode([unk], 'NASK,UNK')", yes},
		{"hasmissingcode([unk], 'NASK, NI')", no},
		{"hasmissingcode([na], 'NA, UNK')", yes},
		{"hasmissingcode([none], 'UNK')", no},
		{"hasmissingcode([a], '3')", no}, // listed, but not a missing-data code
		// year, month, day of dates, datetimes, 'today' and 'now'.
		{"year([dob])", num(1990)},
		{"month([dob])", num(5)},
		{"day([dob])", num(17)},
		{"day([visit])", num(28)},
		{"year('today')", num(2026)},
		{"month('now')", num(11)},
		{"day('today')", num(23)},
		{"year([none])", blank},
		{"year([dob]) < 2000", yes},
		// text functions.
		{"concat_ws(' and ', 'Carrot', 'Potato', 'Tomato')", text("Carrot and Potato and Tomato")},
		{"concat_ws(', ', [first], [none], [last])", text("Ada, Lovelace")},
		{"concat_ws('-', [none])", blank},
		{"replace_text([phone], '-', '')", text("(415) 5550101")},
		{"replace_text('aAa', 'a', 'b')", text("bAb")}, // case matters
		{"replace_text('abc', '', 'x')", text("abc")},
		{"not_contain([first], 'z')", yes},
		{"not_contains([first], 'ad')", no},
		{"mid('record-7', find('-', 'record-7')+1, 1)", text("7")},
		{"right(concat('00', 7), 3)", text("007")},
		{"lower(concat(trim(' Ada '), '_', trim([last])))", text("ada_lovelace")},
		// the documented examples of datediff
		{"rounddown(datediff([dob], '2026-05-16', 'y'))", num(35)},
		{"rounddown(datediff([dob], '2026-05-17', 'y'))", num(36)},
		{"datediff('2026-11-20', 'today', 'd')", num(3)},
	})
}

// TestSemanticDecisions documents, one row each, how nudge decides where
// REDCap's documentation is silent or easy to misread.
func TestSemanticDecisions(t *testing.T) {
	env := newEnv(t, map[string]string{
		"[one]": "1", "[one_dot]": "1.0", "[zero]": "0", "[none]": "",
		"[d]": "2026-11-10", "[dt]": "2026-11-10 09:00",
		"[cb(1)]": "1", "[cb(2)]": "0", "[cb:checked]": "1", "[cb:unchecked]": "2",
		"[unk]": "UNK",
	})
	tests := []struct {
		why string
		evalCase
	}{
		{"blank is not 0", evalCase{"[none] = 0", no}},
		{"blank equals blank", evalCase{"[none] = ''", yes}},
		{"blank is neither less nor more", evalCase{"[none] < 5", no}},
		{"blank in arithmetic makes blank", evalCase{"[none] + 1", blank}},
		{"sum skips blanks", evalCase{"sum([none], 1)", num(1)}},
		{"'1' equals 1", evalCase{"[one] = 1", yes}},
		{"'1.0' equals '1' (both numeric)", evalCase{"[one_dot] = '1'", yes}},
		{"'1.0' equals 1", evalCase{"[one_dot] = 1", yes}},
		{"a yes/no '0' is false as a condition", evalCase{"if([zero], 'y', 'n')", text("n")}},
		{"text compares with case", evalCase{"'abc' = 'ABC'", no}},
		{"dates compare as text, which orders ISO dates", evalCase{"[d] > '2026-11-09'", yes}},
		{"a datetime is later than its date", evalCase{"[dt] > [d]", yes}},
		{"datediff is unsigned by default", evalCase{"datediff('today', [d], 'd')", num(13)}},
		{"datediff signed is d2 - d1", evalCase{"datediff('today', [d], 'd', true)", num(-13)}},
		{"a checked box is '1'", evalCase{"[cb(1)] = '1'", yes}},
		{"an unchecked box is '0', not blank", evalCase{"[cb(2)] = '0'", yes}},
		{"[field:value] is [field]", evalCase{"[one:value] = 1", yes}},
		{"[cb:checked] lists checked codes", evalCase{"contains([cb:checked], '1')", yes}},
		{"[cb:unchecked] lists unchecked codes", evalCase{"[cb:unchecked] = '2'", yes}},
		{"a missing code is not blank", evalCase{"[unk] = ''", no}},
		{"a missing code is blank-or-missing", evalCase{"isblankormissingcode([unk])", yes}},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) { runEvalCases(t, env, []evalCase{tt.evalCase}) })
	}
}

// TestToleratedSyntax proves that the constructs REDCap accepts without
// documenting them parse to the same thing as their canonical forms, and
// that each is reported as a Note with its column and canonical form.
func TestToleratedSyntax(t *testing.T) {
	env := newEnv(t, map[string]string{"[a]": "1", "[b]": "2"})
	tests := []struct {
		src, canonical string
		notes          []Note
	}{
		{"[a] == 1", "[a] = 1", []Note{{5, "==", "="}}},
		{"[a] = 1 && [b] = 2", "[a] = 1 and [b] = 2", []Note{{9, "&&", "and"}}},
		{"[a] = 2 || [b] = 2", "[a] = 2 or [b] = 2", []Note{{9, "||", "or"}}},
		{"[a]==1&&[b]==3||[b]==2", "[a]=1 and [b]=3 or [b]=2", []Note{{4, "==", "="}, {7, "&&", "and"}, {12, "==", "="}, {15, "||", "or"}, {20, "==", "="}}},
		{"[a] != 2", "[a] <> 2", nil},
		{"[a] = 1   \t\n", "[a] = 1", nil},
		{"# consented\n[a] = 1", "[a] = 1", nil},
		{"// first line\n  // second\n[a] = 1\n# and\nand [b] = 2", "[a] = 1 and [b] = 2", nil},
		{"[a] = '#1' or [a] = 1", "[a] = 1", nil},
		{"[a] = 1 // a comment only at the start of a line is one\n", "", nil},
		{"[a] = '==' or [a] = 1", "[a] = 1", nil},
	}
	for _, tt := range tests {
		x, err := Parse(tt.src)
		if tt.canonical == "" {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Errorf("Parse(%q) = %v, want a syntax error", tt.src, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		c, err := Parse(tt.canonical)
		if err != nil {
			t.Fatalf("canonical %q: %v", tt.canonical, err)
		}
		got, _ := x.Eval(env)
		want, _ := c.Eval(env)
		if !sameValue(got, want) {
			t.Errorf("%q = %v but %q = %v", tt.src, got, tt.canonical, want)
		}
		notes := x.Notes()
		if len(notes) != len(tt.notes) {
			t.Errorf("Notes(%q) = %v, want %v", tt.src, notes, tt.notes)
			continue
		}
		for i := range notes {
			if notes[i] != tt.notes[i] {
				t.Errorf("Notes(%q)[%d] = %v, want %v", tt.src, i, notes[i], tt.notes[i])
			}
		}
	}
	if n := (Note{5, "==", "="}).String(); !strings.Contains(n, "write =") || !strings.HasPrefix(n, "col 5:") {
		t.Errorf("Note.String() = %q", n)
	}
}

// TestModifierRefs checks how [field:value], [field:checked] and
// [field:unchecked] parse, and that other piping modifiers are refused.
func TestModifierRefs(t *testing.T) {
	for src, want := range map[string]Ref{
		"[a:value]":                   {Field: "a"},
		"[cb:checked]":                {Field: "cb", Modifier: ModChecked},
		"[ev_arm_1][cb:unchecked]":    {Event: "ev_arm_1", Field: "cb", Modifier: ModUnchecked},
		"[cb:checked][2]":             {Field: "cb", Modifier: ModChecked, Instance: "2"},
		"[cb:checked][last-instance]": {Field: "cb", Modifier: ModChecked, Instance: "last-instance"},
	} {
		x, err := Parse(src)
		if err != nil {
			t.Errorf("Parse(%q): %v", src, err)
			continue
		}
		if refs := x.Refs(); len(refs) != 1 || refs[0] != want {
			t.Errorf("Refs(%q) = %v, want %v", src, refs, want)
		}
	}
	if got := (Ref{Field: "cb", Modifier: ModChecked}).String(); got != "[cb:checked]" {
		t.Errorf("String() = %q", got)
	}
	for _, src := range []string{"[a:label] = 1", "[cb(1):checked] = 1", "[a:value:checked] = 1"} {
		if _, err := Parse(src); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", src)
		}
	}
}

// TestSafetyNewFunctionErrorsNameFieldNotValue extends the rule that
// evaluation errors name the field, never its value, to the functions
// added for the whole language.
func TestSafetyNewFunctionErrorsNameFieldNotValue(t *testing.T) {
	secret := "Ana Secretname"
	env := newEnv(t, map[string]string{"[name]": secret})
	for src, want := range map[string]string{
		"median([name], 1) = 1": "median: [name] does not hold a number",
		"stdev(1, [name]) = 1":  "stdev: [name] does not hold a number",
		"log([name]) = 1":       "log: [name] does not hold a number",
		"log(2, [name]) = 1":    "log: [name] does not hold a number",
		"exponential([name])":   "exponential: [name] does not hold a number",
		"year([name]) = 2026":   "year: [name] does not hold a date",
		"month([name]) = 1":     "month: [name] does not hold a date",
		"day([name]) = 1":       "day: [name] does not hold a date",
	} {
		x, err := Parse(src)
		if err != nil {
			t.Fatalf("Parse(%q): %v", src, err)
		}
		_, err = x.True(env)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), secret) {
			t.Errorf("True(%q) error = %v, want one saying %q without the value", src, err, want)
		}
	}
}

func TestComparisonsAndExplain(t *testing.T) {
	x, err := Parse("([sms_opt_in] = 'yes' and 2 <> [arm]) or [age] + 1 > 3 or ([b]) == (1)")
	if err != nil {
		t.Fatal(err)
	}
	got := x.Comparisons()
	want := []Comparison{
		{Ref: Ref{Field: "sms_opt_in"}, Op: "=", Literal: text("yes"), Col: 2, Text: "[sms_opt_in] = 'yes'"},
		{Ref: Ref{Field: "arm"}, Op: "<>", Literal: num(2), Col: 27, Text: "2 <> [arm]"},
		{Ref: Ref{Field: "b"}, Op: "==", Literal: num(1), Col: 59, Text: "([b]) == (1)"},
	}
	if len(got) != len(want) {
		t.Fatalf("Comparisons = %+v, want %+v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("Comparisons[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	env := newEnv(t, map[string]string{"[sms_opt_in]": "1", "[arm]": "2", "[age]": "5"})
	steps := x.Explain(env)
	if len(steps) == 0 || steps[0].Depth != 0 || steps[0].Value != yes {
		t.Fatalf("Explain: %+v", steps)
	}
	var lines []string
	for _, s := range steps {
		lines = append(lines, strings.Repeat(" ", s.Depth)+s.Text+" => "+s.Value.String())
	}
	joined := strings.Join(lines, "\n")
	for _, w := range []string{" [sms_opt_in] = 'yes' => false", "  [sms_opt_in] => 1", " [age] + 1 > 3 => true", "  [age] + 1 => 6"} {
		if !strings.Contains(joined, w) {
			t.Errorf("Explain lacks %q:\n%s", w, joined)
		}
	}
}
