package storage

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

func wb(record string, fields map[string]string) WriteBack {
	return WriteBack{Project: "main", Record: record, Event: "baseline_arm_1", Fields: fields, CreatedAt: t0}
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
	if err != nil || len(pending) != 1 {
		t.Fatalf("PendingWriteBacks = %+v, %v", pending, err)
	}
	p := pending[0]
	if p.Record != "1" || p.Event != "baseline_arm_1" || p.State != WriteBackPending ||
		!reflect.DeepEqual(p.Fields, item.Fields) || !p.CreatedAt.Equal(t0) {
		t.Errorf("pending write-back = %+v", p)
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
	}
	if err := s.EnqueueWriteBacks(ctx, items, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := s.PendingWriteBacks(ctx, "main", t0, 2)
	if len(p) != 2 || p[0].Record != "1" || p[1].Record != "2" {
		t.Fatalf("PendingWriteBacks(limit 2) = %+v", p)
	}
	p, _ = s.PendingWriteBacks(ctx, "main", t0, 0)
	one, two, three := p[0].ID, p[1].ID, p[2].ID

	retryAt := t0.Add(time.Minute)
	if err := s.RetryWriteBack(ctx, one, "REDCap 503", retryAt); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteWriteBacks(ctx, []int64{two}, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.FailWriteBack(ctx, three, `The field "a" does not exist`); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.PendingWriteBacks(ctx, "main", retryAt.Add(-time.Second), 0); len(p) != 0 {
		t.Errorf("pending before retry time = %+v", p)
	}
	p, _ = s.PendingWriteBacks(ctx, "main", retryAt, 0)
	if len(p) != 1 || p[0].ID != one || p[0].Attempts != 1 || p[0].LastError != "REDCap 503" || !p[0].NotBefore.Equal(retryAt) {
		t.Errorf("pending at retry time = %+v", p)
	}
	failed, _ := s.FailedWriteBacks(ctx, "main")
	if len(failed) != 1 || failed[0].ID != three || failed[0].State != WriteBackFailed || failed[0].Attempts != 1 {
		t.Errorf("FailedWriteBacks = %+v", failed)
	}

	// Completing twice (an interrupted pass repeated) is harmless.
	if err := s.CompleteWriteBacks(ctx, []int64{one, two}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.PendingWriteBacks(ctx, "main", t0.Add(time.Hour), 0); len(p) != 0 {
		t.Errorf("pending after completion = %+v", p)
	}
	if err := s.RetryWriteBack(ctx, two, "x", t0); !errors.Is(err, ErrWrongState) {
		t.Errorf("RetryWriteBack on a done row: %v, want ErrWrongState", err)
	}
	if err := s.FailWriteBack(ctx, 999, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("FailWriteBack on a missing row: %v, want ErrNotFound", err)
	}
}
