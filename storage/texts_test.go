package storage

import (
	"context"
	"testing"
	"time"
)

// TestTextsCountWhatMayHaveReachedThePhone proves the caps' count takes
// every text Twilio may have taken (claimed, sent, delivered, undelivered,
// failed after Twilio had it) at its claim time, and leaves out what never
// went (canceled, failed at create, back in the queue); queued texts count
// only when asked, and never the message being planned.
func TestTextsCountWhatMayHaveReachedThePhone(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	to := "+14155550101"
	mustSent(t, s, newMsg("1", 1), "SM1") // claimed at t0
	sending := mustEnqueue(t, s, newMsg("2", 1))
	if err := s.Claim(ctx, sending, t0.Add(time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	refused := mustEnqueue(t, s, newMsg("3", 1))
	if err := s.Claim(ctx, refused, t0, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFailed(ctx, refused, 21211, "bad number", t0); err != nil {
		t.Fatal(err)
	}
	canceled := mustEnqueue(t, s, newMsg("4", 1))
	if err := s.Cancel(ctx, canceled, "withdrew", t0); err != nil {
		t.Fatal(err)
	}
	q := newMsg("5", 1)
	q.NotBefore = t0.Add(20 * time.Hour)
	mustEnqueue(t, s, q)
	other := newMsg("6", 1)
	other.To = "+14155550102"
	mustSent(t, s, other, "SM6")

	got, err := s.Texts(ctx, to, t0.Add(-time.Hour), false, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].Equal(t0) && !got[1].Equal(t0) {
		t.Fatalf("sent texts = %v, want the sent one at t0 and the sending one", got)
	}
	if got, _ := s.Texts(ctx, to, t0.Add(30*time.Second), false, ""); len(got) != 1 {
		t.Errorf("texts since after the first = %v, want 1", got)
	}
	if got, _ := s.Texts(ctx, to, t0.Add(-time.Hour), true, ""); len(got) != 3 {
		t.Errorf("with queued = %v, want 3", got)
	}
	if got, _ := s.Texts(ctx, to, t0.Add(-time.Hour), true, q.Key); len(got) != 2 {
		t.Errorf("with queued except its own key = %v, want 2", got)
	}
}
