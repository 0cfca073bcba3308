package storage

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestRuns(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	if _, err := s.LastRun(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("LastRun on an empty store: %v, want ErrNotFound", err)
	}
	first, err := s.StartRun(ctx, "run", t0)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := s.StartRun(ctx, "trigger", t0.Add(time.Hour))
	summary := map[string]int{"planned": 3, "sent": 2}
	if err := s.FinishRun(ctx, second, t0.Add(time.Hour+time.Minute), "ok", summary); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRun(ctx, second, t0.Add(2*time.Hour), "ok", nil); !errors.Is(err, ErrWrongState) {
		t.Errorf("second FinishRun: %v, want ErrWrongState", err)
	}
	if err := s.FinishRun(ctx, 999, t0, "ok", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("FinishRun of a missing run: %v, want ErrNotFound", err)
	}
	last, err := s.LastRun(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last.ID != second || last.Kind != "trigger" || last.Outcome != "ok" ||
		!last.StartedAt.Equal(t0.Add(time.Hour)) || !last.FinishedAt.Equal(t0.Add(time.Hour+time.Minute)) ||
		string(last.Summary) != `{"planned":3,"sent":2}` {
		t.Errorf("LastRun = %+v (summary %s)", last, last.Summary)
	}
	if first == second {
		t.Error("runs share an ID")
	}
}

func TestCounts(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	r1, _ := s.StartRun(ctx, "run", t0)
	r2, _ := s.StartRun(ctx, "run", t0.Add(time.Hour))

	add := func(run int64, rule, rec, channel string) int64 {
		m := newMsg(rec, 1)
		m.RunID, m.Rule, m.Channel = run, rule, channel
		m.Key = rule + "/" + rec + "/" + channel
		return mustEnqueue(t, s, m)
	}
	add(r1, "reminder", "1", ChannelSMS)
	skipped := add(r1, "reminder", "2", ChannelSMS)
	s.Cancel(ctx, skipped, "opted out", t0)
	sent := add(r1, "reminder", "3", ChannelSMS)
	s.Claim(ctx, sent, t0, nil)
	s.MarkSent(ctx, sent, "SM3", "queued", 1, t0)
	add(r1, "reminder", "1", ChannelEmail)
	add(r2, "followup", "1", ChannelSMS)

	got, err := s.Counts(ctx, r1)
	if err != nil {
		t.Fatal(err)
	}
	want := []Count{
		{"main", "reminder", ChannelEmail, map[State]int{StatePlanned: 1}, 1},
		{"main", "reminder", ChannelSMS, map[State]int{StatePlanned: 1, StateCanceled: 1, StateSent: 1}, 3},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Counts(run 1) =\n%+v\nwant\n%+v", got, want)
	}
	all, _ := s.Counts(ctx, 0)
	if len(all) != 3 || all[0].Rule != "followup" || all[0].Total != 1 {
		t.Errorf("Counts(all) = %+v", all)
	}
}
