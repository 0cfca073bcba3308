package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestEnqueueIdempotent(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	first := newMsg("101", 1)
	ok, err := s.Enqueue(ctx, first)
	if err != nil || !ok || first.ID == 0 {
		t.Fatalf("first Enqueue = %v, %v (ID %d); want true, nil, an ID", ok, err, first.ID)
	}
	if first.State != StatePlanned {
		t.Errorf("state = %q, want planned", first.State)
	}

	again := newMsg("101", 1)
	again.Body = "a different body"
	ok, err = s.Enqueue(ctx, again)
	if err != nil || ok {
		t.Fatalf("second Enqueue = %v, %v; want false, nil", ok, err)
	}
	if again.ID != 0 {
		t.Errorf("second Enqueue set ID %d; want it untouched", again.ID)
	}
	got := mustGet(t, s, first.ID)
	if got.Body != first.Body {
		t.Errorf("stored body %q; the duplicate must not overwrite %q", got.Body, first.Body)
	}
	n, _, _, _ := s.Occurrences(ctx, "main", "reminder", "101", "baseline_arm_1", 0)
	if n != 1 {
		t.Errorf("rows for the key = %d, want 1", n)
	}
}

func TestEnqueueRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	run, err := s.StartRun(ctx, "run", t0)
	if err != nil {
		t.Fatal(err)
	}
	m := &Message{
		Key: "p/r/7/ev/2/3", RunID: run, Project: "p", Rule: "r", Record: "7", Event: "ev",
		Instrument: "diary", Instance: 2, Occurrence: 3, Channel: ChannelEmail,
		To: "ana@example.org", From: "study@example.edu", Subject: "Hello", Body: "Body ✓",
		NotBefore: t0.Add(time.Hour), CreatedAt: t0,
	}
	mustEnqueue(t, s, m)
	got := mustGet(t, s, m.ID)
	want := *m
	want.UpdatedAt = t0
	if !sameMessage(got, want) {
		t.Errorf("Get =\n%+v\nwant\n%+v", got, want)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("times come back in %v, want UTC", got.CreatedAt.Location())
	}
}

// sameMessage compares messages with time.Time.Equal for the times.
func sameMessage(a, b Message) bool {
	ta := []time.Time{a.NotBefore, a.NextPoll, a.CreatedAt, a.SentAt, a.FinalAt, a.UpdatedAt}
	tb := []time.Time{b.NotBefore, b.NextPoll, b.CreatedAt, b.SentAt, b.FinalAt, b.UpdatedAt}
	for i := range ta {
		if !ta[i].Equal(tb[i]) {
			return false
		}
	}
	a.NotBefore, a.NextPoll, a.CreatedAt, a.SentAt, a.FinalAt, a.UpdatedAt = b.NotBefore, b.NextPoll, b.CreatedAt, b.SentAt, b.FinalAt, b.UpdatedAt
	return a == b
}

func TestEnqueueRejectsInvalid(t *testing.T) {
	tests := []struct {
		name string
		edit func(m *Message)
	}{
		{"no key", func(m *Message) { m.Key = "" }},
		{"no project", func(m *Message) { m.Project = "" }},
		{"bad channel", func(m *Message) { m.Channel = "fax" }},
		{"no recipient", func(m *Message) { m.To = "" }},
		{"no created time", func(m *Message) { m.CreatedAt = time.Time{} }},
		{"skipped without reason", func(m *Message) { m.State = StateSkipped }},
		{"born sent", func(m *Message) { m.State = StateSent }},
	}
	s, _ := openTemp(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMsg("1", 1)
			tt.edit(m)
			if ok, err := s.Enqueue(context.Background(), m); ok || !errors.Is(err, ErrInvalid) {
				t.Errorf("Enqueue = %v, %v; want false, ErrInvalid", ok, err)
			}
		})
	}
}

func TestEnqueueSkippedHoldsKey(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	m := newMsg("5", 1)
	m.State, m.Reason, m.To = StateSkipped, "no mobile number", ""
	id := mustEnqueue(t, s, m)

	if got := mustGet(t, s, id); got.State != StateSkipped || got.Reason != "no mobile number" {
		t.Errorf("stored %q/%q, want skipped with its reason", got.State, got.Reason)
	}
	if due, _ := s.Due(ctx, ChannelSMS, t0.Add(time.Hour), 0); len(due) != 0 {
		t.Errorf("Due returned %d skipped rows", len(due))
	}
	if ok, _ := s.Enqueue(ctx, newMsg("5", 1)); ok {
		t.Error("a skipped occurrence was planned again")
	}
	if n, _, _, _ := s.Occurrences(ctx, "main", "reminder", "5", "baseline_arm_1", 0); n != 1 {
		t.Errorf("Occurrences = %d, want 1 (skipped rows use up their occurrence)", n)
	}
}

func TestEnqueueBatch(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	mustEnqueue(t, s, newMsg("1", 1))

	batch := []*Message{newMsg("1", 1), newMsg("2", 1), newMsg("3", 1), newMsg("2", 1)}
	n, err := s.EnqueueBatch(ctx, batch)
	if err != nil || n != 2 {
		t.Fatalf("EnqueueBatch = %d, %v; want 2 new", n, err)
	}
	wantNew := []bool{false, true, true, false}
	for i, m := range batch {
		if (m.ID != 0) != wantNew[i] {
			t.Errorf("batch[%d] ID = %d, want set=%v", i, m.ID, wantNew[i])
		}
	}

	// One bad row (a run that does not exist) rolls back the whole batch.
	bad := []*Message{newMsg("4", 1), newMsg("5", 1)}
	bad[1].RunID = 999
	if _, err := s.EnqueueBatch(ctx, bad); err == nil {
		t.Fatal("batch with a foreign-key violation succeeded")
	}
	if _, err := s.ByKey(ctx, bad[0].Key); !errors.Is(err, ErrNotFound) {
		t.Errorf("row of a failed batch was stored: err = %v", err)
	}
	if bad[0].ID != 0 {
		t.Errorf("failed batch set ID %d", bad[0].ID)
	}
}

func TestOccurrences(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	n, last, next, err := s.Occurrences(ctx, "main", "reminder", "9", "baseline_arm_1", 0)
	if err != nil || n != 0 || !last.IsZero() || next != 1 {
		t.Fatalf("empty Occurrences = %d, %v, %d, %v; want 0, zero, 1, nil", n, last, next, err)
	}
	for occ, at := range []time.Time{t0, t0.Add(72 * time.Hour)} {
		m := newMsg("9", occ+1)
		m.CreatedAt = at
		mustEnqueue(t, s, m)
	}
	other := newMsg("9", 1)
	other.Key, other.Instance = "main/reminder/9/baseline_arm_1/2/1", 2
	other.CreatedAt = t0.Add(200 * time.Hour)
	mustEnqueue(t, s, other)

	n, last, next, err = s.Occurrences(ctx, "main", "reminder", "9", "baseline_arm_1", 0)
	if err != nil || n != 2 || !last.Equal(t0.Add(72*time.Hour)) || next != 3 {
		t.Errorf("Occurrences = %d, %v, %d, %v; want 2, %v, 3", n, last, next, err, t0.Add(72*time.Hour))
	}

	// A canceled or expired message does not count against the schedule,
	// but the next occurrence number still passes it.
	third := newMsg("9", 3)
	third.CreatedAt = t0.Add(144 * time.Hour)
	id := mustEnqueue(t, s, third)
	if err := s.Cancel(ctx, id, "withdrew", t0.Add(145*time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, last, next, err = s.Occurrences(ctx, "main", "reminder", "9", "baseline_arm_1", 0)
	if err != nil || n != 2 || !last.Equal(t0.Add(72*time.Hour)) || next != 4 {
		t.Errorf("after a cancel, Occurrences = %d, %v, %d, %v; want 2, %v, 4", n, last, next, err, t0.Add(72*time.Hour))
	}
}

func TestDue(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	later := newMsg("late", 1)
	later.NotBefore = t0.Add(2 * time.Hour) // quiet hours
	mustEnqueue(t, s, later)
	second := newMsg("second", 1)
	second.CreatedAt = t0.Add(time.Minute)
	mustEnqueue(t, s, second)
	first := newMsg("first", 1)
	mustEnqueue(t, s, first)
	mail := newMsg("mail", 1)
	mail.Channel, mail.To = ChannelEmail, "a@example.org"
	mustEnqueue(t, s, mail)

	tests := []struct {
		now   time.Time
		limit int
		want  []string
	}{
		{t0.Add(time.Hour), 0, []string{"first", "second"}},
		{t0.Add(time.Hour), 1, []string{"first"}},
		{t0.Add(2 * time.Hour), 0, []string{"late", "first", "second"}},
	}
	for _, tt := range tests {
		due, err := s.Due(ctx, ChannelSMS, tt.now, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range due {
			got = append(got, m.Record)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Due(now=%v, limit=%d) = %v, want %v", tt.now, tt.limit, got, tt.want)
		}
	}
}

func TestClaimAndSendLifecycle(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	id := mustEnqueue(t, s, newMsg("1", 1))

	if err := s.MarkSent(ctx, id, "SM1", "queued", 1, t0); !errors.Is(err, ErrWrongState) {
		t.Errorf("MarkSent before Claim: err = %v, want ErrWrongState", err)
	}
	if err := s.Claim(ctx, id, t0, nil); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if m := mustGet(t, s, id); m.State != StateSending || m.Attempts != 1 {
		t.Errorf("after Claim: %s, attempts %d; want sending, 1", m.State, m.Attempts)
	}
	if err := s.Claim(ctx, id, t0, nil); !errors.Is(err, ErrNotClaimable) {
		t.Errorf("second Claim: err = %v, want ErrNotClaimable", err)
	}
	if err := s.Claim(ctx, 424242, t0, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("Claim of a missing row: err = %v, want ErrNotFound", err)
	}
	if err := s.MarkSent(ctx, id, "SMabc", "queued", 2, t0.Add(time.Second)); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	m := mustGet(t, s, id)
	if m.State != StateSent || m.SID != "SMabc" || m.Status != "queued" || m.Segments != 2 ||
		!m.SentAt.Equal(t0.Add(time.Second)) || !m.NextPoll.Equal(t0.Add(time.Second)) || !m.FinalAt.IsZero() {
		t.Errorf("after MarkSent: %+v", m)
	}
	if bySID, err := s.GetBySID(ctx, "SMabc"); err != nil || bySID.ID != id {
		t.Errorf("GetBySID = %d, %v; want %d", bySID.ID, err, id)
	}
	h, _ := s.History(ctx, id)
	if len(h) != 1 || h[0].Status != "queued" || h[0].Source != SourceSend {
		t.Errorf("history = %+v, want the queued status from the send", h)
	}
	for name, err := range map[string]error{
		"MarkRetry":  s.MarkRetry(ctx, id, "x", t0, t0),
		"Cancel":     s.Cancel(ctx, id, "x", t0),
		"MarkFailed": s.MarkFailed(ctx, id, 1, "x", t0),
		"Claim":      s.Claim(ctx, id, t0.Add(time.Hour), nil),
	} {
		if !errors.Is(err, ErrWrongState) && !errors.Is(err, ErrNotClaimable) {
			t.Errorf("%s on a sent message: err = %v, want a state error", name, err)
		}
	}
	if _, err := s.GetBySID(ctx, "SMnone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetBySID of unknown SID: %v, want ErrNotFound", err)
	}
}

func TestRetryWaitsForItsTime(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	id := mustEnqueue(t, s, newMsg("1", 1))
	if err := s.Claim(ctx, id, t0, nil); err != nil {
		t.Fatal(err)
	}
	retryAt := t0.Add(10 * time.Minute)
	if err := s.MarkRetry(ctx, id, "Twilio 429", t0, retryAt); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.Due(ctx, ChannelSMS, retryAt.Add(-time.Nanosecond), 0); len(due) != 0 {
		t.Errorf("retry row due before its time")
	}
	if err := s.Claim(ctx, id, retryAt.Add(-time.Second), nil); !errors.Is(err, ErrNotClaimable) {
		t.Errorf("Claim before retry time: err = %v, want ErrNotClaimable", err)
	}
	due, _ := s.Due(ctx, ChannelSMS, retryAt, 0)
	if len(due) != 1 || due[0].State != StateRetry || due[0].Reason != "Twilio 429" {
		t.Fatalf("Due at retry time = %+v", due)
	}
	if err := s.Claim(ctx, id, retryAt, nil); err != nil {
		t.Fatalf("Claim at retry time: %v", err)
	}
	if m := mustGet(t, s, id); m.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", m.Attempts)
	}
}

func TestMarkFailedAndSkipped(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	failed := mustEnqueue(t, s, newMsg("1", 1))
	s.Claim(ctx, failed, t0, nil)
	if err := s.MarkFailed(ctx, failed, 21211, "invalid To number", t0); err != nil {
		t.Fatal(err)
	}
	m := mustGet(t, s, failed)
	if m.State != StateFailed || m.Status != "failed" || m.ErrorCode != 21211 || !m.FinalAt.Equal(t0) || !m.State.Final() {
		t.Errorf("after MarkFailed: %+v", m)
	}
	if h, _ := s.History(ctx, failed); len(h) != 1 || h[0].Status != "failed" || h[0].ErrorCode != 21211 {
		t.Errorf("history = %+v", h)
	}
	// A late callback cannot revive a permanent failure.
	if changed, err := s.RecordStatus(ctx, failed, "delivered", 0, t0, SourceCallback); changed || err != nil {
		t.Errorf("RecordStatus after MarkFailed = %v, %v; want false, nil", changed, err)
	}

	skipped := mustEnqueue(t, s, newMsg("2", 1))
	if err := s.Cancel(ctx, skipped, "opted out", t0); err != nil {
		t.Fatal(err)
	}
	if m := mustGet(t, s, skipped); m.State != StateCanceled || m.Reason != "opted out" {
		t.Errorf("after Cancel: %s %q", m.State, m.Reason)
	}
	if err := s.Claim(ctx, skipped, t0, nil); !errors.Is(err, ErrNotClaimable) {
		t.Errorf("Claim of a skipped row: %v, want ErrNotClaimable", err)
	}
	if err := s.Cancel(ctx, 999, "x", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Cancel of a missing row: %v, want ErrNotFound", err)
	}
}

func TestEmailIsNotTracked(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	m := newMsg("1", 1)
	m.Channel, m.To, m.Subject = ChannelEmail, "ana@example.org", "Reminder"
	id := mustEnqueue(t, s, m)
	s.Claim(ctx, id, t0, nil)
	if err := s.MarkSent(ctx, id, "", "accepted", 0, t0); err != nil {
		t.Fatal(err)
	}
	got := mustGet(t, s, id)
	if got.State != StateSent || got.Status != "accepted" || got.SID != "" || !got.FinalAt.Equal(t0) || !got.NextPoll.IsZero() {
		t.Errorf("email after MarkSent: %+v", got)
	}
	if tr, _ := s.Tracking(ctx, ChannelEmail, t0.Add(time.Hour), 0); len(tr) != 0 {
		t.Errorf("Tracking(email) = %d rows, want none", len(tr))
	}
	// Empty SIDs are stored as NULL, so a second email does not clash.
	m2 := newMsg("2", 1)
	m2.Channel, m2.To = ChannelEmail, "bo@example.org"
	id2 := mustEnqueue(t, s, m2)
	s.Claim(ctx, id2, t0, nil)
	if err := s.MarkSent(ctx, id2, "", "accepted", 0, t0); err != nil {
		t.Errorf("second email without SID: %v", err)
	}
}

func TestTrackingAndNextPoll(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	id := mustSent(t, s, newMsg("1", 1), "SM1")
	mustEnqueue(t, s, newMsg("2", 1)) // planned: never tracked

	ids := func(now time.Time) []int64 {
		tr, err := s.Tracking(ctx, ChannelSMS, now, 10)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, m := range tr {
			out = append(out, m.ID)
		}
		return out
	}
	if got := ids(t0); len(got) != 1 || got[0] != id {
		t.Fatalf("Tracking at send time = %v, want [%d]", got, id)
	}
	if err := s.SetNextPoll(ctx, id, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := ids(t0.Add(59 * time.Second)); len(got) != 0 {
		t.Errorf("Tracking before next poll = %v, want none", got)
	}
	if got := ids(t0.Add(time.Minute)); len(got) != 1 {
		t.Errorf("Tracking at next poll = %v, want [%d]", got, id)
	}
	if _, err := s.RecordStatus(ctx, id, "delivered", 0, t0.Add(time.Minute), SourcePoll); err != nil {
		t.Fatal(err)
	}
	if got := ids(t0.Add(time.Hour)); len(got) != 0 {
		t.Errorf("Tracking after a final status = %v, want none", got)
	}
	if err := s.SetNextPoll(ctx, id, t0); !errors.Is(err, ErrWrongState) {
		t.Errorf("SetNextPoll on a delivered message: %v, want ErrWrongState", err)
	}
}

func TestSendingSurvivesCrash(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	id := mustEnqueue(t, s, newMsg("1", 1))
	mustEnqueue(t, s, newMsg("2", 1))
	if err := s.Claim(ctx, id, t0, nil); err != nil {
		t.Fatal(err)
	}
	s.Close() // the process dies between Claim and the provider's answer

	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	sending, err := s2.Sending(ctx)
	if err != nil || len(sending) != 1 || sending[0].ID != id {
		t.Fatalf("Sending after restart = %+v, %v; want message %d", sending, err, id)
	}
	if due, _ := s2.Due(ctx, ChannelSMS, t0.Add(time.Hour), 0); len(due) != 1 || due[0].ID == id {
		t.Errorf("an ambiguous sending row is due again: %+v", due)
	}
}

// Exactly one of many claimers wins, whether they share a Store or use
// separate handles on the same file (as two nudge processes would).
func TestConcurrentClaimOneWinner(t *testing.T) {
	a, path := openTemp(t)
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	id := mustEnqueue(t, a, newMsg("1", 1))

	var wins, lost atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Go(func() {
			switch err := st.Claim(ctx, id, t0, nil); {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, ErrNotClaimable):
				lost.Add(1)
			default:
				t.Errorf("Claim: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || lost.Load() != 7 {
		t.Errorf("wins = %d, lost = %d; want 1 and 7", wins.Load(), lost.Load())
	}
	if m := mustGet(t, b, id); m.Attempts != 1 {
		t.Errorf("attempts = %d, want 1", m.Attempts)
	}
}

// Workers in two "processes" drain one queue: every message is sent once.
func TestConcurrentWorkersSendEachOnce(t *testing.T) {
	a, path := openTemp(t)
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	const rows = 60
	batch := make([]*Message, rows)
	for i := range batch {
		batch[i] = newMsg(fmt.Sprint(i), 1)
	}
	if n, err := a.EnqueueBatch(ctx, batch); err != nil || n != rows {
		t.Fatalf("EnqueueBatch = %d, %v", n, err)
	}

	var mu sync.Mutex
	sends := make(map[int64]int)
	var wg sync.WaitGroup
	for w := range 4 {
		st := []*Store{a, b}[w%2]
		wg.Go(func() {
			for {
				due, err := st.Due(ctx, ChannelSMS, t0, 5)
				if err != nil {
					t.Errorf("Due: %v", err)
					return
				}
				if len(due) == 0 {
					return
				}
				for _, m := range due {
					if err := st.Claim(ctx, m.ID, t0, nil); errors.Is(err, ErrNotClaimable) {
						continue
					} else if err != nil {
						t.Errorf("Claim: %v", err)
						return
					}
					mu.Lock()
					sends[m.ID]++
					mu.Unlock()
					if err := st.MarkSent(ctx, m.ID, fmt.Sprintf("SM%d", m.ID), "queued", 1, t0); err != nil {
						t.Errorf("MarkSent: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if len(sends) != rows {
		t.Errorf("%d messages sent, want %d", len(sends), rows)
	}
	for id, n := range sends {
		if n != 1 {
			t.Errorf("message %d sent %d times", id, n)
		}
	}
}
