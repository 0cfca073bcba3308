package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFiles writes files (path relative to a new temporary directory →
// text) and returns the directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestSafetyTodayIsTheStudysDate proves that 'today' and 'now' in a
// condition are the study's date and time, not the server's: at 03:00 UTC
// on 24 November it is still 23 November, 19:00, in a Pacific study, so a
// reminder due "3 days after consent" on the 20th must not go out yet,
// however the time handed to Evaluate is zoned (a UTC clock, the machine's
// Local zone set to UTC, another server zone, or `preview --as-of` parsed in
// the study zone).
func TestSafetyTodayIsTheStudysDate(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"nudge.yaml": "timezone: America/Los_Angeles\nprojects:\n  - { name: main, redcap_url: https://redcap.example.edu/api/, token_env: T }\n" +
			"twilio: { account_sid_env: S, auth_token_env: A, from: \"+14155550100\" }\n",
		"rules/r.yaml": `rules:
  - name: day-4
    when: "datediff([consent_date], 'today', 'd') >= 4"
    channel: sms
    to: "[mobile]"
    template: t
  - name: visit-soon
    when: "datediff([visit_at], 'now', 'h') < 2"
    channel: sms
    to: "[mobile]"
    template: t
  - name: due-today
    when: "datediff([due_date], 'today', 'd', true) = 0"
    channel: sms
    to: "[mobile]"
    template: t
`,
		"templates/t.sms.txt": "Hello\n",
	})
	s, err := Load(filepath.Join(dir, "nudge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rec := GroupRows("record_id", []map[string]string{exportRow("1", "-", "", "",
		"consent_date", "2026-11-20", "visit_at", "2026-11-23 20:00", "due_date", "2026-11-23", "mobile", "+14155550101")})[0]
	// Pacific: 2026-11-23 19:00 → day 3 after consent, visit in 1 h, due today.
	// UTC:     2026-11-24 03:00 → day 4, visit 7 h ago, due yesterday.
	want := map[string]bool{"day-4": false, "visit-soon": true, "due-today": true}

	instant := time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)
	saved := time.Local
	t.Cleanup(func() { time.Local = saved })
	time.Local = time.UTC
	clocks := map[string]time.Time{
		"UTC clock":              instant,
		"Local is UTC":           instant.Local(),
		"server in Tokyo":        instant.In(time.FixedZone("JST", 9*3600)),
		"preview --as-of, study": time.Date(2026, 11, 23, 19, 0, 0, 0, s.Config.Location),
	}
	for name, now := range clocks {
		for _, r := range s.Rules {
			ds := r.Evaluate(rec, now, nil)
			if len(ds) != 1 || ds[0].Err != nil {
				t.Fatalf("%s: %s: decisions %+v", name, r.Name, ds)
			}
			if ds[0].Selected != want[r.Name] {
				t.Errorf("%s: rule %s selected = %v, want %v (%s)", name, r.Name, ds[0].Selected, want[r.Name], ds[0].Reason)
			}
		}
	}
}

// TestSafetyEventlessRuleRefused proves that a rule without an event in a
// longitudinal project, which would text a participant once per event, is
// refused with its position and what to write instead: by Load (and so by
// `nudge check`) when the study's files show the project is longitudinal,
// and by CheckEvents (engine.Prepare, which asks REDCap) otherwise. The
// explicit `event: any` is accepted and keys every event's message alike.
func TestSafetyEventlessRuleRefused(t *testing.T) {
	head := "timezone: America/Los_Angeles\nprojects:\n  - { name: main, redcap_url: https://redcap.example.edu/api/, token_env: T }\n" +
		"twilio: { account_sid_env: S, auth_token_env: A, from: \"+14155550100\" }\n"
	const eventless = "rules:\n  - name: remind\n    when: \"[consent] = '1'\"\n    channel: sms\n    to: \"[mobile]\"\n    template: t\n"
	const suggestion = `rule "remind": no event in longitudinal project main (%s): the rule would run on every event and could message a participant once per event; ` +
		`name the event, e.g. event: %s, or write event: any to run on every event but message each participant at most once`
	load := func(rules string) (*Study, string, error) {
		dir := writeFiles(t, map[string]string{"nudge.yaml": head, "rules/r.yaml": rules, "templates/t.sms.txt": "Hi\n"})
		s, err := Load(filepath.Join(dir, "nudge.yaml"))
		return s, filepath.Join(dir, "rules", "r.yaml"), err
	}

	t.Run("offline, the files name an event", func(t *testing.T) {
		_, file, err := load(eventless + "  - name: week-1\n    event: week_1_arm_1\n    channel: sms\n    to: \"[mobile]\"\n    template: t\n")
		want := file + ":2:5: " + fmt.Sprintf(suggestion, "an event is named at "+file+":8:12", "week_1_arm_1")
		if err == nil || err.Error() != want {
			t.Fatalf("Load error:\n%v\nwant\n%s", err, want)
		}
	})
	t.Run("offline, a condition reads another event", func(t *testing.T) {
		_, file, err := load(strings.Replace(eventless, "[consent]", "[enrollment_arm_1][consent]", 1))
		if err == nil || !strings.HasPrefix(err.Error(), file+":2:5: rule \"remind\": no event in longitudinal project main") {
			t.Fatalf("Load error = %v, want the eventless rule refused", err)
		}
	})
	t.Run("only REDCap knows", func(t *testing.T) {
		s, file, err := load(eventless)
		if err != nil {
			t.Fatalf("Load: %v (offline, nothing shows the project is longitudinal)", err)
		}
		errs := s.CheckEvents("main", []string{"enrollment_arm_1", "week_1_arm_1"})
		want := file + ":2:5: " + fmt.Sprintf(suggestion, "REDCap lists its events", "baseline_arm_1")
		if errs.Error() != want {
			t.Fatalf("CheckEvents:\n%v\nwant\n%s", errs, want)
		}
	})
	t.Run("event: any", func(t *testing.T) {
		s, _, err := load(strings.Replace(eventless, "    channel", "    event: any\n    channel", 1))
		if err != nil {
			t.Fatal(err)
		}
		if errs := s.CheckEvents("main", []string{"enrollment_arm_1", "week_1_arm_1"}); len(errs) != 0 {
			t.Fatalf("CheckEvents refused event: any: %v", errs)
		}
		r := s.Rule("remind")
		rec := GroupRows("record_id", []map[string]string{
			exportRow("1", "enrollment_arm_1", "", "", "consent", "1", "mobile", "+14155550101"),
			exportRow("1", "week_1_arm_1", "", "", "consent", "1", "mobile", "+14155550101"),
		})[0]
		ds := r.Evaluate(rec, time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), nil)
		if len(ds) != 2 || !ds[0].Selected || !ds[1].Selected {
			t.Fatalf("decisions = %+v, want both event rows selected", ds)
		}
		if a, b := r.KeyEvent(ds[0].Row), r.KeyEvent(ds[1].Row); a != "*" || b != "*" {
			t.Errorf("KeyEvent = %q, %q; want the same \"*\" for every event, so one message per participant", a, b)
		}
		named := &Rule{Event: "week_1_arm_1"}
		if got := named.KeyEvent(ds[1].Row); got != "week_1_arm_1" {
			t.Errorf("KeyEvent of a rule with an event = %q, want the row's event", got)
		}
	})
}
