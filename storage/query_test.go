package storage

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// queryPlanText returns SQLite's plan for q as one line, steps joined by "; ".
func queryPlanText(t *testing.T, s *Store, q string, args ...any) string {
	t.Helper()
	return strings.Join(queryPlan(t, s, q, args...), "; ")
}

// `nudge status` and `nudge audit` run against a study's whole outbox: each
// of their lookups of a table that grows with the study goes through an
// index, never a scan.
func TestStatusQueriesUseIndexes(t *testing.T) {
	s, _ := openTemp(t)
	tests := []struct {
		name, query string
		args        []any
		index       string
	}{
		{"RecordMessages", sqlRecordMessages, []any{"12", "", ""}, "messages_record"},
		{"MessagesTo", sqlMessagesTo, []any{"+1555"}, "messages_to"},
		{"InboundFrom", sqlInboundFrom, []any{"+1555"}, "inbound_from"},
		{"RuleCounts", sqlRuleCounts, []any{"r"}, "messages_rule"},
		{"RuleLast", sqlRuleLast, []any{"r", 10}, "messages_rule"},
		{"RuleFailures", sqlRuleFailures, []any{"r", 10}, "messages_rule"},
		{"History", sqlHistory, []any{1}, "status_history_message"},
		{"AuditCreated", sqlAuditCreated, []any{0, 1}, "messages_created"},
		{"AuditHistory", sqlAuditHistory, []any{0, 1}, "status_history_at"},
		{"AuditWriteBacks", sqlAuditWriteBacks, []any{0, 1}, "writebacks_done"},
		{"AuditInbound", sqlAuditInbound, []any{0, 1}, "inbound_received"},
		{"AuditSkips", sqlAuditSkips, []any{0, 1}, "skip_log_at"},
	}
	for _, tt := range tests {
		p := queryPlanText(t, s, tt.query, tt.args...)
		if !strings.Contains(p, "INDEX "+tt.index) {
			t.Errorf("%s: plan %q does not use index %s", tt.name, p, tt.index)
		}
		if strings.Contains(p, "SCAN m") || strings.Contains(p, "SCAN messages") {
			t.Errorf("%s: plan %q scans the messages", tt.name, p)
		}
	}
	// Runs are read newest first by their rowid: no index needed.
	if p := queryPlanText(t, s, sqlRuns, 5); strings.Contains(p, "TEMP B-TREE") {
		t.Errorf("Runs: plan %q sorts the runs", p)
	}
}

// The trail names every event in its range, in time order, and nothing
// outside it; events about a number name its records.
func TestAudit(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	runID, err := s.StartRun(ctx, "run", at(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRun(ctx, runID, at(1), "ok", map[string]int{"enqueued": 1}); err != nil {
		t.Fatal(err)
	}
	m := newMsg("12", 1)
	m.RunID, m.CreatedAt = runID, at(0)
	if _, err := s.Enqueue(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim(ctx, m.ID, at(1), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSent(ctx, m.ID, "SM1", "queued", 1, at(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordStatus(ctx, m.ID, "delivered", 0, at(2), SourceCallback); err != nil {
		t.Fatal(err)
	}
	late := newMsg("13", 1)
	late.CreatedAt = at(90) // outside the range
	if _, err := s.Enqueue(ctx, late); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceParticipants(ctx, "main", []Participant{{Phone: "+14155550101", Record: "12"}}, at(0)); err != nil {
		t.Fatal(err)
	}
	if err := s.OptOut(ctx, "+14155550101", "sms", at(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueWriteBacks(ctx, []WriteBack{{Project: "main", Record: "12", Fields: map[string]string{"st": "delivered"},
		Origin: OriginStatus, CreatedAt: at(2)}}, nil); err != nil {
		t.Fatal(err)
	}
	wb, err := s.PendingWriteBacks(ctx, "main", at(4), 0)
	if err != nil || len(wb) != 1 {
		t.Fatalf("pending write-backs: %v, %v", wb, err)
	}
	if err := s.CompleteWriteBacks(ctx, []WriteBackRef{wb[0].Ref()}, at(4)); err != nil {
		t.Fatal(err)
	}

	got, err := s.Audit(ctx, at(0), at(60))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ kind, record, detail string }{
		{AuditRun, "", "kind=run outcome=ok"},
		{AuditPlanned, "12", "channel=sms occurrence=1"},
		{AuditSent, "12", "channel=sms status=queued sid=SM1"},
		{AuditStatus, "12", "status=delivered source=callback"},
		{AuditOptedOut, "12", "source=sms"},
		{AuditWrittenBack, "12", "field=st value=delivered origin=status"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Kind != w.kind || g.Record != w.record || g.Detail != w.detail {
			t.Errorf("event %d = %s/%s/%q, want %s/%s/%q", i, g.Kind, g.Record, g.Detail, w.kind, w.record, w.detail)
		}
		if strings.Contains(g.Detail, "+1415") || strings.Contains(g.Detail, m.Body) {
			t.Errorf("event %d detail holds a contact or body: %q", i, g.Detail)
		}
	}
	if got[4].Contact != "+14155550101" || got[4].Project != "main" {
		t.Errorf("opt-out event = %+v, want the number and its record", got[4])
	}

	// A range over several windows gives every event once, in order.
	all, err := s.Audit(ctx, at(-150), at(150))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(want)+1 || all[len(all)-1].Record != "13" || all[len(all)-1].Kind != AuditPlanned {
		t.Fatalf("over several windows: %+v", all)
	}
	for i := 1; i < len(all); i++ {
		if AuditLess(all[i], all[i-1]) {
			t.Errorf("event %d (%v) comes before event %d (%v)", i, all[i].At, i-1, all[i-1].At)
		}
	}
}

// A number's state: its latest opt-out choice, Twilio's verdict and the
// pause a reply set; an unknown number has none.
func TestNumberStateOf(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	ns, err := s.NumberStateOf(ctx, "+14155550101")
	if err != nil || ns.OptOutKnown || ns.Bad != nil || !ns.PausedUntil.IsZero() {
		t.Fatalf("unknown number: %+v, %v", ns, err)
	}
	if err := s.OptOut(ctx, "+14155550101", "sms", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.FlagBadNumber(ctx, BadNumber{Phone: "+14155550101", Code: 21211, Reason: "invalid", At: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.PauseNumber(ctx, "+14155550101", "reply:later", t0.Add(time.Hour), t0); err != nil {
		t.Fatal(err)
	}
	ns, err = s.NumberStateOf(ctx, "+14155550101")
	if err != nil || !ns.OptOutKnown || !ns.OptedOut || ns.OptOutSource != "sms" || !ns.OptOutAt.Equal(t0) ||
		ns.Bad == nil || ns.Bad.Code != 21211 || !ns.PausedUntil.Equal(t0.Add(time.Hour)) || ns.PauseSource != "reply:later" {
		t.Errorf("state = %+v (bad %+v), %v", ns, ns.Bad, err)
	}
}

// A rule's status counts its messages per state and lists the newest ones
// and the newest failures, newest first.
func TestRuleStatusOf(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	var ids []int64
	for i := 1; i <= 3; i++ {
		m := newMsg(fmt.Sprint("r", i), 1)
		if _, err := s.Enqueue(ctx, m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	if err := s.MarkFailed(ctx, ids[0], 21211, "invalid number", t0); err != nil {
		t.Fatal(err)
	}
	rs, err := s.RuleStatusOf(ctx, "reminder", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Counts) != 1 || rs.Counts[0].Total != 3 || rs.Counts[0].States[StateFailed] != 1 || rs.Counts[0].States[StatePlanned] != 2 {
		t.Errorf("counts = %+v", rs.Counts)
	}
	if len(rs.Last) != 2 || rs.Last[0].ID != ids[2] || rs.Last[1].ID != ids[1] {
		t.Errorf("last = %+v", rs.Last)
	}
	if len(rs.Failures) != 1 || rs.Failures[0].ID != ids[0] || rs.Failures[0].ErrorCode != 21211 {
		t.Errorf("failures = %+v", rs.Failures)
	}
}
