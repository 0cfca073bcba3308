package engine_test

import (
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
	"github.com/nudge-study/nudge/storage"
)

// retain runs one retention sweep at the fixture's clock.
func (f *fixture) retain(t *testing.T) engine.RetentionStats {
	t.Helper()
	st, err := f.e.Retain(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// sendHeld enqueues and sends the demo's diary reminders, each held in
// Twilio's queue for half an hour, and returns those Twilio took.
func (f *fixture) sendHeld(t *testing.T) []storage.Message {
	t.Helper()
	f.enqueue(t, "diary-reminder")
	for _, m := range f.messages(t, "diary-reminder") {
		f.env.Twilio.SetOutcome(m.To, twiliotest.Outcome{QueueDelay: 30 * time.Minute})
	}
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	var sent []storage.Message
	for _, m := range f.messages(t, "diary-reminder") {
		if m.SID != "" {
			sent = append(sent, m)
		}
	}
	if len(sent) == 0 {
		t.Fatal("the demo sent no diary reminder")
	}
	return sent
}

// twilioBody is the body Twilio holds for a SID.
func (f *fixture) twilioBody(t *testing.T, sid string) string {
	t.Helper()
	m, err := f.e.SMS.Fetch(f.ctx, sid)
	if err != nil {
		t.Fatalf("fetch %s: %v", sid, err)
	}
	return m.Body
}

// TestSafetyRetentionTimeline follows the demo's diary reminders through
// a year on a fake clock: a text still on its way keeps its body at Twilio
// and in the outbox; once delivered its body is redacted at Twilio; after
// keep_bodies (30d) the outbox blanks it keeping a SHA-256 digest and the
// status; after keep_inbound (90d) a handled inbound text loses its body;
// after keep_history (365d) the status history goes. Nothing goes a day
// before its time, and a queued message or one never final is never
// touched.
func TestSafetyRetentionTimeline(t *testing.T) {
	f := newFixture(t)
	day := 24 * time.Hour
	sent := f.sendHeld(t)
	bodies := map[int64]string{}
	for _, m := range sent {
		bodies[m.ID] = m.Body
	}
	// A message queued for later, and a text Twilio took that never gets a
	// final status (no poll): neither is ever touched.
	queued := &storage.Message{Key: "site_a/diary-reminder/queued/x/0/1", Project: "site_a", Rule: "diary-reminder",
		Record: "queued", Channel: storage.ChannelSMS, To: "+15105550177", From: "+14155550100",
		Body: "Queued text", CreatedAt: f.clk.Now(), NotBefore: f.clk.Now().Add(400 * day)}
	stuck := &storage.Message{Key: "site_a/diary-reminder/stuck/x/0/1", Project: "site_a", Rule: "diary-reminder",
		Record: "stuck", Channel: storage.ChannelSMS, To: "+15105550178", From: "+14155550100",
		Body: "Stuck text", CreatedAt: f.clk.Now()}
	for _, m := range []*storage.Message{queued, stuck} {
		if _, err := f.e.Store.Enqueue(f.ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.e.Store.Claim(f.ctx, stuck.ID, f.clk.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Store.MarkSent(f.ctx, stuck.ID, "SM"+"0123456789abcdef0123456789abcdef", "sent", 1, f.clk.Now()); err != nil {
		t.Fatal(err)
	}

	// Queued at Twilio: not final, so not redacted.
	if st := f.retain(t); st.Redacted != 0 {
		t.Errorf("texts on their way: %d redacted, want 0", st.Redacted)
	}
	for _, m := range sent {
		if got := f.twilioBody(t, m.SID); got != bodies[m.ID] {
			t.Errorf("text on its way: Twilio holds %q, want its body kept", got)
		}
	}

	// Delivered: the tracking pass redacts each body at Twilio.
	f.clk.Advance(time.Hour)
	if _, err := f.e.Track(f.ctx); err != nil {
		t.Fatal(err)
	}
	start := f.clk.Now()
	for _, m := range f.messages(t, "diary-reminder") {
		if _, ok := bodies[m.ID]; !ok {
			continue
		}
		if m.State != storage.StateDelivered || m.RedactedAt.IsZero() {
			t.Errorf("message %d: %s, redacted at %v; want delivered and redacted at Twilio", m.ID, m.State, m.RedactedAt)
		}
		if got := f.twilioBody(t, m.SID); got != "" {
			t.Errorf("message %d: Twilio still holds %q", m.ID, got)
		}
		if m.Body != bodies[m.ID] || m.BodyDigest != "" {
			t.Errorf("message %d: outbox body %q digest %q; kept until keep_bodies", m.ID, m.Body, m.BodyDigest)
		}
	}
	f.inbound(t, "SM"+"fedcba9876543210fedcba9876543210", "+15105550101", "my diary is done, thanks")

	check := func(when string, wantBodies, wantInbound, wantHistory bool) {
		t.Helper()
		for _, m := range f.messages(t, "diary-reminder") {
			switch m.ID {
			case queued.ID, stuck.ID:
				if m.Body == "" || m.BodyDigest != "" || !m.RedactedAt.IsZero() {
					t.Errorf("%s: %s message %q touched: body %q digest %q redacted %v", when, m.State, m.Record, m.Body, m.BodyDigest, m.RedactedAt)
				}
				continue
			}
			body, ok := bodies[m.ID]
			if !ok { // not sent by the demo: kept while it may still go
				if m.State.Queued() && (m.Body == "" || m.BodyDigest != "") {
					t.Errorf("%s: queued message %d blanked", when, m.ID)
				}
				continue
			}
			if wantBodies && (m.Body != body || m.BodyDigest != "") {
				t.Errorf("%s: message %d body %q digest %q; want it kept", when, m.ID, m.Body, m.BodyDigest)
			}
			if !wantBodies && (m.Body != "" || m.BodyDigest != storage.BodyDigest(body) || m.Status != "delivered") {
				t.Errorf("%s: message %d body %q digest %q status %q; want blank, the digest of %q and the status kept",
					when, m.ID, m.Body, m.BodyDigest, m.Status, body)
			}
			h, err := f.e.Store.History(f.ctx, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if wantHistory != (len(h) > 0) {
				t.Errorf("%s: message %d has %d status changes; want kept = %v", when, m.ID, len(h), wantHistory)
			}
		}
		in, err := f.e.Store.InboundBySID(f.ctx, "SM"+"fedcba9876543210fedcba9876543210")
		if err != nil {
			t.Fatal(err)
		}
		if wantInbound != (in.Body != "") || in.From == "" || in.Handled == "" {
			t.Errorf("%s: inbound body %q from %q handled %q; want body kept = %v, the rest kept", when, in.Body, in.From, in.Handled, wantInbound)
		}
	}
	for _, step := range []struct {
		after                    time.Duration
		bodies, inbound, history bool
	}{
		{29 * day, true, true, true},
		{31 * day, false, true, true},
		{89 * day, false, true, true},
		{91 * day, false, false, true},
		{364 * day, false, false, true},
		{366 * day, false, false, false},
	} {
		f.clk.Set(start.Add(step.after))
		f.retain(t)
		check(step.after.String(), step.bodies, step.inbound, step.history)
	}
}

// TestSafetyRetentionRedactionErrors: a text nudge holds final but Twilio
// still has on its way is redacted later, not never; one Twilio no longer
// has counts as done; with redact_at_twilio off nothing is redacted.
func TestSafetyRetentionRedactionErrors(t *testing.T) {
	f := newFixture(t)
	sent := f.sendHeld(t)
	early := sent[0]
	now := f.clk.Now()
	// nudge holds it final (as a callback could say) while Twilio still
	// has it queued.
	if _, err := f.e.Store.RecordStatus(f.ctx, early.ID, "failed", 30008, now, storage.SourceCallback); err != nil {
		t.Fatal(err)
	}
	// A delivered text Twilio no longer has (deleted in the console).
	gone := &storage.Message{Key: "site_a/diary-reminder/gone/x/0/1", Project: "site_a", Rule: "diary-reminder",
		Record: "gone", Channel: storage.ChannelSMS, To: "+15105550179", From: "+14155550100",
		Body: "Gone text", CreatedAt: now}
	if _, err := f.e.Store.Enqueue(f.ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Store.Claim(f.ctx, gone.ID, now, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Store.MarkSent(f.ctx, gone.ID, "SM"+"00000000000000000000000000000001", "delivered", 1, now); err != nil {
		t.Fatal(err)
	}

	f.e.Study.Config.Privacy.RedactAtTwilio = false
	if st := f.retain(t); st.Redacted != 0 {
		t.Errorf("redact_at_twilio off: %d redacted", st.Redacted)
	}
	f.e.Study.Config.Privacy.RedactAtTwilio = true

	f.retain(t)
	if m := f.byKey(t, early.Key); !m.RedactedAt.IsZero() || f.twilioBody(t, early.SID) != early.Body {
		t.Errorf("text still on its way at Twilio: redacted at %v; want it left for later", m.RedactedAt)
	}
	if m := f.byKey(t, gone.Key); m.RedactedAt.IsZero() {
		t.Error("text Twilio no longer has: not marked done")
	}
	f.clk.Advance(30 * time.Minute)
	f.retain(t)
	if m := f.byKey(t, early.Key); !m.RedactedAt.IsZero() {
		t.Error("redaction retried before its hour")
	}
	f.clk.Advance(31 * time.Minute)
	f.retain(t)
	if m := f.byKey(t, early.Key); m.RedactedAt.IsZero() || f.twilioBody(t, early.SID) != "" {
		t.Errorf("an hour later, once delivered: redacted at %v, Twilio body %q; want redacted", m.RedactedAt, f.twilioBody(t, early.SID))
	}
}
