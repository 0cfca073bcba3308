package engine_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/metrics"
	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
	"github.com/nudge-study/nudge/storage"
	"github.com/nudge-study/nudge/templates"
)

// noon is when baseline-reminder texts both Ben (record 2, Honolulu) and,
// once opted in, Chloe (record 3, Los Angeles) within their allowed hours.
var noon = time.Date(2026, 11, 23, 12, 0, 0, 0, la)

// link asks the REDCap simulator for a participant's survey link.
func (f *fixture) link(t *testing.T, project, record, instrument, event string, instance int) string {
	t.Helper()
	u, err := f.e.REDCap[project].(engine.SurveyLinker).SurveyLink(context.Background(),
		redcap.SurveyLinkParams{Record: record, Instrument: instrument, Event: event, Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// surveyLinkCalls counts the survey links REDCap was asked for.
func surveyLinkCalls(f *fixture) int {
	n := 0
	for _, c := range f.env.REDCap.Calls() {
		if c.Content == "surveyLink" {
			n++
		}
	}
	return n
}

// TestSafetySurveyLinkIsTheParticipantsOwn: every text carries the link
// REDCap gives its own participant — per record, and per repeat instance —
// and never another participant's.
func TestSafetySurveyLinkIsTheParticipantsOwn(t *testing.T) {
	f := newFixture(t)
	f.clk.Set(noon)
	f.load(t, "site_a", map[string]string{"record_id": "3", "sms_opt_in": "1"})
	f.load(t, "site_b", map[string]string{"participant_id": "B-003", "redcap_event_name": "week_1_arm_1",
		"redcap_repeat_instrument": "daily_diary", "redcap_repeat_instance": "7", "daily_diary_complete": "0"})
	r := f.e.Study.Rule("diary-reminder")
	body, err := templates.Parse("diary", "Diary [current-instance]: [survey-url:daily_diary]")
	if err != nil {
		t.Fatal(err)
	}
	r.SMS.Body = body
	f.enqueue(t, "baseline-reminder", "diary-reminder")
	// The plan asks REDCap once per link, not once per render.
	if calls, planned := surveyLinkCalls(f), len(f.messages(t, "baseline-reminder"))+len(f.messages(t, "diary-reminder")); calls != planned {
		t.Errorf("the plan asked REDCap for %d links for %d messages", calls, planned)
	}
	f.settle(t)

	want := map[string]bool{} // every link a text must carry
	texts := 0
	for _, m := range f.messages(t, "baseline-reminder") {
		l := f.link(t, "site_a", m.Record, "baseline", "", 1)
		want[l] = true
		sent := f.createsTo(m.To)
		if len(sent) != 1 || !strings.Contains(sent[0].Body, l) {
			t.Errorf("record %s: texts %+v, want one with its link %s", m.Record, sent, l)
		}
		texts++
	}
	if texts < 2 || len(want) != texts {
		t.Fatalf("%d baseline texts with %d distinct links: want two or more, each its own", texts, len(want))
	}
	instances := map[string]int{}
	for _, m := range f.messages(t, "diary-reminder") {
		l := f.link(t, "site_b", m.Record, "daily_diary", m.Event, m.Instance)
		if want[l] {
			t.Errorf("record %s instance %d: link %s is another text's", m.Record, m.Instance, l)
		}
		want[l] = true
		if got := "Diary " + strconv.Itoa(m.Instance) + ": " + l; m.Body != got && m.State != "canceled" {
			t.Errorf("record %s instance %d: body %q, want %q", m.Record, m.Instance, m.Body, got)
		}
		instances[m.Record]++
	}
	several := false
	for _, n := range instances {
		several = several || n > 1
	}
	if !several {
		t.Errorf("no record with several diary instances texted (%v): the instance test proves nothing", instances)
	}
	// Each text holds exactly one link, and it is one of the above.
	for _, c := range f.env.Twilio.Creates() {
		if i := strings.Index(c.Body, "/surveys/?s="); i >= 0 {
			if n := strings.Count(c.Body, "/surveys/?s="); n != 1 {
				t.Errorf("a text holds %d links", n)
			}
		}
	}
	f.assertNoDuplicates(t)
}

// TestSafetySurveyLinkNeverMissing: while REDCap cannot give survey links
// nothing is planned and nothing queued is sent; once it can, each
// participant gets one text, with the link.
func TestSafetySurveyLinkNeverMissing(t *testing.T) {
	f := newFixture(t)
	f.clk.Set(noon)

	// At plan time: skipped, with the reason, and planned at the next pass.
	f.env.REDCap.Fault(redcaptest.Fault{Content: "surveyLink", Status: 503, Times: 1000})
	plan := f.enqueue(t, "baseline-reminder")
	skipped := 0
	for _, d := range plan.Decisions {
		if d.Message != nil {
			t.Errorf("record %s planned during the outage: %q", d.Record, d.Message.Body)
		}
		if d.Outcome == engine.Skipped && strings.Contains(d.Reason, "could not give the survey link") {
			skipped++
		}
	}
	if skipped == 0 {
		t.Fatal("no decision says the link could not be fetched")
	}

	// At send time: held, not sent, not canceled.
	f.env.REDCap.ClearFaults()
	f.enqueue(t, "baseline-reminder")
	queued := f.messages(t, "baseline-reminder")
	if len(queued) == 0 {
		t.Fatal("nothing planned once REDCap is back")
	}
	f.env.REDCap.Fault(redcaptest.Fault{Content: "surveyLink", Status: 503, Times: 1000})
	for range 3 {
		f.clk.Advance(5 * time.Minute)
		st, err := f.e.Dispatch(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Sent != 0 || st.Canceled != 0 || st.Failed != 0 {
			t.Fatalf("during the outage: %+v", st)
		}
	}
	if n := len(f.env.Twilio.Creates()); n != 0 {
		t.Fatalf("%d texts sent while REDCap gave no links", n)
	}
	f.env.REDCap.ClearFaults()
	f.settle(t)
	for _, m := range f.messages(t, "baseline-reminder") {
		sent := f.createsTo(m.To)
		l := f.link(t, "site_a", m.Record, "baseline", "", 1)
		if len(sent) != 1 || !strings.Contains(sent[0].Body, l) {
			t.Errorf("record %s: texts %+v, want one with %s", m.Record, sent, l)
		}
	}
	f.assertNoDuplicates(t)
}

// A survey link to an instrument that is not a survey is the
// coordinator's mistake: the message is skipped with a reason that says
// what to do, at plan time and at send time.
func TestSurveyLinkToNonSurvey(t *testing.T) {
	f := newFixture(t)
	f.clk.Set(noon)
	f.enqueue(t, "baseline-reminder")
	queued := map[string]bool{}
	for _, m := range f.messages(t, "baseline-reminder") {
		queued[m.Record] = true
	}
	if len(queued) == 0 {
		t.Fatal("nothing queued")
	}
	body, err := templates.Parse("b", "Hi: [survey-url:enrollment]")
	if err != nil {
		t.Fatal(err)
	}
	f.e.Study.Rule("baseline-reminder").SMS.Body = body
	st, err := f.e.Dispatch(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 0 || st.Canceled == 0 {
		t.Errorf("dispatch: %+v, want the queued texts canceled", st)
	}
	for _, m := range f.messages(t, "baseline-reminder") {
		if !strings.Contains(m.Reason, "enrollment is not enabled as a survey") {
			t.Errorf("record %s: %s %q", m.Record, m.State, m.Reason)
		}
	}
	plan := f.enqueue(t, "baseline-reminder")
	for _, d := range plan.Decisions {
		if queued[d.Record] && (d.Outcome != engine.Skipped || !strings.Contains(d.Reason, "Online Designer")) && d.Outcome != engine.Done {
			t.Errorf("record %s: %s %q", d.Record, d.Outcome, d.Reason)
		}
	}
}

// Prepare (before run and serve) asks REDCap which linked instruments are
// surveys, and refuses a link to one that is not.
func TestPrepareRefusesLinkToNonSurvey(t *testing.T) {
	f := newFixture(t)
	body, err := templates.Parse("b.sms.txt", "Hi: [survey-url:enrollment]")
	if err != nil {
		t.Fatal(err)
	}
	f.e.Study.Rule("baseline-reminder").SMS.Body = body
	err = f.e.Prepare(f.ctx)
	if err == nil || !strings.Contains(err.Error(), "b.sms.txt:1:5: rule \"baseline-reminder\": [survey-url:enrollment]: instrument enrollment is not a survey (REDCap refuses survey links for it)") {
		t.Errorf("Prepare: %v", err)
	}
	asked := 0
	for _, c := range f.env.REDCap.Calls() {
		if c.Content == "participantList" {
			asked++
		}
	}
	if asked == 0 {
		t.Error("REDCap was not asked")
	}
}

// TestSafetySurveyLinkNeverPlaceholder: with the REDCap connection wrapped
// for metrics (as `nudge serve` runs it), texts still carry the
// participant's real link, never the preview placeholder.
func TestSafetySurveyLinkNeverPlaceholder(t *testing.T) {
	f := newFixture(t)
	want := f.link(t, "site_a", "2", "baseline", "", 1)
	f.e.Instrument(metrics.New(nil))
	f.clk.Set(noon)
	f.enqueue(t, "baseline-reminder")
	f.settle(t)
	m := f.byRecord(t, "baseline-reminder")["2"]
	sent := f.createsTo(m.To)
	if len(sent) != 1 || !strings.Contains(sent[0].Body, want) {
		t.Errorf("texts to record 2: %+v, want one with %s", sent, want)
	}
	for _, c := range f.env.Twilio.Creates() {
		if strings.Contains(c.Body, engine.PreviewSurveyLink) {
			t.Errorf("a text went out with the preview link")
		}
	}
}

// TestSafetySurveyLinksAcrossChunks: a pass over many participants plans
// their records a chunk at a time, with the planner's messages reused from
// chunk to chunk, while the texts that pipe a survey link wait for their
// links until every chunk is planned. Each text must still go to its own
// participant with its own link.
func TestSafetySurveyLinksAcrossChunks(t *testing.T) {
	f := newFixture(t)
	f.clk.Set(noon)
	const n = 300 // several chunks of records
	rows := make([]map[string]string, n)
	for i := range rows {
		rows[i] = map[string]string{"record_id": strconv.Itoa(1000 + i), "first_name": "P" + strconv.Itoa(i),
			"consent_given": "1", "sms_opt_in": "1", "baseline_complete": "0", "consent_date": "2026-11-10",
			"mobile_phone": fmt.Sprintf("+1312555%04d", 2000+i), "tz": "America/Chicago"}
	}
	f.load(t, "site_a", rows...)
	// A client of its own, unthrottled: each text's link is asked for.
	c, err := redcap.New(f.env.REDCapURL, f.env.Token("site_a"), redcap.WithRate(0))
	if err != nil {
		t.Fatal(err)
	}
	f.e.REDCap["site_a"] = c
	// Paused, so that the pass plans and queues the texts (with their
	// links) without spending the test's time sending them.
	if err := f.e.Store.SetPause(f.ctx, storage.Pause{Scope: storage.PauseRule, Name: "baseline-reminder", At: f.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.Run(f.ctx, engine.PlanOptions{Rules: map[string]bool{"baseline-reminder": true}}); err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, m := range f.messages(t, "baseline-reminder") {
		i, err := strconv.Atoi(m.Record)
		if err != nil || i < 1000 {
			continue // the demo's own participants
		}
		got++
		if want := fmt.Sprintf("+1312555%04d", 2000+i-1000); m.To != want {
			t.Errorf("record %s: text to %s, want %s", m.Record, m.To, want)
		}
		l := f.link(t, "site_a", m.Record, "baseline", "", 1)
		if want := "Hi P" + strconv.Itoa(i-1000) + ","; !strings.HasPrefix(m.Body, want) || !strings.Contains(m.Body, l) {
			t.Errorf("record %s: body %q, want it to open %q and hold its link %s", m.Record, m.Body, want, l)
		}
	}
	if got != n {
		t.Errorf("%d of the %d participants got a text", got, n)
	}
	f.assertNoDuplicates(t)
}
