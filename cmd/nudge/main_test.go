package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
)

var demoDir = filepath.Join("..", "..", "testdata", "demo")

// nudge runs the command line as main does and returns its exit status.
func nudge(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run(ctx, args, &out, &errOut)
	code = exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

// copyStudy copies the demo study into a temporary folder and applies edits
// (file → old → new) to it.
func copyStudy(t *testing.T, edits map[string][][2]string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(demoDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(demoDir, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s := string(b)
		for _, e := range edits[filepath.ToSlash(rel)] {
			if !strings.Contains(s, e[0]) {
				t.Fatalf("%s: %q not found", rel, e[0])
			}
			s = strings.Replace(s, e[0], e[1], 1)
		}
		return os.WriteFile(filepath.Join(dst, rel), []byte(s), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestVersionAndUsage(t *testing.T) {
	out, _, code := nudge(t, "version")
	if code != 0 || !strings.HasPrefix(out, "nudge ") {
		t.Errorf("version: %q, exit %d", out, code)
	}
	_, errOut, code := nudge(t, "frobnicate")
	if code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %q, exit %d", errOut, code)
	}
	if _, _, code := nudge(t); code != 2 {
		t.Errorf("no command: exit %d, want 2", code)
	}
}

func TestCheckDemoStudy(t *testing.T) {
	out, errOut, code := nudge(t, "check", "--config", filepath.Join(demoDir, "nudge.yaml"))
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"SUCCESS: 5 rule(s) in 2 file(s)", "checked against 2 of 2 data dictionaries",
		"welcome-sms: template welcome is GSM-7, 1 segment(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A rule file with an unknown key, a logic syntax error and an unknown
// field: check and run both name each problem at FILE:LINE:COL, exit 1 and
// send nothing.
func TestBadStudyIsRejectedBeforeSending(t *testing.T) {
	tw := twiliotest.New(twiliotest.Options{AccountSID: demo.AccountSID, AuthToken: demo.AuthToken})
	twURL, err := tw.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer tw.Close()
	dir := copyStudy(t, map[string][][2]string{
		"rules/site_a.yaml": {
			{"    window: { from: \"09:00\", to: \"20:00\", timezone_field: tz }\n    write_back: { status: welcome_sms_status",
				"    windw: { from: \"09:00\", to: \"20:00\", timezone_field: tz }\n    write_back: { status: welcome_sms_status"},
			{"and [baseline_complete] <> '2'", "and [baseline_complete] <> <> '2'"},
			{"[email_opt_in] = '1' and [email] <> ''", "[email_opt_in] = '1' and [emial] <> ''"},
		},
		"nudge.yaml": {{"  rate_per_second: 0.95", "  rate_per_second: 0.95\n  api_base_url: " + twURL}},
	})
	t.Setenv("NUDGE_DEMO_TOKEN_SITE_A", strings.Repeat("A", 32))
	t.Setenv("NUDGE_DEMO_TOKEN_SITE_B", strings.Repeat("B", 32))
	t.Setenv("NUDGE_DEMO_TWILIO_SID", demo.AccountSID)
	t.Setenv("NUDGE_DEMO_TWILIO_TOKEN", demo.AuthToken)
	file := filepath.Join(dir, "rules", "site_a.yaml")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:10:5: rule "welcome-sms": unknown key 'windw' in a rule \(did you mean 'window'\?\)$`),
		regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:16:79: rule "baseline-reminder": when: a comparison needs a value after <>, found <>$`),
		regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:28:63: rule "welcome-email": .*unknown field \[emial\].*did you mean \[email\]`),
	}
	for _, cmd := range []string{"check", "run"} {
		t.Run(cmd, func(t *testing.T) {
			out, errOut, code := nudge(t, cmd, "--config", filepath.Join(dir, "nudge.yaml"))
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != len(want) {
				t.Fatalf("want %d problem lines, got:\n%s", len(want), out)
			}
			for i, re := range want {
				if !re.MatchString(lines[i]) {
					t.Errorf("line %d = %q\nwant match %s", i+1, lines[i], re)
				}
			}
			if !strings.Contains(errOut, "nothing was sent") {
				t.Errorf("stderr: %q", errOut)
			}
		})
	}
	if n := len(tw.Attempts()); n != 0 {
		t.Errorf("Twilio saw %d create requests, want none", n)
	}
}

// preview names who is skipped and why, and with --rule who is excluded and
// which part of the condition excluded them; it sends nothing.
func TestPreviewExplains(t *testing.T) {
	env, err := demo.Start(demo.Options{Dir: demoDir, Clock: sms.NewFakeClock(demo.StudyTime)})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	dir := copyStudy(t, map[string][][2]string{
		"nudge.yaml": {
			{"    redcap_url: https://redcap.example.edu/api/\n    token_env: NUDGE_DEMO_TOKEN_SITE_A", "    redcap_url: " + env.REDCapURL + "\n    token_env: NUDGE_DEMO_TOKEN_SITE_A"},
			{"    redcap_url: https://redcap.example.edu/api/\n    token_env: NUDGE_DEMO_TOKEN_SITE_B", "    redcap_url: " + env.REDCapURL + "\n    token_env: NUDGE_DEMO_TOKEN_SITE_B"},
		},
	})
	out, errOut, code := nudge(t, "preview", "--config", filepath.Join(dir, "nudge.yaml"), "--rule", "welcome-sms",
		"--as-of", "2026-11-23 10:00", "--log-level", "error")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	wantLines := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^welcome-sms\s+4\s+-\s+-\s+excluded\s+\[consent_complete\] = '2' is false \(\[consent_complete\] is "0"\)`),
		regexp.MustCompile(`(?m)^welcome-sms\s+3\s+-\s+-\s+excluded\s+\[sms_opt_in\] = '1' is false \(\[sms_opt_in\] is "0"\)`),
		regexp.MustCompile(`(?m)^welcome-sms\s+11\s+-\s+-\s+skipped\s+invalid phone number in \[mobile_phone\]`),
		regexp.MustCompile(`(?m)^welcome-sms\s+7\s+-\s+-\s+skipped\s+no phone number in \[mobile_phone\]`),
		regexp.MustCompile(`(?m)^welcome-sms\s+2\s+-\s+-\s+deferred\s+outside the allowed hours; planned for 2026-11-23 09:00 HST`),
		regexp.MustCompile(`(?m)^welcome-sms\s+1\s+-\s+-\s+send\s+to \+1•+00$`),
	}
	for _, re := range wantLines {
		if !re.MatchString(out) {
			t.Errorf("preview output lacks %s:\n%s", re, out)
		}
	}
	if n := len(env.Twilio.Attempts()); n != 0 {
		t.Errorf("preview sent %d messages", n)
	}
	if strings.Contains(out, "+14155550100") {
		t.Error("preview printed a full phone number")
	}
}
