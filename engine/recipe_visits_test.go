package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
)

// newVisitRecipe runs the visit reminder recipe (testdata/recipes) against
// the simulators, with one participant (record 10) whose visit is on the
// 15th of April 2027.
func newVisitRecipe(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "testdata", "recipes", "visit-reminders"))); err != nil {
		t.Fatal(err)
	}
	records := `[{"record_id": "10", "first_name": "Rosa", "mobile_phone": "` + visitPhone + `", "tz": "America/Los_Angeles",
  "consent_given": "1", "sms_opt_in": "1", "visit_date": "2027-04-15", "visit_time": "09:30"}]`
	if err := os.WriteFile(filepath.Join(dir, "redcap", "visits.records.json"), []byte(records), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, demo.Options{Dir: dir})
	f.planAt(t, "2027-04-14 12:00", "visit-reminder")
	f.dispatchAt(t, "2027-04-14 18:00")
	if got := f.textTimes(t, "visit-reminder"); len(got) != 1 || got[0] != "2027-04-14 18:00 PDT" {
		t.Fatalf("reminder sent at %v, want 2027-04-14 18:00 PDT", got)
	}
	return f
}

// answer texts body from the participant at the clock's time, as Twilio's
// webhook would, and returns nudge's answer.
func (f *fixture) answer(t *testing.T, sid, body string) string {
	t.Helper()
	a, err := f.e.HandleInbound(f.ctx, engine.InboundSMS{MessageSID: sid, From: visitPhone, To: "+14155550140", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	f.report(t)
	return a
}

// TestSafetyRecipeVisitReplies: the visit reminder recipe's replies. YES or
// Y within 48 hours of the reminder confirms the visit (visit_confirmed=1,
// confirmed_at the time of the text); NO or N sets visit_confirmed=0, asks
// the participant to call and emails the coordinator; after 48 hours
// neither answer changes REDCap. (The coordinator's email once stayed
// queued for ever: a study whose only email was a reply's notify had no
// mail sender.)
func TestSafetyRecipeVisitReplies(t *testing.T) {
	f := newVisitRecipe(t)
	f.clk.Set(laTime("2027-04-15 09:00"))
	if a := f.answer(t, "SMy1", " y "); !strings.Contains(a, "your visit is confirmed") {
		t.Errorf("answer to Y: %q", a)
	}
	if v, at := f.redcapValue("visits", "10", "visit_confirmed"), f.redcapValue("visits", "10", "confirmed_at"); v != "1" || at != "2027-04-15 09:00" {
		t.Errorf("after Y: visit_confirmed %q confirmed_at %q, want 1 and 2027-04-15 09:00", v, at)
	}

	g := newVisitRecipe(t)
	g.clk.Set(laTime("2027-04-16 17:59")) // 47:59 after the reminder
	if a := g.answer(t, "SMn1", "NO"); !strings.Contains(a, "Please call the study team") {
		t.Errorf("answer to NO: %q", a)
	}
	if v := g.redcapValue("visits", "10", "visit_confirmed"); v != "0" {
		t.Errorf("after NO: visit_confirmed %q, want 0", v)
	}
	g.sendAndTrack(t)
	if got := g.emailsTo("coordinator@example.edu"); len(got) != 1 {
		t.Errorf("the coordinator got %d emails, want 1", len(got))
	}

	h := newVisitRecipe(t)
	h.clk.Set(laTime("2027-04-16 18:01")) // 48:01 after the reminder
	h.answer(t, "SMy2", "YES")
	h.answer(t, "SMn2", "N")
	if v := h.redcapValue("visits", "10", "visit_confirmed"); v != "" {
		t.Errorf("answers after 48 hours: visit_confirmed %q, want it untouched", v)
	}
	h.sendAndTrack(t)
	if got := h.emailsTo("coordinator@example.edu"); len(got) != 0 {
		t.Errorf("the coordinator got %d emails after 48 hours, want none", len(got))
	}
}
