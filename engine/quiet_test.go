package engine_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/storage"
)

// capStudy writes a copy of the demo study whose site_a has only the given
// rules (YAML list items) and records, whose tz is a free-text field (any
// IANA name), and whose config ends with extra (quiet_hours, caps).
func capStudy(t testing.TB, extra, rules string, records []map[string]string) string {
	t.Helper()
	src := filepath.Join("..", "testdata", "demo")
	dir := t.TempDir()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch rel {
		case "nudge.yaml":
			data = append([]byte(withoutLimits(string(data))), extra...)
		case filepath.Join("rules", "site_b.yaml"):
			return nil
		case filepath.Join("rules", "site_a.yaml"):
			data = []byte("project: site_a\nrules:\n" + rules)
		case filepath.Join("redcap", "site_a.dictionary.csv"):
			lines := strings.Split(string(data), "\n")
			for i, l := range lines {
				if strings.HasPrefix(l, "tz,") {
					lines[i] = `tz,enrollment,,text,"Participant time zone",,,,,,,,,,,,,`
				}
			}
			data = []byte(strings.Join(lines, "\n"))
		case filepath.Join("redcap", "site_a.records.json"):
			if data, err = json.Marshal(records); err != nil {
				return err
			}
		}
		return os.WriteFile(filepath.Join(dir, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		text := fmt.Sprintf("Hi [first_name], this is note %d.\n", i)
		if err := os.WriteFile(filepath.Join(dir, "templates", fmt.Sprintf("note%d.sms.txt", i)), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tzWindow is a window of (nearly) the whole day in the zone in tz.
const tzWindow = "    window: { from: \"00:00\", to: \"23:59\", timezone_field: tz }\n"

// participant is a consented site_a record who agreed to texts.
func participant(id, phone, tz string) map[string]string {
	return map[string]string{"record_id": id, "first_name": "P" + id, "mobile_phone": phone, "tz": tz,
		"sms_opt_in": "1", "consent_given": "1", "consent_complete": "2", "consent_date": "2026-11-01"}
}

// smsRule is a rule item texting every participant, with extra keys;
// its template is one of note1 … note4.
func smsRule(name, template, extra string) string {
	return "  - name: " + name + "\n    when: \"[consent_given] = '1'\"\n    channel: sms\n    to: \"[mobile_phone]\"\n" +
		"    template: " + template + "\n" + extra
}

// planAt plans the named rules at the clock's time and enqueues the
// messages, first applying move to each (nil = as planned).
func planAt(t *testing.T, f *fixture, move func(*storage.Message), rules ...string) *engine.Plan {
	t.Helper()
	snaps, err := f.e.Export(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	opt := engine.PlanOptions{Rules: map[string]bool{}}
	for _, r := range rules {
		opt.Rules[r] = true
	}
	plan, err := f.e.Plan(f.ctx, snaps, f.clk.Now(), opt)
	if err != nil {
		t.Fatal(err)
	}
	ms := plan.Messages()
	if move != nil {
		for _, m := range ms {
			move(m)
		}
	}
	if _, err := f.e.Store.EnqueueBatch(f.ctx, ms); err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestSafetyQuietHoursInherited proves every rule keeps the study's quiet
// hours in the participant's own zone. A rule whose window (all day)
// reads the zone from tz, planned at 00:30 in Los Angeles: the text to a
// participant in Auckland (21:30 the same day there) waits for 08:00
// Auckland time, the one to New York (03:30) for 08:00 New York time; a
// rule without a window waits for 08:00 in the study zone. At send time
// too: rows due now (as a version without quiet hours queued them) are held
// until 08:00 in each zone, and then go.
func TestSafetyQuietHoursInherited(t *testing.T) {
	dir := capStudy(t, "quiet_hours: { from: \"21:00\", to: \"08:00\" }\n",
		smsRule("hello", "note1", tzWindow)+smsRule("plain", "note2", ""),
		[]map[string]string{participant("1", "+14155550101", "Pacific/Auckland"), participant("2", "+14155550102", "America/New_York")})
	zones := map[string]string{"1": "Pacific/Auckland", "2": "America/New_York"}
	planned := time.Date(2026, 11, 24, 0, 30, 0, 0, la)
	eight := func(rec string) time.Time {
		loc, _ := time.LoadLocation(zones[rec])
		y, m, d := planned.In(loc).Date()
		if rec == "1" {
			d++ // 21:30 on the 24th in Auckland: the next 08:00 is on the 25th
		}
		return time.Date(y, m, d, 8, 0, 0, 0, loc)
	}

	f := newFixtureWith(t, demo.Options{Dir: dir})
	f.clk.Set(planned)
	plan := planAt(t, f, nil, "hello", "plain")
	for _, d := range plan.Decisions {
		if d.Rule == "plain" {
			if want := time.Date(2026, 11, 24, 8, 0, 0, 0, la); d.Outcome != engine.Deferred || !d.Message.NotBefore.Equal(want) {
				t.Errorf("plain, record %s: %s %q, want deferred to %s", d.Record, d.Outcome, d.Reason, want)
			}
			continue
		}
		if d.Outcome != engine.Deferred || !strings.Contains(d.Reason, "quiet hours 21:00-08:00") {
			t.Errorf("record %s: %s %q, want deferred for the quiet hours", d.Record, d.Outcome, d.Reason)
			continue
		}
		if nb := d.Message.NotBefore; !nb.Equal(eight(d.Record)) {
			t.Errorf("record %s: planned for %s, want %s", d.Record, nb, eight(d.Record))
		}
	}

	f = newFixtureWith(t, demo.Options{Dir: dir})
	f.clk.Set(planned)
	planAt(t, f, func(m *storage.Message) { m.NotBefore = f.clk.Now() }, "hello")
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.env.Twilio.Creates()); n != 0 {
		t.Fatalf("%d texts sent in the quiet hours", n)
	}
	for _, m := range f.messages(t, "hello") {
		if m.State != storage.StateRetry || !m.NotBefore.Equal(eight(m.Record)) {
			t.Errorf("record %s: %s until %s, want held until %s", m.Record, m.State, m.NotBefore, eight(m.Record))
		}
	}
	f.clk.Set(eight("2"))
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	if cs := f.env.Twilio.Creates(); len(cs) != 1 || cs[0].To != "+14155550102" {
		t.Errorf("at 08:00 in New York: %d texts, want 1 to New York", len(cs))
	}
}

// TestSafetyCapAtPlanTime proves the study's per-day cap holds at plan
// time across rules: of two rules due together for one number the first in
// the file is planned now and the second is deferred to the participant's
// next local day with the cap as reason; a rule due later the same day,
// after the first text went, is deferred too; with an expiry before the
// next day (2h, or the end of the window by default) it is skipped, not
// queued.
func TestSafetyCapAtPlanTime(t *testing.T) {
	dir := capStudy(t, "caps: { per_day: 1, per_week: 5 }\n",
		smsRule("first", "note1", tzWindow)+smsRule("second", "note2", tzWindow+"    expires: 36h\n")+
			smsRule("later", "note3", tzWindow+"    expires: 36h\n")+smsRule("short", "note4", tzWindow+"    expires: 2h\n")+
			smsRule("windowed", "note4", tzWindow),
		[]map[string]string{participant("1", "+14155550101", "America/Chicago")})
	f := newFixtureWith(t, demo.Options{Dir: dir})
	chicago, _ := time.LoadLocation("America/Chicago")
	f.clk.Set(time.Date(2026, 11, 23, 10, 0, 0, 0, chicago))
	midnight := time.Date(2026, 11, 24, 0, 0, 0, 0, chicago)
	plan := planAt(t, f, nil, "first", "second")
	got := map[string]engine.Decision{}
	for _, d := range plan.Decisions {
		got[d.Rule] = d
	}
	if d := got["first"]; d.Outcome != engine.Send {
		t.Errorf("first: %s %q, want send", d.Outcome, d.Reason)
	}
	if d := got["second"]; d.Outcome != engine.Deferred || !d.Message.NotBefore.Equal(midnight) ||
		!strings.HasPrefix(d.Reason, "cap reached: 1 text a day; planned for 2026-11-24 00:00 CST") {
		t.Errorf("second: %s %q, want deferred to the next local day", d.Outcome, d.Reason)
	}
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.env.Twilio.Creates()); n != 1 {
		t.Fatalf("%d texts sent, want 1", n)
	}
	// A later pass the same day: the stored texts count; a rule whose
	// message expires before the cap allows the next is skipped.
	f.clk.Set(time.Date(2026, 11, 23, 15, 0, 0, 0, chicago))
	plan = planAt(t, f, nil, "later", "short", "windowed")
	for _, d := range plan.Decisions {
		switch d.Rule {
		case "later":
			// The 24th already has the second rule's text.
			if d.Outcome != engine.Deferred || !d.Message.NotBefore.Equal(midnight.AddDate(0, 0, 1)) {
				t.Errorf("later: %s %q, want deferred to the 25th", d.Outcome, d.Reason)
			}
		case "short", "windowed":
			if d.Outcome != engine.Skipped || !strings.Contains(d.Reason, "cap reached") || d.Message != nil {
				t.Errorf("%s: %s %q, want skipped by the cap", d.Rule, d.Outcome, d.Reason)
			}
		}
	}
}

// TestSafetyCapAtSendTime proves the cap holds at send time: two texts to
// one number queued due now (planned before the cap was set) go out one
// per local day, the second held to the next day and sent then.
func TestSafetyCapAtSendTime(t *testing.T) {
	dir := capStudy(t, "", smsRule("first", "note1", tzWindow+"    expires: 36h\n")+smsRule("second", "note2", tzWindow+"    expires: 36h\n"),
		[]map[string]string{participant("1", "+14155550101", "Asia/Kolkata")})
	f := newFixtureWith(t, demo.Options{Dir: dir})
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	f.clk.Set(time.Date(2026, 11, 23, 22, 0, 0, 0, kolkata))
	plan := planAt(t, f, nil, "first", "second")
	if n := len(plan.Messages()); n != 2 {
		t.Fatalf("%d messages planned, want 2", n)
	}
	f.e.Study.Config.Caps.PerDay = 1
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.env.Twilio.Creates()); n != 1 {
		t.Fatalf("%d texts in one pass, want 1", n)
	}
	ms := f.messages(t, "second")
	next := time.Date(2026, 11, 24, 0, 0, 0, 0, kolkata)
	if len(ms) != 1 || ms[0].State != storage.StateRetry || !ms[0].NotBefore.Equal(next) || !strings.HasPrefix(ms[0].Reason, "cap reached: 1 text a day") {
		t.Fatalf("second: %+v, want held to the next local day by the cap", ms)
	}
	f.clk.Set(next.Add(time.Minute))
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.env.Twilio.Creates()); n != 2 {
		t.Fatalf("%d texts after midnight, want 2", n)
	}
}
