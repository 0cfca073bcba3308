package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// gate holds the writer's first batch until released, and counts the rows
// handed over to it, so tests can line rows up behind a known batch.
type gate struct {
	once     sync.Once
	started  chan struct{} // closed when the first batch is about to be stored
	release  chan struct{} // close to let it go
	handed   chan struct{} // one value per row handed over
	batchLen []int         // sizes of the batches, in order (read after Close)
}

func newGate() *gate {
	return &gate{started: make(chan struct{}), release: make(chan struct{}), handed: make(chan struct{}, 1024)}
}

func (g *gate) hooks() writerHooks {
	return writerHooks{
		handedOver: func() { g.handed <- struct{}{} },
		beforeCommit: func(n int) {
			g.batchLen = append(g.batchLen, n)
			g.once.Do(func() {
				close(g.started)
				<-g.release
			})
		},
	}
}

// waitHanded waits until n more rows have been handed to the writer.
func (g *gate) waitHanded(n int) {
	for range n {
		<-g.handed
	}
}

// saveResult is what one Save returned.
type saveResult struct {
	in       *Inbound
	inserted bool
	err      error
}

// goSave runs w.Save in a goroutine and delivers its result on the channel.
func goSave(ctx context.Context, w *InboundWriter, in *Inbound) <-chan saveResult {
	ch := make(chan saveResult, 1)
	go func() {
		ok, err := w.Save(ctx, in)
		ch <- saveResult{in, ok, err}
	}()
	return ch
}

// blockFirstBatch starts a writer whose first batch (the row "SM-first")
// is held until g.release is closed.
func blockFirstBatch(t *testing.T, s *Store) (*InboundWriter, *gate, <-chan saveResult) {
	t.Helper()
	g := newGate()
	w := s.newInboundWriter(g.hooks())
	first := goSave(context.Background(), w, newInbound("SM-first"))
	g.waitHanded(1)
	<-g.started
	return w, g, first
}

func TestInboundWriterConcurrent(t *testing.T) {
	const goroutines, perG = 64, 50
	tests := []struct {
		name string
		sid  func(g, i int) string // SID of row i of goroutine g
		want int                   // distinct rows stored
	}{
		{"all distinct", func(g, i int) string { return fmt.Sprintf("SM-%d-%d", g, i) }, goroutines * perG},
		{"every goroutine saves the same rows", func(g, i int) string { return fmt.Sprintf("SM-%d", i) }, perG},
		{"pairs of goroutines share rows", func(g, i int) string { return fmt.Sprintf("SM-%d-%d", g/2, i) }, goroutines / 2 * perG},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			ctx := context.Background()
			w := s.NewInboundWriter()
			results := make([][]saveResult, goroutines)
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range perG {
						in := newInbound(tt.sid(g, i))
						in.Body = fmt.Sprintf("from goroutine %d", g)
						ok, err := w.Save(ctx, in)
						results[g] = append(results[g], saveResult{in, ok, err})
					}
				})
			}
			wg.Wait()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}

			// Per SID: exactly one caller inserted it, and every caller got
			// the stored row (same ID, the inserting caller's body).
			type seen struct {
				inserts int
				ids     map[int64]bool
				winner  string
			}
			bySID := map[string]*seen{}
			for g, rs := range results {
				for i, r := range rs {
					if r.err != nil {
						t.Fatalf("goroutine %d row %d: %v", g, i, r.err)
					}
					e := bySID[r.in.MessageSID]
					if e == nil {
						e = &seen{ids: map[int64]bool{}}
						bySID[r.in.MessageSID] = e
					}
					e.ids[r.in.ID] = true
					if r.inserted {
						e.inserts++
						e.winner = fmt.Sprintf("from goroutine %d", g)
					}
				}
			}
			if len(bySID) != tt.want {
				t.Errorf("distinct SIDs saved = %d, want %d", len(bySID), tt.want)
			}
			for sid, e := range bySID {
				if e.inserts != 1 || len(e.ids) != 1 {
					t.Fatalf("%s: inserted by %d callers, seen with %d IDs; want 1 and 1", sid, e.inserts, len(e.ids))
				}
				got, err := s.InboundBySID(ctx, sid)
				if err != nil || !e.ids[got.ID] || got.Body != e.winner {
					t.Fatalf("%s: stored %+v, %v; want the row of %s", sid, got, err, e.winner)
				}
			}
			for g, rs := range results {
				for _, r := range rs {
					if r.in.Body != bySID[r.in.MessageSID].winner {
						t.Fatalf("goroutine %d got body %q for %s; a duplicate must be filled from the stored row", g, r.in.Body, r.in.MessageSID)
					}
				}
			}
			if n, err := s.InboundCount(ctx); err != nil || n != tt.want {
				t.Errorf("InboundCount = %d, %v; want %d", n, err, tt.want)
			}
		})
	}
}

func TestInboundWriterDuplicateGetsStoredReply(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	w := s.NewInboundWriter()
	defer w.Close()
	first := newInbound("SM1")
	if ok, err := w.Save(ctx, first); err != nil || !ok || first.ID == 0 {
		t.Fatalf("first Save = %v, %v (ID %d)", ok, err, first.ID)
	}
	if err := s.SetInboundReply(ctx, first.ID, HandledHelp, "Call (415) 555-0100."); err != nil {
		t.Fatal(err)
	}
	retry := newInbound("SM1")
	ok, err := w.Save(ctx, retry)
	if err != nil || ok {
		t.Fatalf("Save of a stored SID = %v, %v; want false, nil", ok, err)
	}
	if retry.ID != first.ID || retry.Handled != HandledHelp || retry.Reply != "Call (415) 555-0100." {
		t.Errorf("duplicate filled with %+v; want the stored row with its reply", *retry)
	}
}

func TestInboundWriterCloseFlushes(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	w, g, first := blockFirstBatch(t, s)

	const queued = 40
	var results []<-chan saveResult
	for i := range queued {
		results = append(results, goSave(ctx, w, newInbound(fmt.Sprintf("SM%d", i))))
	}
	g.waitHanded(queued)

	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	close(g.release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	// Close has returned: every handed-over row must be committed by now.
	if n, err := s.InboundCount(ctx); err != nil || n != queued+1 {
		t.Errorf("rows stored when Close returned = %d, %v; want %d", n, err, queued+1)
	}
	for i, ch := range append(results, first) {
		if r := <-ch; r.err != nil || !r.inserted || r.in.ID == 0 {
			t.Errorf("Save %d = %v, %v (ID %d); want inserted", i, r.inserted, r.err, r.in.ID)
		}
	}
	if len(g.batchLen) != 2 || g.batchLen[1] != queued {
		t.Errorf("batches = %v; want [1 %d]: the rows waiting behind a commit go in one transaction", g.batchLen, queued)
	}

	if _, err := w.Save(ctx, newInbound("SM-late")); !errors.Is(err, ErrWriterClosed) {
		t.Errorf("Save after Close: %v, want ErrWriterClosed", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestInboundWriterContext(t *testing.T) {
	t.Run("already cancelled", func(t *testing.T) {
		s, _ := openTemp(t)
		w := s.NewInboundWriter()
		defer w.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := w.Save(ctx, newInbound("SM1")); !errors.Is(err, context.Canceled) {
			t.Errorf("Save = %v, want context.Canceled", err)
		}
		w.Close()
		if n, _ := s.InboundCount(context.Background()); n != 0 {
			t.Errorf("a cancelled Save stored %d rows", n)
		}
	})

	t.Run("cancelled while waiting", func(t *testing.T) {
		s, _ := openTemp(t)
		w, g, first := blockFirstBatch(t, s)
		ctx, cancel := context.WithCancel(context.Background())
		waiting := goSave(ctx, w, newInbound("SM-cancelled"))
		other := goSave(context.Background(), w, newInbound("SM-other"))
		g.waitHanded(2)
		cancel()
		if r := <-waiting; !errors.Is(r.err, context.Canceled) {
			t.Errorf("Save whose ctx ended while it waited = %v, want context.Canceled", r.err)
		}
		close(g.release)
		for _, ch := range []<-chan saveResult{first, other} {
			if r := <-ch; r.err != nil || !r.inserted {
				t.Errorf("Save of %s = %v, %v; another caller's cancellation must not fail it", r.in.MessageSID, r.inserted, r.err)
			}
		}
		w.Close()
		// The cancelled row had not reached a batch yet: it is dropped.
		if _, err := s.InboundBySID(context.Background(), "SM-cancelled"); !errors.Is(err, ErrNotFound) {
			t.Errorf("cancelled row: %v, want ErrNotFound", err)
		}
	})
}

func TestInboundWriterBatchErrorFailsEveryCaller(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	failOnBody(t, s, "boom")
	w, g, first := blockFirstBatch(t, s)

	var batch []<-chan saveResult
	for i, body := range []string{"fine", "boom", "fine too"} {
		in := newInbound(fmt.Sprintf("SM%d", i))
		in.Body = body
		batch = append(batch, goSave(ctx, w, in))
	}
	g.waitHanded(3)
	close(g.release)

	if r := <-first; r.err != nil || !r.inserted {
		t.Errorf("first batch: %v, %v", r.inserted, r.err)
	}
	for i, ch := range batch {
		if r := <-ch; r.err == nil || !strings.Contains(r.err.Error(), "refused by test") {
			t.Errorf("caller %d of the failed batch: err = %v, want the batch's error", i, r.err)
		}
	}
	// The writer keeps working after a failed batch.
	later := newInbound("SM-later")
	if ok, err := w.Save(ctx, later); err != nil || !ok {
		t.Errorf("Save after a failed batch = %v, %v", ok, err)
	}
	w.Close()
	if n, _ := s.InboundCount(ctx); n != 2 {
		t.Errorf("rows stored = %d, want 2 (first and later; the failed batch stores nothing)", n)
	}
}

func TestInboundWriterRejectsInvalid(t *testing.T) {
	s, _ := openTemp(t)
	w := s.NewInboundWriter()
	defer w.Close()
	if _, err := w.Save(context.Background(), &Inbound{MessageSID: "SM1"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Save of a row without sender and time: %v, want ErrInvalid", err)
	}
}
