package storage

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// t0 is the fixed "now" of the tests; no test reads the clock.
var t0 = time.Date(2026, 11, 23, 15, 4, 5, 123456789, time.UTC)

// openTemp opens a fresh store in the test's temporary folder.
func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nudge.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// newMsg returns a valid planned SMS message for record rec, occurrence occ.
func newMsg(rec string, occ int) *Message {
	return &Message{
		Key:        fmt.Sprintf("main/reminder/%s/baseline_arm_1/0/%d", rec, occ),
		Project:    "main",
		Rule:       "reminder",
		Record:     rec,
		Event:      "baseline_arm_1",
		Occurrence: occ,
		Channel:    ChannelSMS,
		To:         "+14155550101",
		From:       "+14155550100",
		Body:       "Please finish the baseline survey.",
		CreatedAt:  t0,
	}
}

// mustEnqueue stores m and fails the test unless it was new.
func mustEnqueue(t testing.TB, s *Store, m *Message) int64 {
	t.Helper()
	ok, err := s.Enqueue(context.Background(), m)
	if err != nil || !ok {
		t.Fatalf("Enqueue(%s) = %v, %v; want true, nil", m.Key, ok, err)
	}
	return m.ID
}

// mustSent enqueues, claims and marks a message sent with status queued.
func mustSent(t testing.TB, s *Store, m *Message, sid string) int64 {
	t.Helper()
	ctx := context.Background()
	id := mustEnqueue(t, s, m)
	if err := s.Claim(ctx, id, t0, nil); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if err := s.MarkSent(ctx, id, sid, "queued", 1, t0); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	return id
}

func mustGet(t testing.TB, s *Store, id int64) Message {
	t.Helper()
	m, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return m
}
