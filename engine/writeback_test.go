package engine_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
	"github.com/nudge-study/nudge/storage"
)

// redcapRow returns a record's row (event, repeat instance) as the REDCap
// simulator holds it, or nil.
func (f *fixture) redcapRow(project, record, event string, instance int) map[string]string {
	inst := ""
	if instance > 0 {
		inst = strconv.Itoa(instance)
	}
	id := f.e.Dicts[project].RecordID()
	for _, row := range f.env.REDCap.Export(f.env.Token(project)) {
		if row[id] == record && row["redcap_event_name"] == event && row["redcap_repeat_instance"] == inst {
			return row
		}
	}
	return nil
}

func (f *fixture) report(t *testing.T) engine.ReportStats {
	t.Helper()
	st, err := f.e.Report(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (f *fixture) inbound(t *testing.T, sid, from, body string) {
	t.Helper()
	if _, err := f.e.HandleInbound(f.ctx, engine.InboundSMS{MessageSID: sid, From: from, To: "+14155550100", Body: body}); err != nil {
		t.Fatal(err)
	}
}

// A status queued for REDCap, retried after a 503, must never land after a
// newer status: REDCap keeps the newest (delivered), never goes back to
// queued.
func TestSafetyWriteBackRetriedAfter503NeverOverwritesNewer(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	msgs := f.messages(t, "diary-reminder")
	if len(msgs) == 0 || msgs[0].SID == "" {
		t.Fatalf("no sent diary reminder: %+v", msgs)
	}
	m := msgs[0]
	old := m.Status

	f.env.REDCap.Fault(redcaptest.Fault{Content: "record", Status: 503, Times: redcap.DefaultAttempts})
	if st := f.report(t); st.Imported != 0 {
		t.Fatalf("imported %d during the outage", st.Imported)
	}
	if err := f.e.HandleStatus(f.ctx, m.SID, "delivered", 0); err != nil {
		t.Fatal(err)
	}
	f.report(t)                    // the newer status, due at once
	f.clk.Advance(2 * time.Minute) // the older one's retry time
	f.report(t)

	row := f.redcapRow("site_b", m.Record, m.Event, m.Instance)
	if got := row["diary_sms_status"]; got != "delivered" {
		t.Errorf("REDCap diary_sms_status = %q after %s → delivered, want delivered", got, old)
	}
	if p, _ := f.e.Store.PendingWriteBacks(f.ctx, "site_b", f.clk.Now().Add(time.Hour), 0); len(p) != 0 {
		t.Errorf("%d write-backs still pending", len(p))
	}
}

// STOP then START, with REDCap answering 503 to the STOP's write-back:
// REDCap must end with the opt-in value, as nudge has the participant
// opted in.
func TestSafetyStopThenStartAfter503EndsOptedIn(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t)               // exports: the participants' numbers are known
	const ben = "+15105550101" // site_a record 2, sms_opt_in = 1
	f.inbound(t, "SMstop", ben, "STOP")
	f.env.REDCap.Fault(redcaptest.Fault{Content: "record", Status: 503, Times: redcap.DefaultAttempts})
	f.report(t)
	f.clk.Advance(time.Second)
	f.inbound(t, "SMstart", ben, "START")
	f.report(t)
	f.clk.Advance(2 * time.Minute)
	f.report(t)

	if out, err := f.e.Store.IsOptedOut(f.ctx, ben); err != nil || out {
		t.Fatalf("nudge: opted out = %v, %v; want opted in", out, err)
	}
	if got := f.redcapRow("site_a", "2", "", 0)["sms_opt_in"]; got != "1" {
		t.Errorf("REDCap sms_opt_in = %q after STOP, START; want 1 (nudge has the participant opted in)", got)
	}
}

// START only reverts an opt-out nudge wrote: a participant whose consent
// field the study team set to "no" stays "no" in REDCap whatever they text.
func TestSafetyStartNeverFlipsConsentTheStudyTeamSet(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t)
	const chloe = "+12065550102" // site_a record 3, sms_opt_in = 0 set by the study team
	for i, word := range []string{"START", "STOP", "START"} {
		f.inbound(t, "SM"+strconv.Itoa(i), chloe, word)
		f.clk.Advance(time.Second)
		f.report(t)
		if got := f.redcapRow("site_a", "3", "", 0)["sms_opt_in"]; got != "0" {
			t.Fatalf("after %s: REDCap sms_opt_in = %q, want 0 as the study team set it", word, got)
		}
	}
}

// A late status for a record deleted from REDCap must not create the
// record again: the write-back is dropped, with its reason in the report.
func TestSafetyWriteBackNeverRecreatesDeletedRecord(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	m := f.messages(t, "diary-reminder")[0]
	f.env.REDCap.Delete(f.env.Token("site_b"), m.Record)

	st := f.report(t)
	for _, row := range f.env.REDCap.Export(f.env.Token("site_b")) {
		if row[f.e.Dicts["site_b"].RecordID()] == m.Record {
			t.Fatalf("the write-back re-created deleted record %s: %v", m.Record, row)
		}
	}
	if st.Dropped == 0 || len(st.Problems) == 0 || st.Problems[0].State != "dropped" ||
		!strings.Contains(st.Problems[0].Reason, "no longer exists") {
		t.Errorf("report = %+v; want the dropped write-back with its reason", st)
	}
	dropped, err := f.e.Store.WriteBacksIn(f.ctx, "site_b", storage.WriteBackDropped)
	if err != nil || len(dropped) == 0 || dropped[0].Record != m.Record {
		t.Errorf("dropped write-backs = %+v, %v", dropped, err)
	}
	if st.Imported == 0 {
		t.Error("the other records' statuses were not written")
	}
}

// A refusal that names no row (a locked record) must not hold back the
// rest of the batch: the locked row is isolated, the others go in, and
// after a few refusals the locked row fails with REDCap's text in the
// report.
func TestSafetyLockedRecordDoesNotBlockTheBatch(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	msgs := f.messages(t, "diary-reminder")
	locked := msgs[len(msgs)/2].Record
	f.env.REDCap.LockRecord(f.env.Token("site_b"), locked, true)
	f.env.REDCap.SetPlainRefusals(f.env.Token("site_b"), true) // a refusal that names no row

	st := f.report(t)
	for _, m := range msgs {
		row := f.redcapRow("site_b", m.Record, m.Event, m.Instance)
		got := row["diary_sms_status"]
		if m.Record == locked && got != "" {
			t.Errorf("locked record %s changed: %q", m.Record, got)
		}
		if m.Record != locked && got != m.Status {
			t.Errorf("record %s: REDCap diary_sms_status = %q, want %q (held back by a locked record)", m.Record, got, m.Status)
		}
	}
	if st.Imported == 0 {
		t.Fatalf("report = %+v", st)
	}
	var final engine.ReportStats
	for range 10 {
		f.clk.Advance(time.Hour)
		final = f.report(t)
		if final.Rejected > 0 {
			break
		}
	}
	if final.Rejected == 0 || len(final.Problems) == 0 {
		t.Fatalf("the locked row never failed: %+v", final)
	}
	p := final.Problems[0]
	if p.Record != locked || p.State != "failed" || !strings.Contains(p.Reason, "locked") {
		t.Errorf("problem = %+v; want the locked record failed with REDCap's text", p)
	}
	if pend, _ := f.e.Store.PendingWriteBacks(f.ctx, "site_b", f.clk.Now().Add(24*time.Hour), 0); len(pend) != 0 {
		t.Errorf("%d write-backs still pending", len(pend))
	}
}

// hookedREDCap runs a hook before each import, while the import is "in
// flight".
type hookedREDCap struct {
	engine.REDCap
	beforeImport func()
}

func (h hookedREDCap) ImportRecords(ctx context.Context, rows []redcap.Row) (redcap.ImportResult, error) {
	if h.beforeImport != nil {
		h.beforeImport()
	}
	return h.REDCap.ImportRecords(ctx, rows)
}

// A newer status queued while the import of the older one is in flight
// must not be marked done by that import's completion: it is imported next.
func TestSafetyNewerStatusQueuedDuringImportIsStillImported(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	m := f.messages(t, "diary-reminder")[0]
	once := true
	f.e.REDCap["site_b"] = hookedREDCap{REDCap: f.e.REDCap["site_b"], beforeImport: func() {
		if once {
			once = false
			if err := f.e.HandleStatus(f.ctx, m.SID, "delivered", 0); err != nil {
				t.Error(err)
			}
			// The newer status is queued while the older one is on its way.
			un, _ := f.e.Store.Unreported(f.ctx, 0)
			for _, u := range un {
				if u.ID == m.ID {
					item := storage.WriteBack{Project: "site_b", Record: m.Record, Event: m.Event, RepeatInstrument: m.Instrument,
						Instance: m.Instance, Fields: map[string]string{"diary_sms_status": u.Status}, Origin: storage.OriginStatus,
						CreatedAt: f.clk.Now()}
					if err := f.e.Store.EnqueueWriteBacks(f.ctx, []storage.WriteBack{item}, map[int64]string{u.ID: u.Status}); err != nil {
						t.Error(err)
					}
				}
			}
		}
	}}
	f.report(t)
	if p, _ := f.e.Store.PendingWriteBacks(f.ctx, "site_b", f.clk.Now(), 0); len(p) != 1 || p[0].Value != "delivered" {
		t.Fatalf("after the in-flight import: pending %+v; want the newer status still pending", p)
	}
	f.report(t)
	if got := f.redcapRow("site_b", m.Record, m.Event, m.Instance)["diary_sms_status"]; got != "delivered" {
		t.Errorf("REDCap diary_sms_status = %q, want delivered", got)
	}
}
