package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
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

// Each view's --json, decoded: what the text shows is there, with contacts
// masked and bodies left out.
func TestStatusAndAuditJSON(t *testing.T) {
	f := newStatusFixture(t)
	run := func(t *testing.T, v any, args ...string) {
		t.Helper()
		out, errOut, code := nudge(t, append(args, "--json", "--config", f.cfg, "--db", f.db)...)
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	for _, tt := range []struct {
		name  string
		args  []string
		check func(t *testing.T, p participantStatus)
	}{
		{"record", []string{"--record", "14", "--project", "site_a"}, func(t *testing.T, p participantStatus) {
			if len(p.Messages) != 2 || p.Messages[0].Rule != "welcome-sms" || p.Messages[1].Rule != "baseline-reminder" {
				t.Fatalf("messages = %+v", p.Messages)
			}
			for _, m := range p.Messages {
				if m.State != "delivered" || m.SID == "" || m.Sent == nil || len(m.History) != 2 || m.History[1].Status != "delivered" {
					t.Errorf("message %d = %+v", m.ID, m)
				}
				if m.To != "+1••••••••13" || m.Body != "" {
					t.Errorf("message %d: to %q, body %q: want masked, none", m.ID, m.To, m.Body)
				}
			}
			if len(p.Numbers) != 1 {
				t.Fatalf("numbers = %+v", p.Numbers)
			}
			n := p.Numbers[0]
			if !n.OptedOut || n.OptOutSource != "sms STOP" || n.OptOutAt == nil || !n.OptOutAt.Equal(afterPass.Add(time.Minute)) {
				t.Errorf("opt-out = %v %q %v", n.OptedOut, n.OptOutSource, n.OptOutAt)
			}
			if len(n.Replies) != 1 || n.Replies[0].Handled != "stop" || n.Replies[0].Body != "" {
				t.Errorf("replies = %+v", n.Replies)
			}
		}},
		{"phone", []string{"--phone", "312.555.0152"}, func(t *testing.T, p participantStatus) {
			if len(p.Records) != 1 || p.Records[0] != (recordRef{"site_b", "B-003"}) || p.Query.Phone != "+1••••••••52" {
				t.Errorf("records = %+v, query %+v", p.Records, p.Query)
			}
			var diary []messageView
			for _, m := range p.Messages {
				if m.Rule == "diary-reminder" {
					diary = append(diary, m)
				}
			}
			if len(diary) != 1 || diary[0].Event != "week_1_arm_1" || diary[0].Instance != 3 {
				t.Errorf("messages = %+v", p.Messages)
			}
			if len(p.Numbers) != 1 || len(p.Numbers[0].Replies) != 1 || p.Numbers[0].Replies[0].ReplyRule != "visit-confirm" ||
				p.Numbers[0].Replies[0].Answer != "" || p.Numbers[0].OptedOut {
				t.Errorf("numbers = %+v", p.Numbers)
			}
		}},
		{"bad number", []string{"--record", "26"}, func(t *testing.T, p participantStatus) {
			if len(p.Messages) == 0 || p.Messages[0].State != "failed" || p.Messages[0].ErrorCode != 21614 {
				t.Fatalf("messages = %+v", p.Messages)
			}
			if len(p.Numbers) != 1 || p.Numbers[0].BadNumber == nil || p.Numbers[0].BadNumber.Code != 21614 {
				t.Errorf("numbers = %+v", p.Numbers)
			}
		}},
		{"unknown", []string{"--record", "no-such-record"}, func(t *testing.T, p participantStatus) {
			if len(p.Messages) != 0 || len(p.Numbers) != 0 {
				t.Errorf("status of an unknown record = %+v", p)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var p participantStatus
			run(t, &p, append([]string{"status"}, tt.args...)...)
			tt.check(t, p)
		})
	}
	t.Run("rule", func(t *testing.T) {
		var r ruleStatusView
		run(t, &r, "status", "--rule", "welcome-sms", "--last", "2")
		if len(r.Counts) != 1 || r.Counts[0].Total != 16 || r.Counts[0].States["delivered"] != 11 || r.Counts[0].States["failed"] != 1 {
			t.Errorf("counts = %+v", r.Counts)
		}
		if len(r.Last) != 2 || r.Last[0].ID <= r.Last[1].ID || len(r.Failures) != 2 || r.Failures[0].State != "review" {
			t.Errorf("last = %+v\nfailures = %+v", r.Last, r.Failures)
		}
	})
	t.Run("runs", func(t *testing.T) {
		var r struct {
			Runs []struct {
				ID      int64      `json:"id"`
				Outcome string     `json:"outcome"`
				Summary runSummary `json:"summary"`
			} `json:"runs"`
		}
		run(t, &r, "status", "--runs", "5")
		if len(r.Runs) != 1 || r.Runs[0].Outcome != "ok" || r.Runs[0].Summary.Enqueued != 58 || len(r.Runs[0].Summary.Rules) != 7 {
			t.Errorf("runs = %+v", r.Runs)
		}
	})
	t.Run("audit", func(t *testing.T) {
		var a struct {
			Events []auditRow `json:"events"`
		}
		run(t, &a, "audit", "--since", "2026-11-23", "--until", "2026-11-23")
		kinds := map[string]int{}
		var skips string
		for _, e := range a.Events {
			kinds[e.Event]++
			if e.Event == auditRunRule && e.Rule == "welcome-sms" {
				skips = e.Detail
			}
		}
		want := map[string]int{"run": 1, "run rule": 7, "planned": 58, "sent": 45, "failed": 2, "review": 1,
			"reply received": 2, "opted out": 2, "bad number": 4}
		for k, n := range want {
			if kinds[k] != n {
				t.Errorf("%d %q event(s), want %d (all: %v)", kinds[k], k, n, kinds)
			}
		}
		if kinds["status"] == 0 || kinds["written back"] == 0 {
			t.Errorf("no status or write-back events: %v", kinds)
		}
		if !strings.Contains(skips, "skipped=5") {
			t.Errorf("welcome-sms run counts = %q, want its 5 skips", skips)
		}
		for i := 1; i < len(a.Events); i++ {
			if a.Events[i].TimeUTC < a.Events[i-1].TimeUTC {
				t.Fatalf("events out of order at %d: %s after %s", i, a.Events[i].TimeUTC, a.Events[i-1].TimeUTC)
			}
		}
	})
}

// No view of status or audit, in any format, shows a participant's phone
// number, email address or a message body unless asked to: the output is
// pasted into tickets and emails. With --show-contact and --show-body they
// are shown (so the check itself can fail).
func TestSafetyStatusAndAuditMaskContacts(t *testing.T) {
	f := newStatusFixture(t)
	db, err := sql.Open("sqlite3", f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	secrets := func(q string) []string {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	var contacts []string
	for _, c := range secrets(`SELECT DISTINCT to_addr FROM messages WHERE to_addr <> ''
		UNION SELECT from_number FROM inbound UNION SELECT phone FROM optouts UNION SELECT phone FROM participants`) {
		// A number is found in any of its spellings: E.164, or its ten
		// digits; an address in any case.
		contacts = append(contacts, strings.ToLower(c))
		if strings.HasPrefix(c, "+1") {
			contacts = append(contacts, c[2:], c[2:5]+") "+c[5:8]+"-"+c[8:], c[2:5]+"-"+c[5:8]+"-"+c[8:])
		}
	}
	bodies := secrets(`SELECT DISTINCT body FROM messages WHERE body <> '' UNION SELECT reply FROM inbound WHERE reply <> ''`)
	if len(contacts) < 40 || len(bodies) < 20 {
		t.Fatalf("the fixture has %d contacts and %d bodies; want a full demo pass", len(contacts), len(bodies))
	}
	views := [][]string{
		{"status"},
		{"status", "--record", "14"},
		{"status", "--record", "1", "--project", "site_a"},
		{"status", "--record", "B-003"},
		{"status", "--phone", "(617) 555-0113"},
		{"status", "--phone", "+13125550152"},
		{"status", "--email", "ana.alvarez@example.org"},
		{"status", "--rule", "welcome-sms", "--last", "50"},
		{"status", "--rule", "welcome-email", "--last", "50"},
		{"status", "--rule", "diary-reminder", "--last", "50"},
		{"audit", "--since", "2026-11-01"},
		{"audit", "--since", "2026-11-01", "--until", "2026-12-01", "--csv"},
	}
	leaks := func(out string) []string {
		var found []string
		low := strings.ToLower(out)
		for _, c := range contacts {
			if strings.Contains(low, c) {
				found = append(found, c)
			}
		}
		for _, b := range bodies {
			if strings.Contains(out, b) {
				found = append(found, b)
			}
		}
		return found
	}
	shown := 0
	for _, v := range views {
		for _, format := range [][]string{nil, {"--json"}} {
			if format != nil && slices.Contains(v, "--csv") {
				continue
			}
			args := append(append(slices.Clone(v), format...), "--config", f.cfg, "--db", f.db)
			out, errOut, code := nudge(t, args...)
			if code != 0 {
				t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
			}
			if l := leaks(out + errOut); len(l) > 0 {
				t.Errorf("%v shows %d contact(s) or body(ies) unasked, e.g. %q", v, len(l), l[0])
			}
			flags := []string{"--show-contact"}
			if v[0] == "status" {
				flags = append(flags, "--show-body")
			}
			out, _, _ = nudge(t, append(args, flags...)...)
			shown += len(leaks(out))
		}
	}
	if shown == 0 {
		t.Error("--show-contact and --show-body showed nothing: the check cannot fail")
	}
}

// Wrong or missing flags are usage errors (exit 2) that say what to give;
// a database that does not exist is not created.
func TestStatusAndAuditUsage(t *testing.T) {
	cfg := filepath.Join(demoDir, "nudge.yaml")
	missing := filepath.Join(t.TempDir(), "none.db")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status", "--record", "1", "--rule", "welcome-sms"}, 2, "give one of --record, --phone, --email or --rule"},
		{[]string{"status", "--project", "site_a"}, 2, "--project goes with --record"},
		{[]string{"status", "--phone", "555-01"}, 2, "--phone"},
		{[]string{"audit"}, 2, "--since is required"},
		{[]string{"audit", "--since", "2026-11-23", "--csv", "--json"}, 2, "--csv or --json"},
		{[]string{"audit", "--since", "yesterday"}, 2, "--since"},
		{[]string{"audit", "--since", "2026-11-23", "--until", "2026-11-01"}, 2, "must come after --since"},
		{[]string{"status", "--runs", "3"}, 1, "no database at " + missing},
	} {
		_, errOut, code := nudge(t, append(tt.args, "--config", cfg, "--db", missing)...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, %q; want exit %d and %q", tt.args, code, errOut, tt.code, tt.want)
		}
		if strings.Contains(errOut, "555-01") {
			t.Errorf("%v: the error shows the number: %q", tt.args, errOut)
		}
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("status created a database")
	}
}
