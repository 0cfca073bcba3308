package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/nudge-study/nudge/engine/ui"
	"github.com/nudge-study/nudge/engine/webhook"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// Defaults of ServeOptions, and how long handled triggers are kept.
const (
	DefaultRetryMin  = 2 * time.Second
	DefaultRetryMax  = 5 * time.Minute
	TriggerRetention = 7 * 24 * time.Hour
)

// ServeOptions tune Serve.
type ServeOptions struct {
	// Owner names this process in the database lock (default
	// host:pid:n:random).
	Owner string
	// AuthToken is the Twilio auth token webhook signatures are checked with.
	AuthToken string
	// TriggerSecret is the secret REDCap's Data Entry Trigger URL carries
	// (?secret=…); "" refuses every trigger.
	TriggerSecret string
	// RetryMin and RetryMax bound the wait between attempts to reach REDCap
	// while catching up (0 = DefaultRetryMin and DefaultRetryMax).
	RetryMin, RetryMax time.Duration
	// Admin, when set, is where /healthz and /metrics are served
	// (server.admin_listen); the webhook listener then does not serve them.
	Admin net.Listener
	// Reload, when set, asks Serve to read the study again (`nudge serve`
	// sends on it at SIGHUP): the rules, replies and templates, checked as
	// at the start; a study that fails the checks, or a nudge.yaml changed
	// where only a restart applies, is logged and the running study kept.
	Reload <-chan struct{}
	// UISessionKey signs the web page's session cookies
	// (server.ui.session_key_env); nil = a random key per process.
	UISessionKey []byte
}

// serveState is what Serve knows about catching up with REDCap; /healthz
// reports it.
type serveState struct {
	prepared bool        // Prepare has succeeded (the catch-up goroutine's own)
	ready    atomic.Bool // caught up: the scheduler runs
	mu       sync.Mutex
	problem  string    // plain words for /healthz while not ready
	since    time.Time // when Serve started: no pass is overdue before max_pass_age has passed since
}

func (st *serveState) setProblem(p string) {
	st.mu.Lock()
	st.problem = p
	st.mu.Unlock()
}

func (st *serveState) getProblem() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.problem
}

// Problems /healthz reports while Serve catches up with REDCap.
const (
	problemWaiting   = "nudge has not reached REDCap since it started: replies, opt-outs and Data Entry Triggers are recorded; texts wait until REDCap answers"
	problemDictCheck = "the rules do not match REDCap's data dictionary: nothing is sent until they do; nudge's log lists the problems"
	problemLastPass  = "the last pass failed; nudge's log says why"
)

// Serve runs nudge as a daemon until ctx ends: the webhook server on l, the
// rules on their schedules (gocron, study time zone, singleton jobs), the
// status poller, the write-back worker and the Data Entry Trigger worker.
//
// The webhooks are served at once, whether or not REDCap answers: inbound
// STOP, START and HELP need only the database, and Data Entry Triggers are
// queued. Meanwhile Serve catches up with REDCap in the background, retrying
// with backoff: it runs Prepare (unless it has run) and a first export, and
// only then starts the scheduler and the trigger worker. On shutdown the
// server finishes in-flight requests, running jobs finish their current
// send, and then Serve returns.
func (e *Engine) Serve(ctx context.Context, l net.Listener, opt ServeOptions) error {
	if opt.Owner != "" {
		e.Owner = opt.Owner
	}
	opt.Owner = e.owner()
	if opt.RetryMin <= 0 {
		opt.RetryMin = DefaultRetryMin
	}
	if opt.RetryMax < opt.RetryMin {
		opt.RetryMax = max(DefaultRetryMax, opt.RetryMin)
	}
	e.triggerWake = make(chan struct{}, 1)
	cfg := e.study().Config
	st := &serveState{prepared: len(e.Dicts) > 0, problem: problemWaiting, since: e.now()}
	e.serving.Store(st)

	page, err := e.webPage(opt)
	if err != nil {
		return err
	}
	srv, err := webhook.New(webhook.Config{PublicURL: cfg.Server.PublicURL, AuthToken: opt.AuthToken,
		TriggerSecret: opt.TriggerSecret, Log: e.log(), Metrics: e.Metrics, UI: page,
		TrustedProxies: cfg.Server.TrustedProxies, SeparateAdmin: opt.Admin != nil}, hooks{e, st})
	if err != nil {
		return err
	}
	if opt.TriggerSecret == "" {
		e.log().Info("no Data Entry Trigger secret (server.trigger_secret_env): /redcap/trigger refuses every trigger")
	}
	jobCtx, stopJobs := context.WithCancel(ctx)
	defer stopJobs()
	sched, report, rj, err := e.schedule(jobCtx, opt.Owner)
	if err != nil {
		return err
	}
	rj.started = st.ready.Load
	background := make(chan struct{})
	go func() {
		defer close(background)
		e.catchUp(jobCtx, st, opt)
		if jobCtx.Err() != nil {
			return
		}
		e.startJobs(jobCtx, sched, report)
	}()
	reloads := make(chan struct{})
	go func() {
		defer close(reloads)
		for {
			select {
			case <-jobCtx.Done():
				return
			case <-opt.Reload:
				e.logReload(e.reload(jobCtx, rj))
			}
		}
	}()

	for _, w := range e.Store.Warnings() {
		e.log().Warn("database: " + w)
	}
	adminErr := make(chan error, 1)
	if opt.Admin != nil {
		e.log().WithField("admin_listen", opt.Admin.Addr().String()).Info("nudge serve: /healthz and /metrics on the admin address only")
		go func() {
			err := srv.ServeAdmin(ctx, opt.Admin)
			if err != nil && ctx.Err() == nil {
				e.log().WithError(err).Error("nudge serve: the admin address stopped: /healthz and /metrics are not served")
			}
			adminErr <- err
		}()
	} else {
		adminErr <- nil
	}
	e.log().WithFields(map[string]any{"listen": l.Addr().String(), "public_url": cfg.Server.PublicURL}).Info("nudge serve: listening")
	serveErr := srv.Serve(ctx, l) // returns once ctx ends and in-flight requests are done
	serveErr = errors.Join(serveErr, <-adminErr)

	stopJobs()
	<-background
	<-reloads
	shutErr := sched.Shutdown()
	e.mu.Lock()
	e.reportJob = nil
	e.mu.Unlock()
	e.log().Info("nudge serve: stopped")
	return errors.Join(serveErr, shutErr)
}

// webPage builds the coordinator web page (server.ui), or returns nil when
// the config has none. It is served on the public listener, under /ui/,
// since coordinators reach nudge where Twilio and REDCap do.
func (e *Engine) webPage(opt ServeOptions) (http.Handler, error) {
	cfg := e.study().Config
	uc := cfg.Server.UI
	if uc == nil {
		return nil, nil
	}
	var projects []string
	for _, p := range cfg.Projects {
		projects = append(projects, p.Name)
	}
	page, err := ui.New(ui.Config{Store: e.Store, Users: uc.Users, TrustedHeader: uc.TrustedHeader, TrustedProxies: cfg.Server.TrustedProxies,
		SessionKey: opt.UISessionKey, Secure: strings.HasPrefix(cfg.Server.PublicURL, "https://"),
		Location: cfg.Location, Held: e.Held, Projects: projects, Mask: Redact, Log: e.log()})
	if err != nil {
		return nil, fmt.Errorf("%s: server.ui: %w", uc.Pos, err)
	}
	e.log().WithField("users", len(uc.Users)).Info("nudge serve: the coordinator web page is at " + strings.TrimRight(cfg.Server.PublicURL, "/") + ui.Prefix)
	return page, nil
}

// catchUp runs Prepare (once) and a full export, which fills the record
// cache and the participant index, retrying with jittered exponential
// backoff until both succeed or ctx ends.
func (e *Engine) catchUp(ctx context.Context, st *serveState, opt ServeOptions) {
	wait := opt.RetryMin
	for {
		err := e.reachREDCap(ctx, st)
		if err == nil {
			st.ready.Store(true)
			return
		}
		if ctx.Err() != nil {
			return
		}
		d := wait/2 + rand.N(wait/2+1)
		var errs rules.Errors
		if errors.As(err, &errs) {
			st.setProblem(problemDictCheck)
			for _, pe := range errs {
				e.log().Error(pe.Error())
			}
			e.log().WithField("retry_in", d.String()).Error("the rules do not match REDCap's data dictionary (above): nothing is sent; fix the rules or REDCap, nudge checks again")
		} else {
			st.setProblem(problemWaiting)
			e.log().WithError(err).WithField("retry_in", d.String()).Warn("cannot reach REDCap: replies and opt-outs are still recorded; texts wait; will try again")
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, opt.RetryMax)
	}
}

// reachREDCap is one attempt at catching up.
func (e *Engine) reachREDCap(ctx context.Context, st *serveState) error {
	e.studyMu.RLock()
	defer e.studyMu.RUnlock()
	if !st.prepared {
		if err := e.Prepare(ctx); err != nil {
			return err
		}
		st.prepared = true
	}
	_, err := e.Export(ctx)
	return err
}

// schedule builds the scheduler and its jobs without starting them; it
// returns the write-back job too, which inbound texts and status callbacks
// run early (kickReport) once it is started, and the rule jobs, which a
// reload rebuilds. Every job works holding studyMu for reading.
func (e *Engine) schedule(jobCtx context.Context, owner string) (gocron.Scheduler, gocron.Job, *ruleJobs, error) {
	cfg := e.study().Config
	sched, err := gocron.NewScheduler(gocron.WithLocation(cfg.Location), gocron.WithStopTimeout(time.Minute))
	if err != nil {
		return nil, nil, nil, err
	}
	newJob := func(name string, def gocron.JobDefinition, fn func(context.Context) error, more ...gocron.JobOption) (gocron.Job, error) {
		opts := append([]gocron.JobOption{gocron.WithName(name), gocron.WithContext(jobCtx),
			gocron.WithSingletonMode(gocron.LimitModeReschedule)}, more...)
		return sched.NewJob(def, gocron.NewTask(func(ctx context.Context) {
			e.studyMu.RLock()
			defer e.studyMu.RUnlock()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				e.log().WithError(err).WithField("job", name).Warn("scheduled job failed")
			}
		}), opts...)
	}
	add := func(name string, def gocron.JobDefinition, fn func(context.Context) error, more ...gocron.JobOption) error {
		_, err := newJob(name, def, fn, more...)
		return err
	}
	fail := func(err error) (gocron.Scheduler, gocron.Job, *ruleJobs, error) {
		sched.Shutdown()
		return nil, nil, nil, err
	}
	now := gocron.WithStartAt(gocron.WithStartImmediately())
	rj := &ruleJobs{e: e, sched: sched, newJob: newJob, owner: owner, jobs: make(map[string]gocron.Job)}
	if err := rj.add(e.study()); err != nil {
		return fail(err)
	}
	if err := add("status poller", gocron.DurationJob(cfg.Server.PollEvery), func(ctx context.Context) error {
		_, err := e.Track(ctx)
		return err
	}, now); err != nil {
		return fail(err)
	}
	// Messages held for the allowed hours or a retry become due by
	// themselves; a sweep sends them.
	if err := add("dispatch sweep", gocron.DurationJob(30*time.Second), func(ctx context.Context) error {
		_, err := e.Dispatch(ctx)
		return err
	}); err != nil {
		return fail(err)
	}
	if err := add("prune triggers", gocron.DurationJob(time.Hour), func(ctx context.Context) error {
		_, err := e.PruneTriggers(ctx)
		return err
	}, now); err != nil {
		return fail(err)
	}
	// The daily digest to the study team, at reports.daily_at.
	if rc := cfg.Reports; rc != nil && rc.When == rules.ReportDaily && len(rc.To) > 0 {
		at := gocron.NewAtTimes(gocron.NewAtTime(uint(rc.DailyAt/60), uint(rc.DailyAt%60), 0))
		if err := add("daily report", gocron.DailyJob(1, at), e.DailyReport); err != nil {
			return fail(err)
		}
	}
	// The write-back queue is a job too. An inbound text or a status
	// callback runs it at once: the first kick after a run has started
	// queues exactly one more run (singleton, wait mode), so no change
	// waits for the next interval and a burst of kicks costs one run.
	report, err := sched.NewJob(gocron.DurationJob(cfg.Server.WritebackEvery), gocron.NewTask(func(ctx context.Context) {
		e.studyMu.RLock()
		defer e.studyMu.RUnlock()
		e.reportDirty.Store(false)
		if _, err := e.Report(ctx); err != nil && ctx.Err() == nil {
			e.log().WithError(err).Warn("write-back to REDCap failed; will retry")
		}
	}), gocron.WithName("write-back"), gocron.WithContext(jobCtx), gocron.WithSingletonMode(gocron.LimitModeWait))
	if err != nil {
		return fail(err)
	}
	e.log().WithFields(map[string]any{"rule_jobs": byJob(e.study()), "run_every": cfg.Server.RunEvery.String()}).Debug("scheduler ready")
	return sched, report, rj, nil
}

// logReload says what a reload did: the rules in force, or why the old
// ones still are, one FILE:LINE:COL line per problem.
func (e *Engine) logReload(err error) {
	var errs rules.Errors
	switch {
	case err == nil:
		s := e.study()
		e.log().WithFields(map[string]any{"rules": len(s.Rules), "replies": len(s.Replies), "rule_jobs": byJob(s)}).
			Info("reload: the rules and templates were read again and are in force")
	case errors.As(err, &errs):
		for _, pe := range errs {
			e.log().Error("reload: " + pe.Error())
		}
		e.log().WithField("problems", len(errs)).Error("reload refused: the study has problems (above); the rules in force are kept; fix them (nudge check) and send SIGHUP again")
	default:
		e.log().WithError(err).Error("reload refused: the rules in force are kept")
	}
}

// startJobs starts the scheduler once nudge has caught up with REDCap,
// flushes the write-backs queued meanwhile (opt-outs received while REDCap
// was away), and works Data Entry Triggers until ctx ends. Triggers are
// latency-bound: a worker of their own, woken by each trigger.
func (e *Engine) startJobs(ctx context.Context, sched gocron.Scheduler, report gocron.Job) {
	sched.Start()
	e.mu.Lock()
	e.reportJob = report
	e.mu.Unlock()
	e.kickReport()
	e.log().Info("caught up with REDCap: scheduler started")
	e.worker(ctx, "data entry trigger", e.triggerWake, 5*time.Second, func(ctx context.Context) error {
		e.studyMu.RLock()
		defer e.studyMu.RUnlock()
		_, err := e.ProcessTriggers(ctx)
		return err
	})
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

// RunLocked is Run under the database-wide pass lock. The lease is short
// (leaseTTL) and renewed while the pass runs; a lease left by a process
// on this host that is no longer running (killed, crashed) is taken over
// at once. If the lease is lost meanwhile, the pass stops before its next
// send and returns ErrLeaseLost.
func (e *Engine) RunLocked(ctx context.Context, owner string, opt PlanOptions) (*RunResult, error) {
	ok, err := e.Store.TryLock(ctx, "pass", owner, leaseTTL, e.now())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, e.busyErr(ctx)
	}
	lctx, stop := e.holdLease(ctx, "pass", owner)
	defer func() {
		stop()
		if err := e.Store.Unlock(context.WithoutCancel(ctx), "pass", owner); err != nil && !errors.Is(err, storage.ErrLockNotHeld) {
			e.log().WithError(err).Warn("releasing the pass lock")
		}
	}()
	res, err := e.Run(lctx, opt)
	return res, leaseErr(lctx, err)
}

// hooks adapts the engine to the webhook server.
type hooks struct {
	e  *Engine
	st *serveState
}

func (h hooks) Inbound(ctx context.Context, in webhook.Inbound) (string, error) {
	return h.e.HandleInbound(ctx, InboundSMS{MessageSID: in.MessageSID, From: in.From, To: in.To, Body: in.Body,
		OptOutType: in.OptOutType})
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
