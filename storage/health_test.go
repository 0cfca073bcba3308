package storage

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// queueFixture fills s with messages, write-backs and triggers in known
// states, the same for Depths and StatusCounts.
func queueFixture(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	n := 0
	msg := func(channel string) *Message {
		n++
		m := newMsg(fmt.Sprint(n), 1)
		if channel == ChannelEmail {
			m.Channel, m.To = ChannelEmail, "ana@example.org"
		}
		return m
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustEnqueue(t, s, msg(ChannelSMS)) // planned
	mustEnqueue(t, s, msg(ChannelSMS)) // planned
	must(s.MarkRetry(ctx, mustEnqueue(t, s, msg(ChannelSMS)), "429", t0, t0.Add(time.Minute)))
	must(s.Claim(ctx, mustEnqueue(t, s, msg(ChannelSMS)), t0, nil)) // sending
	mustSent(t, s, msg(ChannelSMS), "SM-queued")                    // sent, queued: tracking
	delivered := mustSent(t, s, msg(ChannelSMS), "SM-delivered")    // delivered
	_, err := s.RecordStatus(ctx, delivered, "delivered", 0, t0, SourceCallback)
	must(err)
	must(s.MarkFailed(ctx, mustEnqueue(t, s, msg(ChannelSMS)), 21211, "invalid number", t0))
	skipped := msg(ChannelSMS)
	skipped.State, skipped.Reason = StateSkipped, "opted out"
	mustEnqueue(t, s, skipped)
	email := mustEnqueue(t, s, msg(ChannelEmail))
	must(s.Claim(ctx, email, t0, nil))
	must(s.MarkSent(ctx, email, "", "accepted", 0, t0)) // sent and final: not tracking
	mustEnqueue(t, s, msg(ChannelEmail))                // planned

	wb := func(rec string) WriteBack {
		return WriteBack{Project: "main", Record: rec, Fields: map[string]string{"f": "1"}, CreatedAt: t0}
	}
	must(s.EnqueueWriteBacks(ctx, []WriteBack{wb("1"), wb("2"), wb("3"), wb("4")}, nil))
	wbs, err := s.PendingWriteBacks(ctx, "main", t0, 0)
	must(err)
	must(s.CompleteWriteBacks(ctx, []WriteBackRef{wbs[0].Ref()}, t0))
	must(s.FailWriteBacks(ctx, []WriteBackRef{wbs[1].Ref()}, "no such field", t0))

	var trs []int64
	for i := range 3 {
		tr := &Trigger{Project: "main", Record: fmt.Sprint(i), ReceivedAt: t0}
		must(s.EnqueueTrigger(ctx, tr))
		trs = append(trs, tr.ID)
	}
	must(s.CompleteTrigger(ctx, trs[0], t0))
	must(s.RetryTrigger(ctx, trs[1], "REDCap down", t0.Add(time.Hour))) // pending, waiting
}

func TestDepths(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		fixture func(*testing.T, *Store)
		want    Depths
	}{
		{"empty", func(*testing.T, *Store) {}, Depths{}},
		{"fixture", queueFixture, Depths{Planned: 4, Sending: 1, Tracking: 1, WriteBacks: 2, FailedWriteBacks: 1, Triggers: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			tt.fixture(t, s)
			got, err := s.Depths(ctx)
			if err != nil || got != tt.want {
				t.Errorf("Depths = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestStatusCounts(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		fixture func(*testing.T, *Store)
		want    []StatusCount
	}{
		{"empty", func(*testing.T, *Store) {}, nil},
		{"fixture", queueFixture, []StatusCount{
			{ChannelEmail, "accepted", 1},
			{ChannelEmail, "planned", 1},
			{ChannelSMS, "delivered", 1},
			{ChannelSMS, "failed", 1},
			{ChannelSMS, "planned", 2},
			{ChannelSMS, "queued", 1},
			{ChannelSMS, "retry", 1},
			{ChannelSMS, "sending", 1},
			{ChannelSMS, "skipped", 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			tt.fixture(t, s)
			got, err := s.StatusCounts(ctx)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("StatusCounts =\n%v, %v\nwant\n%v", got, err, tt.want)
			}
		})
	}
}

func TestOptOutCount(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	steps := []struct {
		phone string
		out   bool
		want  int
	}{
		{"+1555", true, 1},
		{"+1666", true, 2},
		{"+1555", false, 1},
		{"+1777", false, 1},
	}
	for i, st := range steps {
		f := s.OptIn
		if st.out {
			f = s.OptOut
		}
		if err := f(ctx, st.phone, "sms", t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if n, err := s.OptOutCount(ctx); err != nil || n != st.want {
			t.Errorf("step %d: OptOutCount = %d, %v; want %d", i, n, err, st.want)
		}
	}
}

func TestPing(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping of an open store: %v", err)
	}
	s.Close()
	if err := s.Ping(context.Background()); err == nil {
		t.Error("Ping of a closed store succeeded")
	}
}

// The webhook's lookups run while Twilio waits for an answer: each must use
// an index, not scan a table that grows with the study.
func TestServeQueriesUseIndexes(t *testing.T) {
	s, _ := openTemp(t)
	tests := []struct {
		name, query string
		args        []any
		index       string
	}{
		{"LastSentTo", sqlLastSentTo, []any{"+1555", "r"}, "messages_sent_to"},
		{"ParticipantsByPhone", sqlParticipantsByPhone, []any{"+1555"}, "sqlite_autoindex_participants_1"},
		{"InboundBySID", sqlInboundBySID, []any{"SM1"}, "sqlite_autoindex_inbound_1"},
		{"PendingTriggers", sqlPendingTriggers, []any{0, 10}, "triggers_pending"},
		{"Texts", sqlTexts, []any{"+1555", 0}, "messages_texts"},
		{"QueuedTexts", sqlQueuedTexts, []any{"+1555", "k"}, "messages_queued_to"},
	}
	for _, tt := range tests {
		rows, err := s.db.Query("EXPLAIN QUERY PLAN "+tt.query, tt.args...)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if p := strings.Join(plan, "; "); !strings.Contains(p, "INDEX "+tt.index) {
			t.Errorf("%s: plan %q does not use index %s", tt.name, p, tt.index)
		}
	}
}
