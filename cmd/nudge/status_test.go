package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/sms"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of cmd/nudge/testdata")

// statusFixture is a database the real engine filled: one demo pass against
// the simulators on a fake clock, then a STOP from record 14's number and a
// YES (the visit-confirm reply rule) from record B-003's, written back.
type statusFixture struct {
	cfg, db string
}

// The phone numbers and addresses of the fixture the tests look for.
const (
	stopPhone  = "+16175550113" // site_a record 14, texted STOP
	replyPhone = "+13125550152" // site_b record B-003, texted YES
)

// afterPass is when the fixture's participants text back: an hour after
// the demo pass.
var afterPass = demo.StudyTime.Add(time.Hour)

func newStatusFixture(t *testing.T) statusFixture {
	t.Helper()
	db := filepath.Join(t.TempDir(), "nudge.db")
	clk := sms.NewFakeClock(demo.StudyTime)
	env, err := demo.Start(demo.Options{Dir: demoDir, DBPath: db, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.Pass(ctx, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	// The pass ends within its first minute, at a time that varies with
	// how the SMS and email senders share the fake clock; what follows
	// happens at fixed times.
	if now := clk.Now(); now.After(demo.StudyTime.Add(time.Minute)) {
		t.Fatalf("the demo pass ended at %v, after its first minute", now)
	}
	clk.Set(afterPass)
	for _, in := range []engine.InboundSMS{
		{MessageSID: "SM" + strings.Repeat("a", 32), From: stopPhone, To: "+14155550100", Body: "STOP"},
		{MessageSID: "SM" + strings.Repeat("b", 32), From: replyPhone, To: "+14155550199", Body: "yes"},
	} {
		clk.Advance(time.Minute)
		if _, err := env.Engine.HandleInbound(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Minute)
	if _, err := env.Engine.Report(ctx); err != nil {
		t.Fatal(err)
	}
	return statusFixture{cfg: filepath.Join(demoDir, "nudge.yaml"), db: db}
}

// sidPattern matches the SIDs and Message-IDs the simulators make up at
// random; golden files hold a placeholder.
var sidPattern = regexp.MustCompile(`SM[0-9a-f]{32}|<[0-9a-f]{32}@example\.edu>`)

// passTime matches a time of the demo pass (its first minute), in either
// zone and format; the seconds vary from run to run.
var passTime = regexp.MustCompile(`(2026-11-23[ T]10:00|2026-11-23T18:00):\d\d(\.\d{3})?`)

// stable makes output comparable across runs: the simulators' SIDs and
// the seconds of the demo pass are replaced by placeholders of their width.
func stable(out string) string {
	out = passTime.ReplaceAllStringFunc(out, func(s string) string {
		i := strings.LastIndexByte(s, ':')
		return s[:i+1] + strings.Repeat("s", len(s)-i-1)
	})
	return sidPattern.ReplaceAllStringFunc(out, func(s string) string {
		if strings.HasPrefix(s, "SM") {
			if s == "SM"+strings.Repeat("a", 32) || s == "SM"+strings.Repeat("b", 32) {
				return s // the fixture's own inbound SIDs
			}
			return "SM<sid>"
		}
		return "<message-id>"
	})
}

// checkGolden compares out with cmd/nudge/testdata/NAME (go test -update
// rewrites it).
func checkGolden(t *testing.T, name, out string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if out != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", path, out, want)
	}
}

// nudge status and nudge audit, as a coordinator reads them on a
// terminal: golden files of the text each view prints.
func TestStatusAndAuditGolden(t *testing.T) {
	f := newStatusFixture(t)
	for _, tt := range []struct {
		golden string
		args   []string
	}{
		{"status_runs.golden", []string{"status"}},
		{"status_record.golden", []string{"status", "--record", "14", "--project", "site_a"}},
		{"status_phone.golden", []string{"status", "--phone", "(312) 555-0152"}},
		{"status_email.golden", []string{"status", "--email", "Ana.Alvarez@Example.org"}},
		{"status_rule.golden", []string{"status", "--rule", "welcome-sms", "--last", "3"}},
		{"status_record_shown.golden", []string{"status", "--record", "B-003", "--show-contact", "--show-body"}},
		{"audit.golden", []string{"audit", "--since", "2026-11-23 11:00", "--until", "2026-11-23"}},
		{"audit.csv.golden", []string{"audit", "--since", "2026-11-23 11:00", "--until", "2026-11-24", "--csv"}},
	} {
		t.Run(tt.golden, func(t *testing.T) {
			out, errOut, code := nudge(t, append(tt.args, "--config", f.cfg, "--db", f.db)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			checkGolden(t, tt.golden, stable(out))
		})
	}
}
