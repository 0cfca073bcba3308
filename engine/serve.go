package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/nudge-study/nudge/engine/webhook"
	"github.com/nudge-study/nudge/storage"
)

// passLease is how long a pass may hold the database-wide lock before
// another process may take it over (a crashed holder never releases it).
const passLease = 15 * time.Minute

// ServeOptions tune Serve.
type ServeOptions struct {
	// Owner names this process in the database lock (default host:pid).
	Owner string
	// AuthToken is the Twilio auth token webhook signatures are checked with.
	AuthToken string
}

// Serve runs nudge as a daemon until ctx ends: the webhook server on l, the
// rules on their schedules (gocron, study time zone, singleton jobs), the
// status poller, the write-back worker and the Data Entry Trigger worker.
// On shutdown the server finishes in-flight requests, running jobs finish
// their current send, and then Serve returns. Prepare must have run.
func (e *Engine) Serve(ctx context.Context, l net.Listener, opt ServeOptions) error {
	if opt.Owner != "" {
		e.Owner = opt.Owner
	}
	opt.Owner = e.owner()
	e.triggerWake = make(chan struct{}, 1)
	cfg := e.Study.Config

	// Fill the record cache and the participant index before the first
	// inbound text arrives.
	if _, err := e.Export(ctx); err != nil {
		return err
	}

	sched, err := gocron.NewScheduler(gocron.WithLocation(cfg.Location), gocron.WithStopTimeout(time.Minute))
	if err != nil {
		return err
	}
	jobCtx, stopJobs := context.WithCancel(ctx)
	defer stopJobs()
	add := func(name string, def gocron.JobDefinition, fn func(context.Context) error, more ...gocron.JobOption) error {
		opts := append([]gocron.JobOption{gocron.WithName(name), gocron.WithContext(jobCtx),
			gocron.WithSingletonMode(gocron.LimitModeReschedule)}, more...)
		_, err := sched.NewJob(def, gocron.NewTask(func(ctx context.Context) {
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				e.log().WithError(err).WithField("job", name).Warn("scheduled job failed")
			}
		}), opts...)
		return err
	}
	now := gocron.WithStartAt(gocron.WithStartImmediately())
	var cronRules, everyRules []string
	for _, r := range e.Study.Rules {
		switch {
		case !r.Enabled || r.OnSave:
		case r.Schedule != "":
			cronRules = append(cronRules, r.Name)
			rule := r.Name
			if err := add("rule "+rule, gocron.CronJob(r.Schedule, false), e.lockedPass(opt.Owner, rule)); err != nil {
				return fmt.Errorf("rule %s: schedule %q: %w", rule, r.Schedule, err)
			}
		default:
			everyRules = append(everyRules, r.Name)
		}
	}
	if len(everyRules) > 0 && cfg.Server.RunEvery > 0 {
		if err := add("rules without a schedule", gocron.DurationJob(cfg.Server.RunEvery), e.lockedPass(opt.Owner, everyRules...), now); err != nil {
			return err
		}
	}
	if err := add("status poller", gocron.DurationJob(cfg.Server.PollEvery), func(ctx context.Context) error {
		_, err := e.Track(ctx)
		return err
	}, now); err != nil {
		return err
	}
	// Messages held for the allowed hours or a retry become due by
	// themselves; a sweep sends them.
	if err := add("dispatch sweep", gocron.DurationJob(30*time.Second), func(ctx context.Context) error {
		_, err := e.Dispatch(ctx)
		return err
	}); err != nil {
		return err
	}
	// The write-back queue is a job too. An inbound text or a status
	// callback runs it at once: the first kick after a run has started
	// queues exactly one more run (singleton, wait mode), so no change
	// waits for the next interval and a burst of kicks costs one run.
	report, err := sched.NewJob(gocron.DurationJob(cfg.Server.WritebackEvery), gocron.NewTask(func(ctx context.Context) {
		e.reportDirty.Store(false)
		if _, err := e.Report(ctx); err != nil && ctx.Err() == nil {
			e.log().WithError(err).Warn("write-back to REDCap failed; will retry")
		}
	}), gocron.WithName("write-back"), gocron.WithContext(jobCtx), gocron.WithSingletonMode(gocron.LimitModeWait))
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.reportJob = report
	e.mu.Unlock()

	// Data Entry Triggers are latency-bound: a worker of their own, woken
	// by each trigger.
	triggers := make(chan struct{})
	go func() {
		e.worker(jobCtx, "data entry trigger", e.triggerWake, 5*time.Second, func(ctx context.Context) error {
			_, err := e.ProcessTriggers(ctx)
			return err
		})
		close(triggers)
	}()
	sched.Start()
	e.log().WithFields(map[string]any{"scheduled_rules": cronRules, "rules_every_run": everyRules,
		"run_every": cfg.Server.RunEvery.String()}).Info("scheduler started")

	srv, err := webhook.New(webhook.Config{PublicURL: cfg.Server.PublicURL, AuthToken: opt.AuthToken,
		Log: e.log(), Metrics: e.Metrics}, hooks{e})
	if err != nil {
		return err
	}
	e.log().WithFields(map[string]any{"listen": l.Addr().String(), "public_url": cfg.Server.PublicURL}).Info("nudge serve: listening")
	serveErr := srv.Serve(ctx, l) // returns once ctx ends and in-flight requests are done

	stopJobs()
	shutErr := sched.Shutdown()
	<-triggers
	e.mu.Lock()
	e.reportJob = nil
	e.mu.Unlock()
	e.log().Info("nudge serve: stopped")
	return errors.Join(serveErr, shutErr)
}

// lockedPass returns a job that makes a pass over the named rules while
// holding the database-wide lease, so two `nudge serve` processes (or a
// `nudge run` from cron) on one database never make the same pass at once.
// Sends themselves are safe without it: every row is claimed before it is
// sent.
func (e *Engine) lockedPass(owner string, rules ...string) func(context.Context) error {
	only := map[string]bool{}
	for _, r := range rules {
		only[r] = true
	}
	return func(ctx context.Context) error {
		_, err := e.RunLocked(ctx, owner, PlanOptions{Rules: only})
		if errors.Is(err, ErrBusy) {
			e.log().WithField("rules", rules).Info("another nudge is making a pass; skipped")
			return nil
		}
		return err
	}
}

// ErrBusy means another process holds the pass lock.
var ErrBusy = errors.New("engine: another nudge process is making a pass on this database")

// RunLocked is Run under the database-wide pass lock.
func (e *Engine) RunLocked(ctx context.Context, owner string, opt PlanOptions) (*RunResult, error) {
	ok, err := e.Store.TryLock(ctx, "pass", owner, passLease, e.now())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrBusy
	}
	defer func() {
		if err := e.Store.Unlock(context.WithoutCancel(ctx), "pass", owner); err != nil && !errors.Is(err, storage.ErrLockNotHeld) {
			e.log().WithError(err).Warn("releasing the pass lock")
		}
	}()
	return e.Run(ctx, opt)
}

// hooks adapts the engine to the webhook server.
type hooks struct{ e *Engine }

func (h hooks) Inbound(ctx context.Context, in webhook.Inbound) (string, error) {
	return h.e.HandleInbound(ctx, InboundSMS{MessageSID: in.MessageSID, From: in.From, To: in.To, Body: in.Body})
}

func (h hooks) StatusCallback(ctx context.Context, cb webhook.StatusCallback) error {
	return h.e.HandleStatus(ctx, cb.MessageSID, cb.Status, cb.ErrorCode)
}

func (h hooks) Trigger(ctx context.Context, t webhook.Trigger) error {
	err := h.e.EnqueueTrigger(ctx, SavedRecord{RedcapURL: t.RedcapURL, ProjectID: t.ProjectID, Record: t.Record,
		Event: t.Event, Instrument: t.Instrument, Instance: t.RepeatInstance})
	if errors.Is(err, ErrUnknownProject) {
		return fmt.Errorf("%w: %v", webhook.ErrUnknownProject, err)
	}
	return err
}

func (h hooks) Health(ctx context.Context) (webhook.Health, error) {
	e := h.e
	hl := webhook.Health{OK: true, Database: "ok", Queues: map[string]int{}}
	if err := e.Store.Ping(ctx); err != nil {
		hl.OK, hl.Database = false, "unreachable: "+err.Error()
		return hl, nil
	}
	if run, err := e.Store.LastRun(ctx); err == nil {
		hl.LastRun = map[string]any{"id": run.ID, "started_at": run.StartedAt, "finished_at": run.FinishedAt, "outcome": run.Outcome}
	}
	d, err := e.Store.Depths(ctx)
	if err != nil {
		return hl, err
	}
	hl.Queues = map[string]int{"planned": d.Planned, "sending": d.Sending, "tracking": d.Tracking,
		"writebacks": d.WriteBacks, "failed_writebacks": d.FailedWriteBacks, "triggers": d.Triggers}
	return hl, nil
}
