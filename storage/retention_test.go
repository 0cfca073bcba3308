package storage

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Retention blanks only what is final and old enough, keeps each row with
// its status and the body's digest, and prunes only old history of final
// messages and handled inbound texts.
func TestSafetyRetentionStorage(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	day := 24 * time.Hour

	delivered := newMsg("1", 1)
	dID := mustSent(t, s, delivered, "SM1")
	if _, err := s.RecordStatus(ctx, dID, "delivered", 0, t0.Add(time.Minute), SourcePoll); err != nil {
		t.Fatal(err)
	}
	inFlight := newMsg("2", 1)
	fID := mustSent(t, s, inFlight, "SM2") // queued at Twilio: not final
	queued := newMsg("3", 1)
	qID := mustEnqueue(t, s, queued)
	email := newMsg("4", 1)
	email.Channel, email.To, email.Subject, email.HTML = ChannelEmail, "ana@example.org", "Survey", "<p>Hi</p>"
	eID := mustSent(t, s, email, "")

	// Before the retention has passed, nothing changes.
	if n, err := s.BlankBodies(ctx, t0, 100); err != nil || n != 0 {
		t.Fatalf("BlankBodies before its time = %d, %v; want 0", n, err)
	}
	if n, err := s.PruneHistory(ctx, t0, 100); err != nil || n != 0 {
		t.Fatalf("PruneHistory before its time = %d, %v; want 0", n, err)
	}

	later := t0.Add(31 * day)
	n, err := s.BlankBodies(ctx, later, 100)
	if err != nil || n != 2 {
		t.Fatalf("BlankBodies = %d, %v; want 2 (the delivered text and the sent email)", n, err)
	}
	for _, tt := range []struct {
		id   int64
		orig *Message
	}{{dID, delivered}, {eID, email}} {
		m := mustGet(t, s, tt.id)
		if m.Body != "" || m.Subject != "" || m.HTML != "" {
			t.Errorf("message %d: body %q subject %q html %q kept; want blank", tt.id, m.Body, m.Subject, m.HTML)
		}
		if m.BodyDigest != BodyDigest(tt.orig.Body) || len(m.BodyDigest) != 64 {
			t.Errorf("message %d: digest %q, want %q", tt.id, m.BodyDigest, BodyDigest(tt.orig.Body))
		}
		if m.Status == "" || m.SentAt.IsZero() || m.FinalAt.IsZero() {
			t.Errorf("message %d: state %s status %q sent %v; the row keeps its outcome", tt.id, m.State, m.Status, m.SentAt)
		}
	}
	for _, id := range []int64{fID, qID} {
		if m := mustGet(t, s, id); m.Body == "" || m.BodyDigest != "" {
			t.Errorf("message %d (%s): body %q digest %q; a message not final keeps its body", id, m.State, m.Body, m.BodyDigest)
		}
	}
	if n, err := s.BlankBodies(ctx, later, 100); err != nil || n != 0 {
		t.Errorf("BlankBodies again = %d, %v; want 0", n, err)
	}

	// Status history: only the final message's, once old.
	n, err = s.PruneHistory(ctx, later, 100)
	if err != nil || n != 3 {
		t.Fatalf("PruneHistory = %d, %v; want the delivered text's 2 changes and the email's", n, err)
	}
	if h, _ := s.History(ctx, dID); len(h) != 0 {
		t.Errorf("delivered text keeps %d history rows", len(h))
	}
	if h, _ := s.History(ctx, fID); len(h) != 1 {
		t.Errorf("text in flight has %d history rows, want 1: history of a message not final is kept", len(h))
	}

	// Twilio redaction: only final texts with a SID, not postponed.
	red, err := s.ToRedact(ctx, later, later, 10)
	if err != nil || len(red) != 1 || red[0].ID != dID || red[0].SID != "SM1" {
		t.Fatalf("ToRedact = %v, %v; want only the delivered text", red, err)
	}
	if err := s.PostponeRedact(ctx, dID, later.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if red, _ := s.ToRedact(ctx, later, later, 10); len(red) != 0 {
		t.Errorf("ToRedact after a postponement = %v; want none until then", red)
	}
	if red, _ := s.ToRedact(ctx, later, later.Add(time.Hour), 10); len(red) != 1 {
		t.Errorf("ToRedact once the postponement passed = %v; want the text", red)
	}
	if err := s.MarkRedacted(ctx, dID, later); err != nil {
		t.Fatal(err)
	}
	if red, _ := s.ToRedact(ctx, later, later.Add(time.Hour), 10); len(red) != 0 {
		t.Errorf("ToRedact after MarkRedacted = %v", red)
	}
	if m := mustGet(t, s, dID); !m.RedactedAt.Equal(later) {
		t.Errorf("RedactedAt = %v, want %v", m.RedactedAt, later)
	}

	// Inbound: handled texts lose body and reply, keep the row.
	ins := []*Inbound{
		{MessageSID: "SMin1", From: "+14155550101", To: "+14155550100", Body: "STOP please", ReceivedAt: t0, Handled: HandledStop, Reply: "You are unsubscribed."},
		{MessageSID: "SMin2", From: "+14155550101", To: "+14155550100", Body: "not handled yet", ReceivedAt: t0},
	}
	if _, err := s.SaveInbound(ctx, ins); err != nil {
		t.Fatal(err)
	}
	if n, err := s.BlankInbound(ctx, t0, 10); err != nil || n != 0 {
		t.Fatalf("BlankInbound before its time = %d, %v", n, err)
	}
	if n, err := s.BlankInbound(ctx, later, 10); err != nil || n != 1 {
		t.Fatalf("BlankInbound = %d, %v; want 1 (the handled one)", n, err)
	}
	got, err := s.InboundBySID(ctx, "SMin1")
	if err != nil || got.Body != "" || got.Reply != "" || got.Handled != HandledStop || got.From == "" || !got.ReceivedAt.Equal(t0) {
		t.Errorf("handled inbound after retention = %+v, %v; want body and reply blank, the rest kept", got, err)
	}
	var digest string
	if err := s.db.QueryRow(`SELECT body_digest FROM inbound WHERE message_sid = 'SMin1'`).Scan(&digest); err != nil || digest != BodyDigest("STOP please") {
		t.Errorf("inbound digest %q, %v", digest, err)
	}
	if got, _ := s.InboundBySID(ctx, "SMin2"); got.Body != "not handled yet" {
		t.Errorf("unhandled inbound body %q; it is kept until handled", got.Body)
	}
}

// Each retention sweep finds its rows through an index, never a scan of
// the outbox.
func TestRetentionQueriesUseIndexes(t *testing.T) {
	s, _ := openTemp(t)
	for _, tt := range []struct {
		name, query string
		args        []any
		index       string
	}{
		{"BodiesToBlank", sqlBodiesToBlank, []any{1, 10}, "messages_keep_body"},
		{"ToRedact", sqlToRedact, []any{1, 1, 10}, "messages_to_redact"},
		{"InboundToBlank", sqlInboundToBlank, []any{1, 10}, "inbound_keep_body"},
		{"PruneHistory", sqlPruneHistory, []any{1, 1, 10}, "status_history_at"},
	} {
		p := queryPlanText(t, s, tt.query, tt.args...)
		if !strings.Contains(p, "INDEX "+tt.index) {
			t.Errorf("%s: plan %q does not use index %s", tt.name, p, tt.index)
		}
		if strings.Contains(p, "SCAN m ") || strings.HasSuffix(p, "SCAN m") || strings.Contains(p, "SCAN messages") || strings.Contains(p, "SCAN inbound") {
			t.Errorf("%s: plan %q scans a table", tt.name, p)
		}
	}
}
