package engine_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/email/smtptest"
	"github.com/nudge-study/nudge/storage"
)

const reportTeam = "team@example.edu"

// newReportFixture is the demo study with a reports section (reports is
// its body, e.g. `{ to: [team@example.edu] }`), reports written to dir.
func newReportFixture(t *testing.T, reports string) (*fixture, string) {
	t.Helper()
	dir := t.TempDir()
	copyDemo(t, dir)
	path := filepath.Join(dir, "nudge.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(data, "\nreports: "+reports+"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	return newFixtureWith(t, demo.Options{Dir: dir}), filepath.Join(dir, "reports")
}

// reports are the run reports the SMTP server received for the team.
func (f *fixture) reports() []smtptest.Received {
	return f.emailsTo(reportTeam)
}

func (f *fixture) pass(t *testing.T) *engine.RunResult {
	t.Helper()
	res, err := f.e.Run(f.ctx, engine.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestReportEmailAfterPassWithChanges: a pass that sends is reported to
// the team once, through the outbox to the real SMTP server; a pass that
// changes nothing sends no report.
func TestReportEmailAfterPassWithChanges(t *testing.T) {
	f, _ := newReportFixture(t, "{ to: ["+reportTeam+"] }")
	res := f.pass(t)
	if res.Dispatch.Sent == 0 {
		t.Fatal("the demo pass sent nothing; the test needs a pass with changes")
	}
	got := f.reports()
	if len(got) != 1 {
		t.Fatalf("after a pass that sent %d messages: %d reports, want 1", res.Dispatch.Sent, len(got))
	}
	if !strings.Contains(got[0].Subject, "run report, pass") || !strings.Contains(got[0].Text, "Per rule") {
		t.Errorf("report: subject %q, text:\n%s", got[0].Subject, got[0].Text)
	}
	m, err := f.e.Store.ByRule(f.ctx, "report:team")
	if err != nil || len(m) != 1 || m[0].State != storage.StateSent {
		t.Fatalf("outbox report rows %+v, %v: want one sent", m, err)
	}
	// The next pass finds only what the first report told: no report (each
	// not-reached entry is told once, not again at the next pass). A status
	// Twilio reports only now (the simulator's statuses advance in real
	// time) is news, and may be reported.
	f.clk.Advance(10 * time.Minute)
	if r := f.pass(t); r.Enqueued+r.Dispatch.Sent+r.Track.Final == 0 && len(f.reports()) != 1 {
		t.Fatalf("a pass with nothing new sent a report:\n%s", f.reports()[1].Text)
	}
	// Then passes with nothing new send nothing.
	n := len(f.reports())
	quiet := 0
	for range 6 {
		f.clk.Advance(time.Minute)
		r := f.pass(t)
		if len(f.reports()) == n {
			quiet++
			if r.Enqueued+r.Dispatch.Sent != 0 {
				t.Errorf("a pass that enqueued %d and sent %d was not reported", r.Enqueued, r.Dispatch.Sent)
			}
		} else {
			quiet = 0
		}
		n = len(f.reports())
	}
	if quiet < 2 {
		t.Errorf("every pass was reported (%d reports): passes with no changes must send none", n)
	}
}

// TestReportKillSwitchIsReported: setting the kill switch is a change the
// team hears of, though it holds every other message; keeping it set is not.
func TestReportKillSwitchIsReported(t *testing.T) {
	f, _ := newReportFixture(t, "{ to: ["+reportTeam+"] }")
	for range 4 {
		f.pass(t)
		f.clk.Advance(time.Minute)
	}
	n := len(f.reports())
	if err := f.e.Store.SetPause(f.ctx, storage.Pause{Scope: storage.PauseAll, Reason: "checking a complaint", At: f.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	f.pass(t)
	got := f.reports()
	if len(got) != n+1 || !strings.Contains(got[len(got)-1].Text, "all sending is paused") {
		t.Fatalf("after the kill switch: %d reports (want %d), last %q", len(got), n+1, got[len(got)-1].Text)
	}
	f.clk.Advance(time.Minute)
	f.pass(t)
	if len(f.reports()) != n+1 {
		t.Errorf("the kill switch still set, nothing else new: a report was sent again")
	}
}

// TestReportDailyDigestOncePerDay: with when: daily the digest goes at
// daily_at, once a day, however many passes run.
func TestReportDailyDigestOncePerDay(t *testing.T) {
	f, _ := newReportFixture(t, `{ to: [`+reportTeam+`], when: daily, daily_at: "11:30" }`)
	// demo.StudyTime is 10:00: the passes before 11:30 send no digest.
	f.pass(t)
	f.clk.Advance(time.Hour)
	f.pass(t)
	if err := f.e.DailyReport(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.reports()); n != 0 {
		t.Fatalf("before daily_at: %d digests", n)
	}
	f.clk.Advance(30 * time.Minute) // 11:30
	if err := f.e.DailyReport(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.pass(t)
	f.clk.Advance(5 * time.Hour)
	f.pass(t)
	if err := f.e.DailyReport(f.ctx); err != nil {
		t.Fatal(err)
	}
	got := f.reports()
	if len(got) != 1 {
		t.Fatalf("on the first day: %d digests, want 1", len(got))
	}
	if !strings.Contains(got[0].Text, "Per rule") {
		t.Errorf("the digest has no per-rule counts:\n%s", got[0].Text)
	}
	f.clk.Set(time.Date(2026, 11, 24, 11, 29, 0, 0, demo.StudyTime.Location()))
	f.pass(t)
	if n := len(f.reports()); n != 1 {
		t.Fatalf("the next day before daily_at: %d digests, want 1", n)
	}
	f.clk.Advance(time.Minute)
	f.pass(t)
	if n := len(f.reports()); n != 2 {
		t.Fatalf("the next day at daily_at: %d digests, want 2", n)
	}
}

// TestSafetyReportHasNoContacts: neither the report email nor the JSON
// report holds a participant's full phone number or email address, or the
// text of a message.
func TestSafetyReportHasNoContacts(t *testing.T) {
	f, dir := newReportFixture(t, "{ to: ["+reportTeam+"], dir: reports }")
	for range 3 {
		f.pass(t)
		f.clk.Advance(10 * time.Minute)
	}
	// A bad number, an opt-out and an undelivered text make the worklist.
	if err := f.e.Store.OptOut(f.ctx, fbAnaPhone, "test", f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Minute)
	f.pass(t)
	var texts []string
	for _, m := range f.reports() {
		texts = append(texts, m.Subject, m.Text, m.HTML)
	}
	files, err := filepath.Glob(filepath.Join(dir, "report-*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no JSON reports in %s: %v", dir, err)
	}
	sawOptOut := false
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(data))
		var rep engine.PassReport
		if err := json.Unmarshal(data, &rep); err != nil {
			t.Fatal(err)
		}
		sawOptOut = sawOptOut || len(rep.NotReached.OptOuts) > 0
	}
	if !sawOptOut {
		t.Error("the opt-out is in no report: the worklist delta is not reported")
	}
	var bodies []string
	for _, m := range f.env.SMTP.Messages() {
		if !strings.EqualFold(strings.Join(m.To, ","), reportTeam) {
			bodies = append(bodies, strings.TrimSpace(m.Text))
		}
	}
	phone := regexp.MustCompile(`\+?\d{10,}`)
	addr := regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+`)
	for _, s := range texts {
		if p := phone.FindString(s); p != "" {
			t.Errorf("a report holds a phone number %q", p)
		}
		for _, a := range addr.FindAllString(s, -1) {
			if !strings.EqualFold(a, reportTeam) {
				t.Errorf("a report holds an address %q", a)
			}
		}
		for _, b := range bodies {
			if b != "" && strings.Contains(s, b) {
				t.Errorf("a report holds a participant's email text %q", b)
			}
		}
		for _, c := range []string{fbAnaPhone, fbMayaPhone, fbAnaEmail, fbMayaEmail, fbJamalPhone} {
			if strings.Contains(s, c) || strings.Contains(s, strings.TrimPrefix(c, "+")) {
				t.Errorf("a report holds %q", c)
			}
		}
	}
}
