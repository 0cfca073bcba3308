package storage

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkEnqueueBatch enqueues 10,000 new messages per iteration in one
// transaction, as a large run would.
func BenchmarkEnqueueBatch(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	const rows = 10000
	n := 0
	for b.Loop() {
		b.StopTimer()
		batch := make([]*Message, rows)
		for i := range batch {
			batch[i] = newMsg(fmt.Sprint(n), 1)
			n++
		}
		b.StartTimer()
		if got, err := s.EnqueueBatch(ctx, batch); err != nil || got != rows {
			b.Fatalf("EnqueueBatch = %d, %v", got, err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkEnqueue enqueues one message per call (one transaction each).
func BenchmarkEnqueue(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	n := 0
	for b.Loop() {
		if ok, err := s.Enqueue(ctx, newMsg(fmt.Sprint(n), 1)); err != nil || !ok {
			b.Fatalf("Enqueue = %v, %v", ok, err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkInboundWriter saves distinct inbound messages from many
// goroutines at once, as concurrent webhook requests do, through one
// InboundWriter (group commit, synchronous=FULL). rows/commit shows how many
// rows share each transaction's disk flush.
func BenchmarkInboundWriter(b *testing.B) {
	s, _ := openTemp(b)
	w := s.NewInboundWriter()
	var seq atomic.Int64
	b.SetParallelism(32) // 32 per CPU: many requests in flight
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			in := newInbound(fmt.Sprintf("SM%032d", seq.Add(1)))
			if ok, err := w.Save(ctx, in); err != nil || !ok {
				b.Errorf("Save = %v, %v", ok, err)
				return
			}
		}
	})
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	n := seq.Load()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(n)/float64(max(w.batches.Load(), 1)), "rows/commit")
}

// BenchmarkSaveInboundOne saves one inbound message per transaction from
// many goroutines, without the writer: the rate group commit improves on.
func BenchmarkSaveInboundOne(b *testing.B) {
	s, _ := openTemp(b)
	var seq atomic.Int64
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			in := newInbound(fmt.Sprintf("SM%032d", seq.Add(1)))
			if _, err := s.SaveInbound(ctx, []*Inbound{in}); err != nil {
				b.Errorf("SaveInbound: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(seq.Load())/b.Elapsed().Seconds(), "rows/s")
}
