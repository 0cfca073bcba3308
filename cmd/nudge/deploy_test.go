package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/storage"
)

var t0cmd = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

func TestVersionStamp(t *testing.T) {
	oldV, oldR := buildVersion, buildRevision
	defer func() { buildVersion, buildRevision = oldV, oldR }()
	buildVersion, buildRevision = "v9.8.7", "0123abcd"
	for _, arg := range []string{"version", "--version"} {
		out, _, code := nudge(t, arg)
		if code != 0 || !strings.HasPrefix(out, "nudge v9.8.7\n") || !strings.Contains(out, "go:") || !strings.Contains(out, "revision:") {
			t.Errorf("%s: %q, exit %d", arg, out, code)
		}
	}
}

func TestBackupCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "nudge.db")
	s, err := storage.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.OptOut(ctx, "+14155550123", "test", t0cmd); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "backup.db")
	out, errOut, code := nudge(t, "backup", "--db", db, dest)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	b, err := storage.Open(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if ok, err := b.IsOptedOut(ctx, "+14155550123"); !ok || err != nil {
		t.Errorf("backup lost the opt-out: %v, %v", ok, err)
	}
	if _, _, code := nudge(t, "backup", "--db", db); code != 2 {
		t.Errorf("backup without FILE: exit %d, want 2", code)
	}
	// From the config: the demo study's storage path.
	cfg := copyStudy(t, nil)
	_, errOut, code = nudge(t, "backup", "--config", filepath.Join(cfg, "nudge.yaml"), filepath.Join(dir, "b2.db"))
	if code != 1 || !strings.Contains(errOut, "no database at") || !strings.Contains(errOut, "demo.db") {
		t.Errorf("backup of a study without a database: exit %d, %q; want 1 naming the database", code, errOut)
	}
}

// TestSystemdUnits checks the unit files with systemd-analyze verify when
// it is installed.
func TestSystemdUnits(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dir := t.TempDir()
	// verify wants ExecStart's binary to exist: point it at a stand-in.
	bin := filepath.Join(dir, "nudge")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nudge.service", "nudge@.service", "nudge-backup.service", "nudge-backup.timer"} {
		b, err := os.ReadFile(filepath.Join("deploy", name))
		if err != nil {
			t.Fatal(err)
		}
		unit := strings.ReplaceAll(string(b), "/usr/local/bin/nudge", bin)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, unit := range []string{"nudge.service", "nudge@site-a.service", "nudge-backup.service", "nudge-backup.timer"} {
		cmd := exec.Command(sa, "verify", "--man=no", filepath.Join(dir, unit))
		cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=warning")
		out, err := cmd.CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}

// TestSafetyAllMissingSecretsAtOnce names every missing secret in one
// error, not only the first.
func TestSafetyAllMissingSecretsAtOnce(t *testing.T) {
	for _, v := range []string{"NUDGE_DEMO_TOKEN_SITE_A", "NUDGE_DEMO_TOKEN_SITE_B", "NUDGE_DEMO_TWILIO_SID", "NUDGE_DEMO_TWILIO_TOKEN", "NUDGE_DEMO_SMTP_USER", "NUDGE_DEMO_SMTP_PASSWORD"} {
		t.Setenv(v, "")
	}
	cfg := filepath.Join(copyStudy(t, nil), "nudge.yaml")
	_, errOut, code := nudge(t, "run", "--config", cfg)
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, errOut)
	}
	for _, want := range []string{"NUDGE_DEMO_TOKEN_SITE_A", "NUDGE_DEMO_TOKEN_SITE_B", "twilio.auth_token", "smtp.password", "6 secrets"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %s:\n%s", want, errOut)
		}
	}
}

// TestSafetyRunQuietForCron: nudge run from cron (stdout not a terminal)
// prints nothing on success, so cron mails only problems; -v prints the
// table and summary; a second pass does not warn again about the same
// skipped participants.
func TestSafetyRunQuietForCron(t *testing.T) {
	env, err := demo.Start(demo.Options{Dir: demoDir, Clock: sms.NewFakeClock(demo.StudyTime)})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	host, port := env.SMTP.Addr()
	cfg := demoConfig(t, env, [2]string{"  rate_per_second: 0.95", "  rate_per_second: 0.95\n  api_base_url: " + env.TwilioURL},
		[2]string{"  host: smtp.example.edu\n  port: 587\n  username_env: NUDGE_DEMO_SMTP_USER\n  password_env: NUDGE_DEMO_SMTP_PASSWORD\n",
			fmt.Sprintf("  host: %s\n  port: %d\n", host, port)},
		[2]string{"  tls: mandatory", "  tls: none"})
	if err := os.Chmod(filepath.Dir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := nudge(t, "run", "--config", cfg)
	if code != 0 || out != "" {
		t.Fatalf("first pass: exit %d, stdout %q (want none)\n%s", code, out, errOut)
	}
	if strings.Contains(errOut, "level=info") || strings.Contains(errOut, "sending ") {
		t.Errorf("info logs or a progress line on a quiet pass (not a terminal):\n%s", errOut)
	}
	out, errOut, code = nudge(t, "run", "--config", cfg, "-v")
	if code != 0 || !strings.Contains(out, "RULE") || !strings.Contains(out, "enqueued ") {
		t.Errorf("-v: exit %d, stdout %q", code, out)
	}
	out, errOut2, code := nudge(t, "run", "--config", cfg)
	if code != 0 || out != "" || strings.Contains(errOut2, "participant skipped") {
		t.Errorf("third pass: exit %d, stdout %q, stderr:\n%s\n(-v pass stderr:\n%s)", code, out, errOut2, errOut)
	}
}

// TestRunBusyExit: while another process holds the pass lease, nudge run
// exits 5 at once, or after --wait.
func TestRunBusyExit(t *testing.T) {
	env, err := demo.Start(demo.Options{Dir: demoDir, Clock: sms.NewFakeClock(demo.StudyTime)})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	cfg := demoConfig(t, env, [2]string{"  rate_per_second: 0.95", "  rate_per_second: 0.95\n  api_base_url: " + env.TwilioURL})
	t.Setenv("NUDGE_DEMO_SMTP_USER", "study")
	t.Setenv("NUDGE_DEMO_SMTP_PASSWORD", "unused")
	s, err := storage.Open(filepath.Join(filepath.Dir(cfg), "demo.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ok, err := s.TryLock(context.Background(), "pass", storage.NewOwner(), time.Hour, time.Now()); !ok || err != nil {
		t.Fatalf("TryLock: %v, %v", ok, err)
	}
	old := busyPoll
	busyPoll = time.Millisecond
	defer func() { busyPoll = old }()
	for _, args := range [][]string{nil, {"--wait", "20ms"}} {
		_, errOut, code := nudge(t, append([]string{"run", "--config", cfg}, args...)...)
		if code != exitBusy || !strings.Contains(errOut, "another nudge process is making a pass") {
			t.Errorf("run %v with the lease held: exit %d, want %d\n%s", args, code, exitBusy, errOut)
		}
	}
}
