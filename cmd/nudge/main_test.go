package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
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

// demoConfig copies the demo study with its REDCap projects pointed at
// env's simulator (and further edits of nudge.yaml) and returns the
// config's path.
func demoConfig(t *testing.T, env *demo.Env, edits ...[2]string) string {
	t.Helper()
	dir := copyStudy(t, map[string][][2]string{"nudge.yaml": append([][2]string{
		{"    redcap_url: https://redcap.example.edu/api/\n    token_env: NUDGE_DEMO_TOKEN_SITE_A", "    redcap_url: " + env.REDCapURL + "\n    token_env: NUDGE_DEMO_TOKEN_SITE_A"},
		{"    redcap_url: https://redcap.example.edu/api/\n    token_env: NUDGE_DEMO_TOKEN_SITE_B", "    redcap_url: " + env.REDCapURL + "\n    token_env: NUDGE_DEMO_TOKEN_SITE_B"},
	}, edits...)})
	return filepath.Join(dir, "nudge.yaml")
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
	for _, want := range []string{"SUCCESS: 7 rule(s) in 2 file(s)", "checked against 2 of 2 data dictionaries",
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
		regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:10:5: rule "welcome-sms": unknown key 'windw' in a rule \(did you mean 'window'\?\): use one of name, .*$`),
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
			// run stops before sending; check never sends, so it says what to do instead.
			wantErr := map[string]string{"run": "nothing was sent", "check": "3 error(s) and 0 warning(s): fix each line above, then run nudge check again"}[cmd]
			if !strings.Contains(errOut, wantErr) || (cmd == "check" && strings.Contains(errOut, "nothing was sent")) {
				t.Errorf("stderr: %q, want %q", errOut, wantErr)
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
	cfg := demoConfig(t, env)
	out, errOut, code := nudge(t, "preview", "--config", cfg, "--rule", "welcome-sms",
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

// `nudge demo --serve` prints curl commands a newcomer pastes; replaying
// the printed STOP and HELP must work against the running server.
func TestDemoServePrintsWorkingRequests(t *testing.T) {
	t.Setenv("TWILIO_AUTH_TOKEN", "")
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--dir", demoDir, "--serve", "127.0.0.1:0", "--log-level", "error",
			"--db", filepath.Join(t.TempDir(), "demo.db")}, pw, io.Discard)
		pw.Close()
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo --serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("demo --serve did not stop")
		}
	}()
	// Read everything the demo prints (an unread pipe would block it) and
	// pick out the signed curl commands.
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "curl -s -H 'X-Twilio-Signature") {
				lines <- line
			}
		}
	}()
	var curls []string
	timeout := time.After(30 * time.Second)
	for len(curls) < 2 {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("demo --serve ended early; got %q", curls)
			}
			curls = append(curls, line)
		case <-timeout:
			t.Fatalf("no curl commands printed within 30 s; got %q", curls)
		}
	}
	if len(curls) != 2 {
		t.Fatalf("want two signed curl commands, got %q", curls)
	}
	replies := []string{"<Response/>", "reply STOP to stop texts"}
	for i, c := range curls {
		req := curlRequest(t, c)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), replies[i]) {
			t.Errorf("%s\n→ %d %s", c, resp.StatusCode, body)
		}
	}
}

// curlRequest turns a printed `curl -s -H 'K: V' -d 'k=v' … URL` back into
// the request it stands for.
func curlRequest(t *testing.T, cmd string) *http.Request {
	t.Helper()
	re := regexp.MustCompile(`-H '([^:]+): ([^']*)'|-d '([^=]+)=([^']*)'|(http://\S+)`)
	form := url.Values{}
	var target, hk, hv string
	for _, m := range re.FindAllStringSubmatch(cmd, -1) {
		switch {
		case m[1] != "":
			hk, hv = m[1], m[2]
		case m[3] != "":
			v, err := url.QueryUnescape(m[4])
			if err != nil {
				t.Fatal(err)
			}
			form.Add(m[3], v)
		default:
			target = m[5]
		}
	}
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(hk, hv)
	return req
}

// TestSafetyPauseAndExitHeld: `nudge pause` holds every send, `nudge run`
// then sends nothing, names the cause and exits 4 (sending held back, the
// queue kept), and `nudge resume` lifts the pause.
func TestSafetyPauseAndExitHeld(t *testing.T) {
	env, err := demo.Start(demo.Options{Dir: demoDir, Clock: sms.NewFakeClock(demo.StudyTime)})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	cfg := demoConfig(t, env, [2]string{"  rate_per_second: 0.95", "  rate_per_second: 0.95\n  api_base_url: " + env.TwilioURL})
	t.Setenv("NUDGE_DEMO_SMTP_USER", "study")
	t.Setenv("NUDGE_DEMO_SMTP_PASSWORD", "unused")
	out, errOut, code := nudge(t, "pause", "--config", cfg, "--reason", "IRB amendment")
	if code != 0 || !strings.Contains(out, "paused: everything") || !strings.Contains(out, "IRB amendment") {
		t.Fatalf("pause: exit %d\n%s%s", code, out, errOut)
	}
	if _, _, code := nudge(t, "pause", "--config", cfg, "--rule", "no-such-rule"); code != 1 {
		t.Errorf("pause of an unknown rule: exit %d, want 1", code)
	}
	out, errOut, code = nudge(t, "run", "--config", cfg, "--log-level", "error")
	if code != 4 || !strings.Contains(out, "held back: all sending is paused: IRB amendment") {
		t.Errorf("run while paused: exit %d, want 4 with the cause\n%s%s", code, out, errOut)
	}
	if n := len(env.Twilio.Attempts()); n != 0 {
		t.Errorf("%d creates while paused", n)
	}
	out, errOut, code = nudge(t, "resume", "--config", cfg)
	if code != 0 || !strings.Contains(out, "sending is not paused") {
		t.Errorf("resume: exit %d\n%s%s", code, out, errOut)
	}
}

// `nudge demo --dir` runs a coordinator's own study folder against the
// simulators: here one without an smtp: section (texts only), named
// otherwise, at a chosen moment of its life.
func TestDemoDirOwnStudy(t *testing.T) {
	dir := copyStudy(t, map[string][][2]string{"nudge.yaml": {
		{"study: Healthy Steps (demo)", "study: Pilot"},
		{`smtp:
  host: smtp.example.edu
  port: 587
  username_env: NUDGE_DEMO_SMTP_USER
  password_env: NUDGE_DEMO_SMTP_PASSWORD
  from: "Healthy Steps Study <study@example.edu>"
  tls: mandatory
`, ""},
	}})
	// Site A keeps only its on-save rule: the pass texts site B's diaries.
	siteA := "project: site_a\nrules:\n" + `  - name: goal-cheer
    when: "[consent_given] = '1' and [sms_opt_in] = '1' and [steps_goal] >= 12000"
    channel: sms
    to: "[mobile_phone]"
    template: goal-cheer
    schedule: on_save
`
	if err := os.WriteFile(filepath.Join(dir, "rules", "site_a.yaml"), []byte(siteA), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := nudge(t, "demo", "--dir", dir, "--as-of", "2026-11-23 10:00", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	var sum demo.Summary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, r := range sum.Rules {
		sent += r.Sent
	}
	if sum.Study != "Pilot" || sum.Emails.Sent != 0 || sent == 0 || sum.Duplicates != 0 {
		t.Errorf("summary: study %q, %d texts, %d emails, %d duplicates", sum.Study, sent, sum.Emails.Sent, sum.Duplicates)
	}
}

// TestSafetyRunExitHeldWhenREDCapDown: a `nudge run` that cannot reach
// REDCap at startup (reading the data dictionaries) exits 4, like one that
// loses it mid-pass, so cron's monitoring sees "held back, queue kept"
// rather than a broken study.
func TestSafetyRunExitHeldWhenREDCapDown(t *testing.T) {
	env, err := demo.Start(demo.Options{Dir: demoDir, Clock: sms.NewFakeClock(demo.StudyTime)})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/api/"
	ln.Close() // nothing listens there now
	cfg := demoConfig(t, env, [2]string{"  rate_per_second: 0.95", "  rate_per_second: 0.95\n  api_base_url: " + env.TwilioURL})
	t.Setenv("NUDGE_SIM_REDCAP_URL", down)
	t.Setenv("NUDGE_DEMO_SMTP_USER", "study")
	t.Setenv("NUDGE_DEMO_SMTP_PASSWORD", "unused")
	out, errOut, code := nudge(t, "run", "--config", cfg, "--log-level", "error")
	if code != exitHeld || !strings.Contains(errOut, "connection refused") {
		t.Errorf("run with REDCap down: exit %d, want %d naming the cause\n%s%s", code, exitHeld, out, errOut)
	}
	if n := len(env.Twilio.Attempts()); n != 0 {
		t.Errorf("%d creates with REDCap down", n)
	}
}
