package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestRecordStatusOrdering(t *testing.T) {
	type step struct {
		status  string
		code    int
		changed bool
	}
	tests := []struct {
		name        string
		steps       []step
		wantState   State
		wantStatus  string
		wantCode    int
		wantHistory []string // after the "queued" stored by MarkSent
	}{
		{"in order", []step{{"sending", 0, true}, {"sent", 0, true}, {"delivered", 0, true}},
			StateDelivered, "delivered", 0, []string{"sending", "sent", "delivered"}},
		{"delivered before sent", []step{{"delivered", 0, true}, {"sent", 0, false}, {"sending", 0, false}},
			StateDelivered, "delivered", 0, []string{"delivered"}},
		{"duplicates", []step{{"sent", 0, true}, {"sent", 0, false}, {"queued", 0, false}},
			StateSent, "sent", 0, []string{"sent"}},
		{"final never moves back", []step{{"undelivered", 30003, true}, {"delivered", 0, false}, {"failed", 30008, false}},
			StateUndelivered, "undelivered", 30003, []string{"undelivered"}},
		{"failed after sent", []step{{"sent", 0, true}, {"failed", 30001, true}},
			StateFailed, "failed", 30001, []string{"sent", "failed"}},
		{"canceled", []step{{"canceled", 0, true}}, StateCanceled, "canceled", 0, []string{"canceled"}},
		{"partially delivered", []step{{"sent", 0, true}, {"partially_delivered", 0, true}, {"delivered", 0, false}},
			StateDelivered, "partially_delivered", 0, []string{"sent", "partially_delivered"}},
		{"read", []step{{"sent", 0, true}, {"read", 0, true}}, StateDelivered, "read", 0, []string{"sent", "read"}},
		{"received is not final", []step{{"received", 0, true}, {"sent", 0, false}, {"delivered", 0, true}},
			StateDelivered, "delivered", 0, []string{"received", "delivered"}},
	}
	s, _ := openTemp(t)
	ctx := context.Background()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := mustSent(t, s, newMsg(fmt.Sprint("rec", i), 1), fmt.Sprint("SM", i))
			for j, st := range tt.steps {
				at := t0.Add(time.Duration(j+1) * time.Minute)
				changed, err := s.RecordStatus(ctx, id, st.status, st.code, at, SourceCallback)
				if err != nil || changed != st.changed {
					t.Errorf("step %d %s: changed = %v, %v; want %v", j, st.status, changed, err, st.changed)
				}
			}
			m := mustGet(t, s, id)
			if m.State != tt.wantState || m.Status != tt.wantStatus || m.ErrorCode != tt.wantCode {
				t.Errorf("got %s/%s/%d, want %s/%s/%d", m.State, m.Status, m.ErrorCode, tt.wantState, tt.wantStatus, tt.wantCode)
			}
			if m.State.Final() != m.NextPoll.IsZero() || m.State.Final() == m.FinalAt.IsZero() {
				t.Errorf("state %s with NextPoll %v, FinalAt %v", m.State, m.NextPoll, m.FinalAt)
			}
			h, err := s.History(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			got := []string{}
			for _, c := range h[1:] {
				got = append(got, c.Status)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantHistory) {
				t.Errorf("history = %v, want %v", got, tt.wantHistory)
			}
		})
	}
}

func TestRecordStatusFinalTimes(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	id := mustSent(t, s, newMsg("1", 1), "SM1")
	at := t0.Add(5 * time.Minute)
	if _, err := s.RecordStatus(ctx, id, "delivered", 0, at, SourcePoll); err != nil {
		t.Fatal(err)
	}
	m := mustGet(t, s, id)
	if !m.FinalAt.Equal(at) || !m.UpdatedAt.Equal(at) {
		t.Errorf("FinalAt %v, UpdatedAt %v; want %v", m.FinalAt, m.UpdatedAt, at)
	}
	h, _ := s.History(ctx, id)
	if last := h[len(h)-1]; last.Source != SourcePoll || !last.At.Equal(at) || last.MessageID != id {
		t.Errorf("last history row = %+v", last)
	}
}

func TestRecordStatusErrors(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	sent := mustSent(t, s, newMsg("1", 1), "SM1")
	planned := mustEnqueue(t, s, newMsg("2", 1))
	tests := []struct {
		name   string
		id     int64
		status string
		want   error
	}{
		{"unknown status", sent, "teleported", ErrUnknownStatus},
		{"planned message", planned, "delivered", ErrWrongState},
		{"missing message", 999, "delivered", ErrNotFound},
	}
	for _, tt := range tests {
		if changed, err := s.RecordStatus(ctx, tt.id, tt.status, 0, t0, SourceCallback); changed || !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, %v; want false, %v", tt.name, changed, err, tt.want)
		}
	}
	if m := mustGet(t, s, sent); m.Status != "queued" {
		t.Errorf("an unknown status changed the message to %q", m.Status)
	}
}

func TestMarkSentWithFinalStatus(t *testing.T) {
	// A provider lookup after a crash may find the message already delivered.
	s, _ := openTemp(t)
	ctx := context.Background()
	id := mustEnqueue(t, s, newMsg("1", 1))
	s.Claim(ctx, id, t0, nil)
	if err := s.MarkSent(ctx, id, "SM9", "delivered", 1, t0); err != nil {
		t.Fatal(err)
	}
	m := mustGet(t, s, id)
	if m.State != StateDelivered || !m.FinalAt.Equal(t0) || !m.NextPoll.IsZero() {
		t.Errorf("got %+v", m)
	}
	if err := s.MarkSent(ctx, id, "SM9", "bogus", 1, t0); !errors.Is(err, ErrWrongState) {
		t.Errorf("MarkSent of a delivered message: %v, want ErrWrongState", err)
	}
}

func TestIsFinalStatus(t *testing.T) {
	for status, want := range map[string]bool{
		"queued": false, "sending": false, "sent": false, "received": false,
		"delivered": true, "undelivered": true, "failed": true, "canceled": true, "read": true, "partially_delivered": true, "unknown": true, "nonsense": false,
	} {
		if got := IsFinalStatus(status); got != want {
			t.Errorf("IsFinalStatus(%q) = %v, want %v", status, got, want)
		}
	}
}

// TestSafetyLateStatusAfterReview: a status callback or poll that arrives
// after its message was set aside for review (30007) changes nothing and
// is no error: callbacks come late and twice.
func TestSafetyLateStatusAfterReview(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	id := mustSent(t, s, newMsg("r1", 1), "SMr1")
	if _, err := s.RecordStatus(ctx, id, "failed", 30007, t0, SourcePoll); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkReview(ctx, id, 30007, "carrier filtering", t0); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{"failed", "delivered", "sent"} {
		if changed, err := s.RecordStatus(ctx, id, st, 30007, t0.Add(time.Minute), SourceCallback); err != nil || changed {
			t.Errorf("late %s after review: changed %v, %v; want no change and no error", st, changed, err)
		}
	}
	if m := mustGet(t, s, id); m.State != StateReview {
		t.Errorf("state %s, want review", m.State)
	}
}
