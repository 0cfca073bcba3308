package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nudge-study/nudge/storage"
)

// ErrUnknownProject is returned for a Data Entry Trigger from a REDCap
// project the config does not name.
var ErrUnknownProject = errors.New("engine: the trigger names a REDCap project this study does not use")

// triggerLease is how long one process has a trigger to itself.
const triggerLease = 2 * time.Minute

// SavedRecord is REDCap's Data Entry Trigger: a record was saved. Only the
// project and record are used; the data is read again through the API.
type SavedRecord struct {
	RedcapURL  string
	ProjectID  int
	Record     string
	Event      string
	Instrument string
	Instance   int
}

// EnqueueTrigger records a Data Entry Trigger in the durable queue and wakes
// the trigger worker. REDCap does not retry, so this must be quick and must
// not lose the trigger.
func (e *Engine) EnqueueTrigger(ctx context.Context, t SavedRecord) error {
	p, ok := e.study().Config.ProjectForTrigger(t.RedcapURL, t.ProjectID)
	if !ok {
		return fmt.Errorf("%w (redcap_url %q, project_id %d)", ErrUnknownProject, t.RedcapURL, t.ProjectID)
	}
	err := e.Store.EnqueueTrigger(ctx, &storage.Trigger{Project: p.Name, Record: t.Record, Event: t.Event,
		Instrument: t.Instrument, Instance: t.Instance, ReceivedAt: e.now()})
	if err != nil {
		return err
	}
	e.log().WithFields(map[string]any{"project": p.Name, "record": t.Record, "instrument": t.Instrument}).Info("record saved in REDCap")
	e.wake(e.triggerWake)
	return nil
}

// onSaveRules are a project's enabled rules marked `schedule: on_save`.
func (e *Engine) onSaveRules(project string) map[string]bool {
	out := map[string]bool{}
	for _, r := range e.study().Rules {
		if r.Enabled && r.OnSave && r.Project == project {
			out[r.Name] = true
		}
	}
	return out
}

// ProcessTriggers works through the trigger queue: it reads each saved
// record again through the API (never trusting the trigger's body),
// evaluates the project's on-save rules for it, enqueues what they select
// and sends it at once, within the pacing and the allowed hours. The same
// record saved twice plans the same idempotency keys, so it is messaged once.
func (e *Engine) ProcessTriggers(ctx context.Context) (int, error) {
	pending, err := e.Store.PendingTriggers(ctx, e.now(), 200)
	if err != nil || len(pending) == 0 {
		return 0, err
	}
	// Lease each trigger first, so that two nudge processes on one
	// database do not both read the same records again.
	byProject := map[string][]storage.Trigger{}
	for _, t := range pending {
		err := e.Store.ClaimTrigger(ctx, t.ID, e.now(), triggerLease)
		if errors.Is(err, storage.ErrNotClaimable) || errors.Is(err, storage.ErrWrongState) {
			continue
		}
		if err != nil {
			return 0, err
		}
		byProject[t.Project] = append(byProject[t.Project], t)
	}
	enqueued := 0
	for project, ts := range byProject {
		n, err := e.planSaved(ctx, project, ts)
		now := e.now()
		if err != nil {
			e.log().WithError(err).WithField("project", project).Warn("could not act on saved records; will retry")
			for _, t := range ts {
				if rerr := e.Store.RetryTrigger(ctx, t.ID, err.Error(), now.Add(backoff(t.Attempts+1))); rerr != nil {
					return enqueued, rerr
				}
			}
			continue
		}
		enqueued += n
		for _, t := range ts {
			if err := e.Store.CompleteTrigger(ctx, t.ID, now); err != nil {
				return enqueued, err
			}
		}
	}
	if enqueued > 0 {
		if _, err := e.Dispatch(ctx); err != nil {
			return enqueued, err
		}
	}
	return enqueued, nil
}

func (e *Engine) planSaved(ctx context.Context, project string, ts []storage.Trigger) (int, error) {
	ruleSet := e.onSaveRules(project)
	if len(ruleSet) == 0 {
		return 0, nil
	}
	ids := make([]string, 0, len(ts))
	records := map[string]bool{}
	for _, t := range ts {
		if !records[t.Record] {
			records[t.Record] = true
			ids = append(ids, t.Record)
		}
	}
	snap, err := e.exportSome(ctx, project, ids)
	if err != nil {
		return 0, err
	}
	plan, err := e.Plan(ctx, map[string]*Snapshot{project: snap}, e.now(), PlanOptions{Rules: ruleSet, Records: records})
	if err != nil {
		return 0, err
	}
	e.logPlan(ctx, plan, 0)
	return e.Store.EnqueueBatch(ctx, plan.Messages())
}

// PruneTriggers deletes the Data Entry Triggers handled more than
// TriggerRetention ago, so that the queue does not grow without end (a
// flood of triggers included); pending ones are kept.
func (e *Engine) PruneTriggers(ctx context.Context) (int64, error) {
	n, err := e.Store.PruneTriggers(ctx, e.now().Add(-TriggerRetention))
	if n > 0 {
		e.log().WithFields(map[string]any{"triggers": n, "retention": TriggerRetention.String()}).Info("pruned handled Data Entry Triggers")
	}
	return n, err
}

// wake nudges a worker without blocking: one pending wake-up is enough.
func (e *Engine) wake(ch chan struct{}) {
	if ch == nil {
		return
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}

// kickReport runs the write-back job now (in `nudge serve`).
func (e *Engine) kickReport() {
	e.mu.Lock()
	job := e.reportJob
	e.mu.Unlock()
	if job != nil && e.reportDirty.CompareAndSwap(false, true) {
		if err := job.RunNow(); err != nil {
			e.log().WithError(err).Debug("write-back not started early; it runs on its interval")
		}
	}
}

// worker runs fn whenever it is woken, and every `every` in any case, until
// ctx ends.
func (e *Engine) worker(ctx context.Context, name string, ch chan struct{}, every time.Duration, fn func(context.Context) error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			e.log().WithError(err).WithField("worker", name).Warn("worker pass failed")
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-t.C:
		}
	}
}
