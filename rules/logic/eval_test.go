package logic

import (
	"errors"
	"math"
	"strings"
	"testing"
)

var (
	yes   = BoolValue(true)
	no    = BoolValue(false)
	blank = Value{}
)

func num(f float64) Value { return NumberValue(f) }
func text(s string) Value { return StringValue(s) }
func sameValue(a, b Value) bool {
	if a.kind != b.kind {
		return false
	}
	if a.kind == KindNumber {
		return math.Abs(a.num-b.num) < 1e-9*math.Max(1, math.Abs(b.num))
	}
	return a == b
}

// record is the data most evaluation tests run against.
var record = map[string]string{
	"[consent_complete]":        "2",
	"[sms_opt_in]":              "1",
	"[age]":                     "34",
	"[zero_padded]":             "01",
	"[weight]":                  "70",
	"[height]":                  "1.75",
	"[name]":                    "Ada Lovelace",
	"[email]":                   "ada@example.org",
	"[empty]":                   "",
	"[junk]":                    "abc",
	"[unk]":                     "UNK",
	"[dob]":                     "1990-05-17",
	"[enroll_date]":             "2026-11-10",
	"[visit_dt]":                "2026-11-22 08:30",
	"[visit_dts]":               "2026-11-22 08:30:45",
	"[us_date]":                 "11-10-2026",
	"[race(2)]":                 "1",
	"[race(3)]":                 "0",
	"[baseline_arm_1][consent]": "1",
	"[followup_arm_1][consent]": "0",
	"[bp_sys][2]":               "128",
	"[bp_sys][last-instance]":   "131",
	"[visit_arm_1][bp_sys][1]":  "119",
	"[record-name]":             "1001",
	"[event-name]":              "baseline_arm_1",
	"[yn]":                      "0",
	"[negative]":                "-3",
	"[prereq_date]":             "2024-02-01",
}

func TestEval(t *testing.T) {
	env := newEnv(t, record)
	tests := []struct {
		src  string
		want Value
	}{
		// References and literals.
		{"[age]", text("34")},
		{"[empty]", blank},
		{"[not_in_record]", blank},
		{"''", blank},
		{`""`, blank},
		{"'x'", text("x")},
		{"12.50", num(12.5)},
		{".5", num(0.5)},
		{"true", yes},
		{"FALSE", no},
		{"[race(2)]", text("1")},
		{"[baseline_arm_1][consent]", text("1")},
		{"[bp_sys][2]", text("128")},
		{"[bp_sys][last-instance]", text("131")},
		{"[visit_arm_1][bp_sys][1]", text("119")},
		{"[record-name]", text("1001")},

		// Numeric comparison when both sides look numeric.
		{"[consent_complete] = '2'", yes},
		{"[consent_complete] = 2", yes},
		{"[consent_complete] = 2.0", yes},
		{"[zero_padded] = 1", yes},
		{"'01' = 1", yes},
		{"'01' = '1'", yes},
		{"'1.0' <> '1'", no},
		{"[age] > 9", yes},  // 34 > 9 as numbers, not as text
		{"'10' > '9'", yes}, // numbers too
		{"[age] >= 34", yes},
		{"[age] < 34", no},
		{"[age] <= 34.0", yes},
		{"[negative] < 0", yes},
		{"[age] != 34", no},
		{"[sms_opt_in] = true", yes}, // true counts as 1
		{"[yn] = false", yes},

		// Text comparison otherwise: exact case, byte order.
		{"[name] = 'Ada Lovelace'", yes},
		{"[name] = 'ada lovelace'", no},
		{"[junk] > 5", yes}, // "abc" > "5" as text
		{"[prereq_date] > '2024-01-01'", yes},
		{"[prereq_date] < '2024-01-01'", no},
		{"[event-name] = 'baseline_arm_1'", yes},

		// Blank.
		{"[empty] = ''", yes},
		{`[empty] = ""`, yes},
		{"[not_in_record] = ''", yes},
		{"[empty] <> ''", no},
		{"[email] <> ''", yes},
		{"[email] = ''", no},
		{"[empty] = 0", no},
		{"[empty] <> 0", yes},
		{"[empty] < 5", no},
		{"[empty] > 5", no},
		{"[empty] <= 5", no},
		{"[empty] >= -5", no},
		{"5 > [empty]", no},
		{"'' <= ''", no},
		{"'' = ''", yes},
		{`"" <> ""`, no},

		// and / or / parentheses, keywords in any case.
		{"[consent_complete] = '2' and [sms_opt_in] = '1'", yes},
		{"[consent_complete] = '2' AND [sms_opt_in] = '0'", no},
		{"[consent_complete] = '1' Or [sms_opt_in] = '1'", yes},
		{"[consent_complete] = '1' or [sms_opt_in] = '0'", no},
		{"[age] > 1 or [junk] + 1 > 0", yes}, // right side never evaluated
		{"[age] < 1 and [junk] + 1 > 0", no},
		{"([age] > 50 or [age] < 40) and [sms_opt_in] = 1", yes},
		{"[age] > 50 or [age] < 40 and [sms_opt_in] = 0", no}, // and binds tighter
		{"[empty] and 1", no},
		{"[yn] or [sms_opt_in]", yes},

		// Arithmetic and precedence.
		{"1 + 2 * 3", num(7)},
		{"(1 + 2) * 3", num(9)},
		{"10 - 4 - 3", num(3)},
		{"12 / 4 / 3", num(1)},
		{"2 ^ 3 ^ 2", num(512)},
		{"-2 ^ 2", num(4)},
		{"2 * 3 ^ 2", num(18)},
		{"-[negative]", num(3)},
		{"+[age]", num(34)},
		{"- -1", num(1)},
		{"[weight] / ([height]) ^ (2)", num(70 / (1.75 * 1.75))},
		{"[age] + 1 = 35", yes},
		{"[age] + [empty]", blank},
		{"[age] / 0", blank},
		{"(-1) ^ 0.5", blank},
		{"-[empty]", blank},
		{"[consent_complete] + true", num(3)},

		// if, aggregates, rounding.
		{"if([sms_opt_in] = '1', 'yes', 'no')", text("yes")},
		{"if([empty] = '1', 1, 0)", num(0)},
		{"IF([age] > 18, [age], 0)", text("34")},
		{"if([sms_opt_in], 1, [junk] * 2)", num(1)}, // the untaken branch is not evaluated; [junk]*2 would be an error
		{"sum([age], [empty], 1)", num(35)},
		{"sum([empty])", blank},
		{"mean([age], [empty], 36)", num(35)},
		{"min([age], 3, [negative])", num(-3)},
		{"max([age], 3, [negative])", num(34)},
		{"round(2.5)", num(3)},
		{"round(-2.5)", num(-3)},
		{"round(1.005, 2)", num(1.01)},
		{"round(1234.5, -2)", num(1200)},
		{"round([weight] / [height] ^ 2, 1)", num(22.9)},
		{"rounddown(2.79, 1)", num(2.7)},
		{"rounddown(0.29, 2)", num(0.29)},
		{"rounddown(-2.5)", num(-3)},
		{"roundup(2.01)", num(3)},
		{"roundup(-2.5)", num(-2)},
		{"round([empty], 2)", blank},
		{"abs([negative])", num(3)},
		{"sqrt(16)", num(4)},
		{"sqrt(-1)", blank},
		{"mod(7, 3)", num(1)},
		{"mod(-7, 3)", num(-1)},
		{"mod(7, 0)", blank},

		// Predicates.
		{"isnumber([age])", yes},
		{"isnumber([junk])", no},
		{"isnumber([empty])", no},
		{"isinteger([age])", yes},
		{"isinteger([height])", no},
		{"isinteger('5.0')", yes},
		{"isblankormissingcode([empty])", yes},
		{"isblankormissingcode([not_in_record])", yes},
		{"isblankormissingcode([unk])", yes},
		{"isblankormissingcode([age])", no},

		// Text functions.
		{"contains([name], 'LOVE')", yes},
		{"contains([name], 'babbage')", no},
		{"not_contains([name], 'babbage')", yes},
		{"starts_with([email], 'ADA@')", yes},
		{"ends_with([email], '.ORG')", yes},
		{"ends_with([empty], 'x')", no},
		{"left([name], 3)", text("Ada")},
		{"left('héllo', 2)", text("hé")},
		{"left([name], 100)", text("Ada Lovelace")},
		{"left([name], 0)", blank},
		{"right([name], 8)", text("Lovelace")},
		{"mid([name], 5, 4)", text("Love")},
		{"mid([name], 0, 3)", text("Ada")},
		{"mid([name], 50, 3)", blank},
		{"length([name])", num(12)},
		{"length('héllo')", num(5)},
		{"length([empty])", num(0)},
		{"find('love', [name])", num(5)},
		{"find('zzz', [name])", num(0)},
		{"concat([record-name], '-', [age], 2)", text("1001-342")},
		{"concat([empty], [empty])", blank},
		{"lower([name])", text("ada lovelace")},
		{"upper([name])", text("ADA LOVELACE")},
		{"trim('  x  ')", text("x")},
		{"Length(Trim('  ab '))", num(2)},
	}
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

func TestDatediff(t *testing.T) {
	// testNow is 2026-11-23 14:30:15 (New York); enroll_date is 13 days earlier.
	env := newEnv(t, record)
	tests := []struct {
		src  string
		want Value
	}{
		{"datediff([enroll_date], 'today', 'd')", num(13)},
		{"datediff('today', [enroll_date], 'd')", num(13)},                 // absolute by default
		{"datediff('today', [enroll_date], 'd', true)", num(-13)},          // signed: d2 − d1
		{"datediff([enroll_date], 'today', 'd', 'ymd', true)", num(13)},    // format and sign
		{"datediff('today', [enroll_date], 'd', 'ymd', 'true')", num(-13)}, // quoted flag
		{"datediff('today', [enroll_date], 'd', 'ymd', false)", num(13)},
		{"datediff([enroll_date], 'today', 'h')", num(13 * 24)},
		{"datediff([enroll_date], 'today', 'm')", num(13 * 24 * 60)},
		{"datediff([enroll_date], 'today', 's')", num(13 * 86400)},
		{"datediff([enroll_date], 'today', 'M')", num(13 / 30.44)},
		{"datediff([dob], 'today', 'y')", num(13339 / 365.2425)},
		{"rounddown(datediff([dob], 'today', 'y'))", num(36)},
		{"rounddown(datediff(\"today\", [dob], \"y\", \"ymd\"), 1 )", num(36.5)},
		{"datediff([visit_dt], 'now', 'h')", num(30 + 15.0/3600)},
		{"datediff([visit_dts], 'now', 's')", num(30*3600 - 30)},
		{"datediff([visit_dt], [visit_dts], 's')", num(45)},
		{"datediff([enroll_date], [visit_dt], 'd')", num(12 + 8.5/24)},
		{"datediff([us_date], 'today', 'd', 'mdy')", num(13)},
		{"datediff('10-11-2026', 'today', 'd', 'dmy')", num(13)},
		{"datediff('2026/11/10', 'today', 'd')", num(13)},
		{"datediff('2024-02-28', '2024-03-01', 'd')", num(2)}, // leap year
		{"datediff([empty], 'today', 'd')", blank},
		{"datediff([enroll_date], [not_in_record], 'd')", blank},
		{"datediff([enroll_date], 'today', 'd') >= 7", yes},
		{"datediff([empty], 'today', 'd') >= 7", no},
		{"datediff([empty], 'today', 'd') < 7", no},
		{"DateDiff([enroll_date], 'TODAY', 'd')", num(13)},
	}
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

func TestEvalErrors(t *testing.T) {
	env := newEnv(t, record)
	tests := []struct{ src, want string }{
		{"[junk] + 1", `in [junk] + 1: [junk] does not hold a number`},
		{"-[junk] = 1", `in -[junk]: [junk] does not hold a number`},
		{"[age] * 2 > 3 and [name] * 2 > 1", `in [name] * 2: [name] does not hold a number`},
		{"sum([age], [junk])", `in sum([age], [junk]): sum: [junk] does not hold a number`},
		{"round([age], 'x')", `in round([age], 'x'): round: 'x' is not a number`},
		{"[name] and 1", `in [name]: [name] does not hold a number or true/false, so it cannot be a condition`},
		{"if([junk], 1, 2)", `in [junk]: [junk] does not hold a number or true/false`},
		{"datediff([us_date], 'today', 'd')", `in datediff([us_date], 'today', 'd'): datediff: [us_date] does not hold a date: expected YYYY-MM-DD (optionally with HH:MM or HH:MM:SS), 'today' or 'now'`},
		{"datediff('2026-02-30', 'today', 'd')", `datediff: '2026-02-30' is not a date`},
		{"datediff([dob], 'today', 'd', 'mdy')", ""}, // ISO dates are read whatever the format
		{"datediff([dob], 'today', [junk])", `datediff: [junk] does not hold a unit: y, M, d, h, m or s`},
		{"datediff([dob], 'today', 'd', [junk])", `datediff: [junk] does not hold true or false (returnSignedValue)`},
		{"datediff([dob], 'today', 'd', [junk], true)", `datediff: [junk] does not hold a date format: ymd, mdy or dmy`},
	}
	for _, tt := range tests {
		x, err := Parse(tt.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		_, err = x.Eval(env)
		if tt.want == "" {
			if err != nil {
				t.Errorf("Eval(%q): %v", tt.src, err)
			}
			continue
		}
		var ee *EvalError
		if !errors.As(err, &ee) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Eval(%q) error = %v, want *EvalError containing %q", tt.src, err, tt.want)
		}
	}
}

func TestTrue(t *testing.T) {
	env := newEnv(t, record)
	tests := []struct {
		src     string
		want    bool
		wantErr string
	}{
		{"[consent_complete] = '2'", true, ""},
		{"[consent_complete] = '1'", false, ""},
		{"[empty]", false, ""},     // blank is false
		{"[sms_opt_in]", true, ""}, // "1"
		{"[yn]", false, ""},        // "0"
		{"[age] - 34", false, ""},  // number zero
		{"[age] + [empty] > 1", false, ""},
		{"datediff([empty], 'today', 'd') >= 7", false, ""},
		{"[name]", false, `the condition gives text, not true or false`},
		{"[junk] * 2 = 0", false, `[junk] does not hold a number`},
	}
	for _, tt := range tests {
		x, err := Parse(tt.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		got, err := x.True(env)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("True(%q) error = %v, want %q", tt.src, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("True(%q): %v", tt.src, err)
		case got != tt.want:
			t.Errorf("True(%q) = %v, want %v", tt.src, got, tt.want)
		}
	}
}
