package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/templates"
)

// rulesDir is where the rules package keeps its fixtures; their golden
// files name paths relative to it.
var rulesDir = filepath.Join("..", "..", "rules")

// Every bad fixture of the rules package, checked as a coordinator would:
// nudge check prints exactly the fixture's golden problems (FILE:LINE:COL,
// what is wrong, what to do), exits 1 when any is an error and 3 when all
// are warnings, and never claims that nothing was sent.
func TestCheckBadFixtures(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(rulesDir, "testdata", "bad", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			golden, err := os.ReadFile(filepath.Join(dir, "errors.golden"))
			if err != nil {
				t.Fatal(err)
			}
			want := strings.Split(strings.TrimSuffix(string(golden), "\n"), "\n")
			wantCode := checkWarnings
			for _, line := range want {
				if !strings.Contains(line, ": warning: ") {
					wantCode = checkErrors
				}
			}
			out, errOut, code := nudge(t, "check", "--config", filepath.Join(dir, "nudge.yaml"))
			if code != wantCode {
				t.Errorf("exit %d, want %d\n%s%s", code, wantCode, out, errOut)
			}
			var got []string
			for _, line := range strings.Split(strings.ReplaceAll(out, rulesDir+string(filepath.Separator), ""), "\n") {
				if strings.HasPrefix(line, filepath.Join("testdata", "bad")) && !strings.Contains(line, ": SUCCESS") {
					got = append(got, line)
				}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("problems differ from %s\n--- got\n%s\n--- want\n%s", filepath.Join(dir, "errors.golden"),
					strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if strings.Contains(out+errOut, "nothing was sent") {
				t.Errorf("check, which never sends, says nothing was sent:\n%s%s", out, errOut)
			}
		})
	}
}

// --json prints every problem as {file, line, col, severity, message} with
// the same exit codes; a clean study prints an empty list and exits 0.
func TestCheckJSON(t *testing.T) {
	tests := []struct {
		config   string
		code     int
		n        int
		first    checkProblem
		severity string
	}{
		{filepath.Join(rulesDir, "testdata", "bad", "choice-code", "nudge.yaml"), checkErrors, 7, checkProblem{
			File: filepath.Join(rulesDir, "testdata", "bad", "choice-code", "rules", "r.yaml"), Line: 3, Col: 12, Severity: "error",
			Message: `rule "remind": when: [sms_opt_in] = 'yes' can never be true: yesno codes are 1 (Yes) and 0 (No); did you mean [sms_opt_in] = '1'?`,
		}, "error"},
		{filepath.Join(rulesDir, "testdata", "bad", "sms-ucs2", "nudge.yaml"), checkWarnings, 4, checkProblem{
			File: filepath.Join(rulesDir, "testdata", "bad", "sms-ucs2", "templates", "emoji.sms.txt"), Line: 1, Col: 17, Severity: "warning",
			Message: `"🎉" (U+1F389) makes the whole text UCS-2, 70 characters a segment instead of 160 (1 segment(s) before piping): remove it, or use a character of the GSM-7 alphabet`,
		}, "warning"},
		{filepath.Join(demoDir, "nudge.yaml"), checkClean, 0, checkProblem{}, ""},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(filepath.Dir(tt.config)), func(t *testing.T) {
			out, errOut, code := nudge(t, "check", "--json", "--config", tt.config)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s", code, tt.code, errOut)
			}
			if errOut != "" {
				t.Errorf("stderr: %q", errOut)
			}
			var list []checkProblem
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				t.Fatalf("not a JSON list: %v\n%s", err, out)
			}
			if list == nil || len(list) != tt.n {
				t.Fatalf("got %d problems (list %v), want %d:\n%s", len(list), list, tt.n, out)
			}
			if tt.n == 0 {
				return
			}
			if list[0] != tt.first {
				t.Errorf("first problem = %+v\nwant %+v", list[0], tt.first)
			}
			for _, p := range list {
				if p.Severity != tt.severity || p.Line == 0 || p.Col == 0 {
					t.Errorf("problem %+v: want severity %s with a line and column", p, tt.severity)
				}
			}
		})
	}
}

// TestCheckCountsSurveyLinksAtTheirLength: the segments check counts a
// survey link as long as a real one, not as the tag written in the
// template, so a text that a link pushes over 160 characters says 2.
func TestCheckCountsSurveyLinksAtTheirLength(t *testing.T) {
	tests := []struct {
		src       string
		links     int
		wantCount int
	}{
		{"Hi [first_name]", 0, 1},
		{"Survey: [survey-url:baseline]", 1, 1},
		{strings.Repeat("x", 120) + " [survey-url:baseline]", 1, 2},
		{"[enrollment_arm_1][survey-link:ema:Open it][current-instance] and [survey-url:b][2]", 2, 1},
	}
	for _, tt := range tests {
		got, n := withPreviewLinks(tt.src)
		if n != tt.links {
			t.Errorf("%q: %d links, want %d", tt.src, n, tt.links)
		}
		if strings.Contains(got, "survey-") {
			t.Errorf("%q: tag left in %q", tt.src, got)
		}
		if c := templates.Count(got).Count; c != tt.wantCount {
			t.Errorf("%q: %d segments, want %d", tt.src, c, tt.wantCount)
		}
	}
}
