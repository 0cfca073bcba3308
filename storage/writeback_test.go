package storage

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func wb(record string, fields map[string]string) WriteBack {
	return WriteBack{Project: "main", Record: record, Event: "baseline_arm_1", Fields: fields, Origin: OriginStatus, CreatedAt: t0}
}

// values maps each pending target's field to its value (one record).
func pendingValues(t *testing.T, s *Store, at time.Time) map[string]string {
	t.Helper()
	p, err := s.PendingWriteBacks(context.Background(), "main", at, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, w := range p {
		out[w.Record+"/"+w.Field] = w.Value
	}
	return out
}

func TestWriteBackFollowsStatus(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	id := mustSent(t, s, newMsg("1", 1), "SM1")
	mustEnqueue(t, s, newMsg("2", 1)) // planned, no status yet: nothing to report

	un, err := s.Unreported(ctx, 0)
	if err != nil || len(un) != 1 || un[0].ID != id || un[0].Status != "queued" {
		t.Fatalf("Unreported = %+v, %v; want message %d with status queued", un, err, id)
	}
	item := wb("1", map[string]string{"bl_sms_status": "queued", "bl_sms_sid": "SM1"})
	if err := s.EnqueueWriteBacks(ctx, []WriteBack{item}, map[int64]string{id: "queued"}); err != nil {
		t.Fatal(err)
	}
	if un, _ := s.Unreported(ctx, 0); len(un) != 0 {
		t.Errorf("Unreported after queueing = %d rows, want 0", len(un))
	}
	if m := mustGet(t, s, id); m.ReportedStatus != "queued" {
		t.Errorf("ReportedStatus = %q", m.ReportedStatus)
	}
	pending, err := s.PendingWriteBacks(ctx, "main", t0, 0)
	if err != nil || len(pending) != 2 {
		t.Fatalf("PendingWriteBacks = %+v, %v; want one target per field", pending, err)
	}
	for _, p := range pending {
		if p.Record != "1" || p.Event != "baseline_arm_1" || p.State != WriteBackPending || p.Origin != OriginStatus ||
			p.Value != item.Fields[p.Field] || !p.CreatedAt.Equal(t0) || p.Seq != 1 {
			t.Errorf("pending target = %+v", p)
		}
	}
	if other, _ := s.PendingWriteBacks(ctx, "site2", t0, 0); len(other) != 0 {
		t.Errorf("another project's queue has %d rows", len(other))
	}

	// A newer status makes the message unreported again.
	if _, err := s.RecordStatus(ctx, id, "delivered", 0, t0, SourceCallback); err != nil {
		t.Fatal(err)
	}
	if un, _ := s.Unreported(ctx, 0); len(un) != 1 || un[0].Status != "delivered" || un[0].ReportedStatus != "queued" {
		t.Errorf("Unreported after delivery = %+v", un)
	}
}

func TestEnqueueWriteBacksIsAtomic(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	id := mustSent(t, s, newMsg("1", 1), "SM1")
	items := []WriteBack{wb("1", map[string]string{"bl_sms_status": "queued"})}

	tests := []struct {
		name     string
		items    []WriteBack
		reported map[int64]string
		want     error
	}{
		{"unknown message", items, map[int64]string{id: "queued", 999: "sent"}, ErrNotFound},
		{"item without fields", append(items, wb("2", nil)), map[int64]string{id: "queued"}, ErrInvalid},
		{"item without time", []WriteBack{{Project: "main", Record: "1", Fields: map[string]string{"a": "1"}}}, nil, ErrInvalid},
	}
	for _, tt := range tests {
		if err := s.EnqueueWriteBacks(ctx, tt.items, tt.reported); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
		if p, _ := s.PendingWriteBacks(ctx, "main", t0, 0); len(p) != 0 {
			t.Errorf("%s: %d write-backs stored by a failed call", tt.name, len(p))
		}
		if m := mustGet(t, s, id); m.ReportedStatus != "" {
			t.Errorf("%s: ReportedStatus set to %q by a failed call", tt.name, m.ReportedStatus)
		}
	}
	// Without messages (a reply rule's writes).
	if err := s.EnqueueWriteBacks(ctx, items, nil); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.PendingWriteBacks(ctx, "main", t0, 0); len(p) != 1 {
		t.Errorf("pending = %d, want 1", len(p))
	}
}

func TestWriteBackLifecycle(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	items := []WriteBack{
		wb("1", map[string]string{"a": "1"}),
		wb("2", map[string]string{"a": "2"}),
		wb("3", map[string]string{"a": "3"}),
		wb("4", map[string]string{"a": "4"}),
	}
	if err := s.EnqueueWriteBacks(ctx, items, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := s.PendingWriteBacks(ctx, "main", t0, 2)
	if len(p) != 2 || p[0].Record != "1" || p[1].Record != "2" {
		t.Fatalf("PendingWriteBacks(limit 2) = %+v", p)
	}
	p, _ = s.PendingWriteBacks(ctx, "main", t0, 0)
	one, two, three, four := p[0].Ref(), p[1].Ref(), p[2].Ref(), p[3].Ref()

	retryAt := t0.Add(time.Minute)
	if err := s.RetryWriteBacks(ctx, []WriteBackRef{one}, "REDCap 503", retryAt); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteWriteBacks(ctx, []WriteBackRef{two}, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.FailWriteBacks(ctx, []WriteBackRef{three}, `The field "a" does not exist`, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.DropWriteBacks(ctx, []WriteBackRef{four}, "record 4 no longer exists", t0); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.PendingWriteBacks(ctx, "main", retryAt.Add(-time.Second), 0); len(p) != 0 {
		t.Errorf("pending before retry time = %+v", p)
	}
	p, _ = s.PendingWriteBacks(ctx, "main", retryAt, 0)
	if len(p) != 1 || p[0].ID != one.ID || p[0].Attempts != 1 || p[0].LastError != "REDCap 503" || !p[0].NotBefore.Equal(retryAt) {
		t.Errorf("pending at retry time = %+v", p)
	}
	failed, _ := s.FailedWriteBacks(ctx, "main")
	if len(failed) != 1 || failed[0].ID != three.ID || failed[0].State != WriteBackFailed || failed[0].Attempts != 1 {
		t.Errorf("FailedWriteBacks = %+v", failed)
	}
	dropped, _ := s.WriteBacksIn(ctx, "main", WriteBackDropped)
	if len(dropped) != 1 || dropped[0].ID != four.ID || dropped[0].LastError != "record 4 no longer exists" {
		t.Errorf("dropped = %+v", dropped)
	}

	// Completing twice (an interrupted pass repeated) is harmless, and a
	// done value is not moved again.
	if err := s.CompleteWriteBacks(ctx, []WriteBackRef{one, two}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.PendingWriteBacks(ctx, "main", t0.Add(time.Hour), 0); len(p) != 0 {
		t.Errorf("pending after completion = %+v", p)
	}
	if err := s.RetryWriteBacks(ctx, []WriteBackRef{two}, "x", t0); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.WriteBackTargetOf(ctx, "main", "2", "baseline_arm_1", "", 0, "a"); got.State != WriteBackDone || got.LastError != "" {
		t.Errorf("a done target after a late retry = %+v", got)
	}
	if _, err := s.WriteBackTargetOf(ctx, "main", "9", "baseline_arm_1", "", 0, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("WriteBackTargetOf a target never written: %v, want ErrNotFound", err)
	}

	// A new value for a failed or dropped target makes it pending again,
	// with a fresh attempt count.
	again := []WriteBack{wb("3", map[string]string{"a": "33"}), wb("4", map[string]string{"a": "44"})}
	if err := s.EnqueueWriteBacks(ctx, again, nil); err != nil {
		t.Fatal(err)
	}
	p, _ = s.PendingWriteBacks(ctx, "main", t0, 0)
	if len(p) != 2 || p[0].Value != "33" || p[0].Attempts != 0 || p[0].LastError != "" || p[1].Value != "44" {
		t.Errorf("pending after new values = %+v", p)
	}
}

// TestSafetyWriteBackNewestValueWins: of the values queued for one target
// only the newest is ever pending, and a state change about an older value
// (an import that was in flight when the newer one was queued) never
// touches the newer one.
func TestSafetyWriteBackNewestValueWins(t *testing.T) {
	ctx := context.Background()
	status := func(v string, at time.Time) WriteBack {
		w := wb("1", map[string]string{"st": v})
		w.CreatedAt = at
		return w
	}
	tests := []struct {
		name string
		// run queues values and changes states; it returns the value that
		// must be pending afterwards ("" = none).
		run func(t *testing.T, s *Store) string
	}{
		{"newer supersedes older pending", func(t *testing.T, s *Store) string {
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{status("queued", t0)}, nil))
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{status("delivered", t0.Add(time.Second))}, nil))
			return "delivered"
		}},
		{"older decided value never replaces a newer", func(t *testing.T, s *Store) string {
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{status("delivered", t0.Add(time.Second))}, nil))
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{status("queued", t0)}, nil))
			return "delivered"
		}},
		{"completion of an in-flight older value leaves the newer pending", func(t *testing.T, s *Store) string {
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{status("queued", t0)}, nil))
			inFlight := onlyPending(t, s)
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{status("delivered", t0)}, nil))
			must(t, s.CompleteWriteBacks(ctx, []WriteBackRef{inFlight.Ref()}, t0))
			return "delivered"
		}},
		{"a 503 retry of the older value does not delay or fail the newer", func(t *testing.T, s *Store) string {
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{status("queued", t0)}, nil))
			inFlight := onlyPending(t, s)
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{status("delivered", t0)}, nil))
			must(t, s.RetryWriteBacks(ctx, []WriteBackRef{inFlight.Ref()}, "REDCap 503", t0.Add(time.Hour)))
			must(t, s.FailWriteBacks(ctx, []WriteBackRef{inFlight.Ref()}, "refused", t0))
			if p := onlyPending(t, s); p.Attempts != 0 || !p.NotBefore.IsZero() || p.LastError != "" {
				t.Errorf("the newer value took the older one's failure: %+v", p)
			}
			return "delivered"
		}},
		{"a done target gets a newer value", func(t *testing.T, s *Store) string {
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{status("sent", t0)}, nil))
			must(t, s.CompleteWriteBacks(ctx, []WriteBackRef{onlyPending(t, s).Ref()}, t0))
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{status("delivered", t0)}, nil))
			return "delivered"
		}},
		{"conditional value only over its origin", func(t *testing.T, s *Store) string {
			optIn := WriteBack{Project: "main", Record: "1", Event: "baseline_arm_1", Fields: map[string]string{"st": "1"},
				Origin: OriginOptIn, IfOrigin: OriginOptOut, CreatedAt: t0}
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{optIn}, nil)) // nothing to revert
			if p, _ := s.PendingWriteBacks(ctx, "main", t0, 0); len(p) != 0 {
				t.Errorf("an opt-in with no opt-out to revert queued %+v", p)
			}
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{status("0", t0)}, nil)) // origin status, not opt-out
			must(t, s.EnqueueWriteBacks(ctx, []WriteBack{optIn}, nil))
			return "0"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			want := tt.run(t, s)
			got := pendingValues(t, s, t0.Add(24*time.Hour))["1/st"]
			if got != want {
				t.Errorf("pending value = %q, want %q", got, want)
			}
		})
	}
}

func onlyPending(t *testing.T, s *Store) WriteBackTarget {
	t.Helper()
	p, err := s.PendingWriteBacks(context.Background(), "main", t0.Add(24*time.Hour), 0)
	if err != nil || len(p) != 1 {
		t.Fatalf("pending = %+v, %v; want one", p, err)
	}
	return p[0]
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The write-back migration carries the old queue over, one target per
// field, the newest queued value of each target winning.
func TestMigrationWriteBackKeepsQueue(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nudge.db")
	s, err := open(ctx, path, migrations[:2], Options{})
	if err != nil {
		t.Fatal(err)
	}
	const ins = `INSERT INTO writebacks (project, record, event, fields, state, attempts, created_at) VALUES (?, ?, '', ?, ?, ?, ?)`
	for _, r := range []struct {
		rec, fields, state string
		attempts           int
	}{
		{"1", `{"st":"queued","sid":"SM1"}`, "pending", 2},
		{"1", `{"st":"delivered"}`, "pending", 0},
		{"2", `{"st":"sent"}`, "done", 1},
		{"3", `{"st":"x"}`, "failed", 1},
	} {
		if _, err := s.db.ExecContext(ctx, ins, "main", r.rec, r.fields, r.state, r.attempts, t0.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s, err = open(ctx, path, migrations, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := pendingValues(t, s, t0)
	if len(got) != 2 || got["1/st"] != "delivered" || got["1/sid"] != "SM1" {
		t.Errorf("pending after migration = %v", got)
	}
	if f, _ := s.FailedWriteBacks(ctx, "main"); len(f) != 1 || f[0].Record != "3" {
		t.Errorf("failed after migration = %+v", f)
	}
	if d, _ := s.WriteBacksIn(ctx, "main", WriteBackDone); len(d) != 1 || d[0].Value != "sent" {
		t.Errorf("done after migration = %+v", d)
	}
}
