package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// logicCmd runs `nudge logic` with args and returns its output and exit status.
func logicCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := cmdLogic(context.Background(), args, &out, &errOut)
	code = exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

const logicDict = `Variable / Field Name,Form Name,Section Header,Field Type,Field Label,"Choices, Calculations, OR Slider Labels",Field Note,Text Validation Type OR Show Slider Number,Text Validation Min,Text Validation Max,Identifier?,Branching Logic (Show field only if...),Required Field?,Custom Alignment,Question Number (surveys only),Matrix Group Name,Matrix Ranking?,Field Annotation
record_id,enrollment,,text,Record ID,,,,,,,,,,,,,
sms_opt_in,enrollment,,yesno,Texts?,,,,,,,,,,,,,
arm,enrollment,,radio,Arm,"1, Control | 2, Intervention",,,,,,,,,,,,
race,enrollment,,checkbox,Race,"1, White | 2, Black | 3, Asian",,,,,,,,,,,,
quit_date,enrollment,,text,Quit date,,,date_ymd,,,,[sms_opt_in] = '1',,,,,,
score,enrollment,,calc,Score,"sum([arm], 1)",,,,,,,,,,,,
note,enrollment,,text,Note,,,,,,,[arm] == 2 && [sms_opt_in] = '1',,,,,,
`

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLogicCheckAgainstDictionary checks one expression against a
// dictionary: every kind of mistake is reported and exits 1; good logic
// exits 0; undocumented operators are warnings.
func TestLogicCheckAgainstDictionary(t *testing.T) {
	d := writeFile(t, "dict.csv", logicDict)
	tests := []struct {
		expr string
		code int
		want []string
	}{
		{"[sms_opt_in] = '1' and [arm] = 2", 0, []string{"OK: the expression parses and matches the dictionary"}},
		{"[sms_opt_in] = 'yes'", 1, []string{"col 1: [sms_opt_in] = 'yes' can never be true: [sms_opt_in] is a yesno field whose codes are 1 (Yes), 0 (No); compare with the code, not the label: [sms_opt_in] = '1'"}},
		{"[arm] <> 3", 1, []string{"[arm] <> 3 is always true: [arm] is a radio field whose codes are 1 (Control), 2 (Intervention)"}},
		{"[arm] = '2.0'", 0, nil},
		{"[race(4)] = '1'", 1, []string{"[race(4)]: checkbox race has no choice 4; its codes are 1 (White), 2 (Black), 3 (Asian)"}},
		{"[race(2)] = 'yes'", 1, []string{"[race(2)] = 'yes' can never be true: [race(2)] holds only the codes 1, 0"}},
		{"[race] = '1'", 1, []string{"[race]: a checkbox has no single value: write [race(code)] = '1'"}},
		{"[arm(1)] = '1'", 1, []string{"[arm(1)]: arm is a radio field, not a checkbox"}},
		{"[smsoptin] = '1'", 1, []string{"[smsoptin]: the dictionary has no field smsoptin (did you mean [sms_opt_in]?)"}},
		{"[arm:checked] = '1'", 1, []string{"[arm:checked]: :checked needs a checkbox field"}},
		{"contains([race:checked], '2') and [enrollment_complete] = '2'", 0, nil},
		{"[arm] == 2 && [record-name] <> ''", 0, []string{"warning: col 7: == works but is not REDCap's documented syntax: write =", "warning: col 12: && works"}},
		{"[arm] = 2 and", 1, []string{"error: col 14: unexpected end of condition", "  [arm] = 2 and\n               ^"}},
	}
	for _, tt := range tests {
		out, errOut, code := logicCmd(t, "--dictionary", d, tt.expr)
		if code != tt.code {
			t.Errorf("%s: exit %d, want %d\n%s%s", tt.expr, code, tt.code, out, errOut)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", tt.expr, w, out)
			}
		}
	}
	// Flags may follow the expression.
	if _, _, code := logicCmd(t, "[sms_opt_in] = 'yes'", "--dictionary", d); code != 1 {
		t.Errorf("flags after the expression: exit %d, want 1", code)
	}
	if _, _, code := logicCmd(t, "--dictionary", d); code != 2 {
		t.Errorf("no expression: exit %d, want 2", code)
	}
}

// TestLogicExplainRecord evaluates an expression on a record given as
// REDCap's flat JSON export and shows every part's value, with 'today'
// taken from --as-of in --tz.
func TestLogicExplainRecord(t *testing.T) {
	d := writeFile(t, "dict.csv", logicDict)
	rec := writeFile(t, "rec.json", `[{"record_id":"1001","sms_opt_in":"1","arm":"2","race___1":"0","race___2":"1","race___3":"0","quit_date":"2027-01-08","score":""}]`)
	out, errOut, code := logicCmd(t, "--dictionary", d, "--record", rec, "--as-of", "2027-01-15T10:00", "--tz", "America/New_York",
		"[sms_opt_in] = '1' and datediff([quit_date], 'today', 'd', true) = 7 and [race:checked] = '2' and [score] > 1")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, w := range []string{
		"'today' is 2027-01-15",
		"record 1001:",
		`      [sms_opt_in] = '1'  →  true`,
		`          [sms_opt_in]  →  "1"`,
		"      datediff([quit_date], 'today', 'd', true) = 7  →  true",
		`          [race:checked]  →  "2"`,
		"      [score] > 1  →  false",
		"          [score]  →  blank",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// TestLogicAll parses every expression of a dictionary: a bad one is
// listed with file:line, spreadsheet row and column, and exits 1.
func TestLogicAll(t *testing.T) {
	good := writeFile(t, "dict.csv", logicDict)
	out, errOut, code := logicCmd(t, "--all", "--dictionary", good)
	if code != 0 || !strings.Contains(out, "all 3 expressions parse (2 warning(s))") {
		t.Errorf("good dictionary: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, ":8: row 8, column L (branching logic of note): warning: col 7: == works") {
		t.Errorf("no warning with row and column:\n%s", out)
	}
	bad := writeFile(t, "bad.csv", logicDict+"x,enrollment,,calc,X,\"sum([a],\",,,,,,NA,,,,,,\ny,enrollment,,text,Y,,,,,,,\"[a] = 1\n and [b] = \",,,,,,\n")
	out, errOut, code = logicCmd(t, "--all", "--dictionary", bad)
	if code != 1 {
		t.Errorf("bad dictionary: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, w := range []string{
		":9: row 9, column F (calculation of x): col 9: unexpected end of condition",
		":11: row 10, column L (branching logic of y): line 2 of the logic, col 12: unexpected end of condition",
		"2 of 5 expressions cannot be handled",
	} {
		if !strings.Contains(out+errOut, w) {
			t.Errorf("output lacks %q:\n%s%s", w, out, errOut)
		}
	}
}

// TestLogicAllRealDictionaries runs `nudge logic --all` on every real
// dictionary under ../shared/redcap-dictionaries (next to the repository;
// skipped when absent): every expression must parse, R's NA cells counting
// as blank.
func TestLogicAllRealDictionaries(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "redcap-dictionaries")
	files, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
	if len(files) == 0 {
		t.Skipf("no dictionaries in %s", dir)
	}
	checked := 0
	for _, f := range files {
		out, errOut, code := logicCmd(t, "--all", "--dictionary", f)
		if strings.Contains(errOut, "not a data dictionary") {
			continue // an export or events file kept beside the dictionaries
		}
		checked++
		if code != 0 {
			t.Errorf("%s: exit %d\n%s%s", filepath.Base(f), code, out, errOut)
		}
	}
	if checked == 0 {
		t.Fatalf("no data dictionary among %d files in %s", len(files), dir)
	}
	t.Logf("%d dictionaries parse", checked)
}
