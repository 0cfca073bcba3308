package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `nudge sim all --config` starts the simulators a study needs and prints
// the environment; with it exported, `nudge preview` and `nudge run` work on
// the unchanged config, the texts land in the journal, the emails in the
// maildir and the statuses in the simulated REDCap's saved records, while
// the study's own files stay as they were.
func TestSimAllRunsTheStudyUnchanged(t *testing.T) {
	// `nudge run` lives at the real time of day: the copy's windows and
	// quiet hours are lifted, so that its texts go whenever the test runs.
	// Nothing else of the study is changed.
	study := copyStudy(t, anyHour)
	cfg := filepath.Join(study, "nudge.yaml")
	records := filepath.Join(study, "redcap", "site_a.records.json")
	before, err := os.ReadFile(records)
	if err != nil {
		t.Fatal(err)
	}
	simDir := t.TempDir()
	for _, v := range []string{"NUDGE_DEMO_TOKEN_SITE_A", "NUDGE_DEMO_TOKEN_SITE_B", "NUDGE_DEMO_TWILIO_SID", "NUDGE_DEMO_TWILIO_TOKEN"} {
		t.Setenv(v, "") // the simulators choose them
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdSimAll(ctx, []string{"--config", cfg, "--dir", simDir,
			"--redcap", "127.0.0.1:0", "--twilio", "127.0.0.1:0", "--smtp", "127.0.0.1:0"}, &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sim all: %v", err)
		}
	})
	exports := map[string]string{}
	for deadline := time.Now().Add(20 * time.Second); len(exports) < 7 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		sc := bufio.NewScanner(strings.NewReader(out.String()))
		for sc.Scan() {
			if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok && strings.HasPrefix(sc.Text(), "export ") {
				exports[k] = v
			}
		}
	}
	for _, k := range []string{"NUDGE_SIM_REDCAP_URL", "NUDGE_SIM_TWILIO_URL", "NUDGE_SIM_SMTP_ADDR", "NUDGE_DEMO_TOKEN_SITE_A",
		"NUDGE_DEMO_TOKEN_SITE_B", "NUDGE_DEMO_TWILIO_SID", "NUDGE_DEMO_TWILIO_TOKEN"} {
		if exports[k] == "" {
			t.Fatalf("sim all did not export %s:\n%s%s", k, out.String(), errOut.String())
		}
		t.Setenv(k, exports[k])
	}

	if o, e, code := nudge(t, "preview", "--config", cfg, "--log-level", "error"); code != 0 || !strings.Contains(o, "welcome-sms") {
		t.Fatalf("preview: exit %d\n%s%s", code, o, e)
	}
	if o, e, code := nudge(t, "run", "--config", cfg, "--log-level", "error"); code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, o, e)
	}
	journal, err := os.ReadFile(filepath.Join(simDir, "twilio.journal.jsonl"))
	if err != nil || strings.Count(string(journal), `"http_status":201`) < 20 {
		t.Errorf("journal: %d accepted creates, %v", strings.Count(string(journal), `"http_status":201`), err)
	}
	if mail, _ := filepath.Glob(filepath.Join(simDir, "mail", "new", "*")); len(mail) == 0 {
		t.Error("no email in the maildir")
	}
	saved, err := os.ReadFile(filepath.Join(simDir, "site_a.records.json"))
	if err != nil || !strings.Contains(string(saved), `"welcome_sms_sid": "SM`) && !strings.Contains(string(saved), `"welcome_sms_sid":"SM`) {
		t.Errorf("the simulated REDCap holds no written-back SID (%v)", err)
	}
	if after, _ := os.ReadFile(records); string(after) != string(before) {
		t.Error("the study's own records file was changed")
	}
}

// anyHour are the edits (see copyStudy) that lift the demo study's
// windows and quiet hours.
var anyHour = map[string][][2]string{
	"nudge.yaml": {{"quiet_hours: { from: \"21:00\", to: \"08:00\" }\n", ""}},
	"rules/site_a.yaml": {
		{"    window: { from: \"09:00\", to: \"20:00\", timezone_field: tz }\n", ""},
		{"    window: { from: \"09:00\", to: \"20:00\", timezone_field: tz }\n", ""},
		{"    window: { from: \"08:00\", to: \"21:00\", timezone_field: tz }\n", ""},
		{"    window: { from: \"09:00\", to: \"20:00\", timezone_field: tz }\n", ""},
	},
	"rules/site_b.yaml": {{"    window: { from: \"08:00\", to: \"21:00\" }\n", ""}},
}
