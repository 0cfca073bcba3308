package storage

import (
	"context"
	"testing"
	"time"
)

// TestSafetyNumberPauseNeverShortened: a number's pause holds until its
// end, a later shorter pause never cuts it short, a longer one extends it,
// and an ended pause no longer counts.
func TestSafetyNumberPauseNeverShortened(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	const phone = "+14155550101"
	if err := s.PauseNumber(ctx, phone, "reply:later", t0.Add(24*time.Hour), t0); err != nil {
		t.Fatal(err)
	}
	if err := s.PauseNumber(ctx, phone, "reply:short", t0.Add(time.Hour), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	until, err := s.NumberPausedUntil(ctx, phone, t0.Add(2*time.Hour))
	if err != nil || !until.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("paused until %v, %v; want %v", until, err, t0.Add(24*time.Hour))
	}
	if err := s.PauseNumber(ctx, phone, "reply:longer", t0.Add(48*time.Hour), t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	all, err := s.PausedNumbers(ctx, t0)
	if err != nil || len(all) != 1 || !all[phone].Equal(t0.Add(48*time.Hour)) {
		t.Fatalf("PausedNumbers = %v, %v", all, err)
	}
	if until, err := s.NumberPausedUntil(ctx, phone, t0.Add(48*time.Hour)); err != nil || !until.IsZero() {
		t.Errorf("after its end: paused until %v, %v; want not paused", until, err)
	}
	if until, err := s.NumberPausedUntil(ctx, "+14155550102", t0); err != nil || !until.IsZero() {
		t.Errorf("another number: paused until %v, %v", until, err)
	}
}

// TestSafetyInboundEffectsPauseAndNotify: a reply's pause and its staff
// notification are stored in the transaction that stores the text, and a
// retried webhook (the same MessageSid) queues no second notification.
func TestSafetyInboundEffectsPauseAndNotify(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	mk := func() *Inbound {
		in := newInbound("SMpause")
		in.Effects = &InboundEffects{Source: "reply:later", PauseUntil: t0.Add(24 * time.Hour), Notify: []Message{{
			Key: "main/reply:later/7/notify/SMpause", Project: "main", Rule: "reply:later", Record: "7",
			Channel: ChannelEmail, To: "coordinator@example.edu", From: "study@example.edu",
			Subject: "A text", Body: "Record 7 wrote: later", CreatedAt: t0,
		}}}
		return in
	}
	for i := range 2 {
		inserted, err := s.SaveInbound(ctx, []*Inbound{mk()})
		if err != nil || inserted[0] != (i == 0) {
			t.Fatalf("save %d: %v, %v", i, inserted, err)
		}
	}
	if until, err := s.NumberPausedUntil(ctx, "+14155550101", t0); err != nil || !until.Equal(t0.Add(24*time.Hour)) {
		t.Errorf("paused until %v, %v", until, err)
	}
	due, err := s.Due(ctx, ChannelEmail, t0, 10)
	if err != nil || len(due) != 1 || due[0].To != "coordinator@example.edu" || due[0].Body != "Record 7 wrote: later" {
		t.Fatalf("due emails = %+v, %v; want the one notification", due, err)
	}

	// A notification that cannot be stored stores nothing of the text.
	bad := newInbound("SMbad")
	bad.Effects = &InboundEffects{Notify: []Message{{Key: "k", Project: "main", Rule: "reply:x", Record: "7", Channel: ChannelEmail, CreatedAt: t0}}}
	if _, err := s.SaveInbound(ctx, []*Inbound{bad}); err == nil {
		t.Fatal("a notification without a recipient was accepted")
	}
	if _, err := s.InboundBySID(ctx, "SMbad"); err == nil {
		t.Error("the text was stored although its effects were refused")
	}
}
