package webhook_test

import (
	"context"
	"sync"

	"github.com/nudge-study/nudge/engine/webhook"
)

// fakeHandler is the engine as the webhook tests see it: it keeps what it
// was given in memory and answers as configured.
type fakeHandler struct {
	mu       sync.Mutex
	inbound  map[string]webhook.Inbound // by MessageSID
	order    []webhook.Inbound
	statuses []webhook.StatusCallback
	triggers []webhook.Trigger
	calls    int // Inbound, StatusCallback and Trigger calls

	reply      string
	inboundErr error
	statusErr  error
	triggerErr error
	panicWith  any // Inbound panics with this when set
	health     webhook.Health
	healthErr  error
}

func newFake() *fakeHandler {
	return &fakeHandler{
		inbound: make(map[string]webhook.Inbound),
		health:  webhook.Health{OK: true, Database: "ok", Queues: map[string]int{"triggers": 0}},
	}
}

func (f *fakeHandler) Inbound(_ context.Context, in webhook.Inbound) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.panicWith != nil {
		panic(f.panicWith)
	}
	if f.inboundErr != nil {
		return "", f.inboundErr
	}
	f.inbound[in.MessageSID] = in
	f.order = append(f.order, in)
	return f.reply, nil
}

func (f *fakeHandler) StatusCallback(_ context.Context, cb webhook.StatusCallback) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.statusErr != nil {
		return f.statusErr
	}
	f.statuses = append(f.statuses, cb)
	return nil
}

func (f *fakeHandler) Trigger(_ context.Context, t webhook.Trigger) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.triggerErr != nil {
		return f.triggerErr
	}
	f.triggers = append(f.triggers, t)
	return nil
}

func (f *fakeHandler) Health(context.Context) (webhook.Health, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health, f.healthErr
}

// Calls is how many webhook calls (not health checks) reached the handler.
func (f *fakeHandler) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Stored is how many distinct inbound messages the handler kept.
func (f *fakeHandler) Stored() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.inbound)
}

var _ webhook.Handler = (*fakeHandler)(nil)

// Got returns the inbound message stored under sid.
func (f *fakeHandler) Got(sid string) (webhook.Inbound, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.inbound[sid]
	return in, ok
}

// Statuses returns the status callbacks recorded so far.
func (f *fakeHandler) Statuses() []webhook.StatusCallback {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]webhook.StatusCallback(nil), f.statuses...)
}

// Triggers returns the triggers queued so far.
func (f *fakeHandler) Triggers() []webhook.Trigger {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]webhook.Trigger(nil), f.triggers...)
}
