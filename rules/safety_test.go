package rules

import (
	"os"
	"path/filepath"
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
