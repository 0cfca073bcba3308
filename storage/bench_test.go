package storage

import (
	"context"
	"fmt"
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
