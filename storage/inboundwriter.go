package storage

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrWriterClosed is returned by InboundWriter.Save after Close.
var ErrWriterClosed = errors.New("storage: inbound writer is closed; no more messages can be saved through it")

// maxInboundBatch bounds how many inbound messages one transaction commits.
const maxInboundBatch = 256

// InboundWriter stores inbound messages by group commit: many goroutines
// call Save, and one goroutine commits whatever is waiting (up to 256 rows)
// in one transaction, then wakes the callers of that batch. With
// synchronous=FULL each commit waits for the disk; sharing that wait across
// a batch is what lets the webhook store thousands of messages a second.
//
// It is safe for concurrent use. Create it with Store.NewInboundWriter and
// Close it before closing the Store.
type InboundWriter struct {
	s    *Store
	reqs chan *inboundReq
	done chan struct{} // closed when the committing goroutine has exited

	// mu guards closed and the sends on reqs: Save holds it for reading
	// while it hands a row over, Close takes it for writing to close reqs,
	// so no Save ever sends on a closed channel.
	mu     sync.RWMutex
	closed bool

	hooks   writerHooks
	batches atomic.Int64 // transactions committed or tried, for the benchmark
}

// writerHooks let tests stop the writer at known points; nil in production.
type writerHooks struct {
	handedOver   func()      // after Save has handed its row over
	beforeCommit func(n int) // before a batch of n rows is stored
}

// inboundReq is one Save waiting for its row to be committed.
type inboundReq struct {
	ctx    context.Context
	in     Inbound // a copy: the caller may give up and return while it is saved
	result chan inboundResult
}

type inboundResult struct {
	in       Inbound
	inserted bool
	err      error
}

// NewInboundWriter starts an InboundWriter on s.
func (s *Store) NewInboundWriter() *InboundWriter {
	return s.newInboundWriter(writerHooks{})
}

func (s *Store) newInboundWriter(h writerHooks) *InboundWriter {
	w := &InboundWriter{
		s:     s,
		reqs:  make(chan *inboundReq, maxInboundBatch),
		done:  make(chan struct{}),
		hooks: h,
	}
	go w.run()
	return w
}

// Save stores in, de-duplicated on its MessageSID like SaveInbound (a new
// row's Effects are applied in the same transaction), and returns once the
// transaction holding it has committed. inserted is false
// when the MessageSID was already stored; *in is then filled from the stored
// row (its Reply and Handled say what was answered before). For a new row
// in.ID is set. If the transaction fails, every Save of that batch gets the
// error and none of their rows is stored.
//
// If ctx ends before the row is committed, Save returns ctx.Err(): the row
// is then dropped if its batch had not started yet, and may be stored
// otherwise. Saving it again is safe.
func (w *InboundWriter) Save(ctx context.Context, in *Inbound) (inserted bool, err error) {
	if err := checkInbound(in); err != nil {
		return false, err
	}
	r := &inboundReq{ctx: ctx, in: *in, result: make(chan inboundResult, 1)}
	r.in.Effects = in.Effects.clone()
	if err := w.send(ctx, r); err != nil {
		return false, err
	}
	if w.hooks.handedOver != nil {
		w.hooks.handedOver()
	}
	select {
	case res := <-r.result:
		if res.err != nil {
			return false, res.err
		}
		*in = res.in
		return res.inserted, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// send hands r to the committing goroutine.
func (w *InboundWriter) send(ctx context.Context, r *inboundReq) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrWriterClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case w.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stores every row already handed to the writer, then stops its
// goroutine. Later calls to Save return ErrWriterClosed. Close is safe to
// call more than once.
func (w *InboundWriter) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.reqs)
	}
	w.mu.Unlock()
	<-w.done
	return nil
}

// run commits batches until reqs is closed and drained. While one commit
// waits for the disk, new rows queue up in reqs and form the next batch.
func (w *InboundWriter) run() {
	defer close(w.done)
	batch := make([]*inboundReq, 0, maxInboundBatch)
	for r := range w.reqs {
		batch = append(batch[:0], r)
	gather:
		for len(batch) < maxInboundBatch {
			select {
			case r, ok := <-w.reqs:
				if !ok {
					break gather
				}
				batch = append(batch, r)
			default:
				break gather
			}
		}
		w.commit(batch)
	}
}

// commit stores one batch in one transaction and answers its callers.
// Callers whose context has already ended are answered at once and left out.
func (w *InboundWriter) commit(batch []*inboundReq) {
	live := batch[:0:0]
	rows := make([]*Inbound, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.result <- inboundResult{err: err}
			continue
		}
		live = append(live, r)
		rows = append(rows, &r.in)
	}
	if len(live) == 0 {
		return
	}
	if w.hooks.beforeCommit != nil {
		w.hooks.beforeCommit(len(live))
	}
	w.batches.Add(1)
	// The batch is not bound to any one caller's context: one caller giving
	// up must not fail the others. busy_timeout bounds the wait for the lock.
	inserted, err := w.s.SaveInbound(context.Background(), rows)
	for i, r := range live {
		if err != nil {
			r.result <- inboundResult{err: err}
			continue
		}
		r.result <- inboundResult{in: r.in, inserted: inserted[i]}
	}
}
