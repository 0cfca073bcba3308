package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/nudge-study/nudge/storage"
)

// RuleSummary counts one rule's decisions in a pass.
type RuleSummary struct {
	Name     string `json:"name"`
	Channel  string `json:"channel"`
	Selected int    `json:"selected"`
	Planned  int    `json:"planned"`
	Deferred int    `json:"deferred"`
	Skipped  int    `json:"skipped"`
	Done     int    `json:"already_sent"`
	Excluded int    `json:"excluded"`
}

// RunResult is what one pass did.
type RunResult struct {
	RunID int64
	// Plan is the pass's plan: the decisions that skipped a participant,
	// with the reasons; the others are only counted (see Plan.Summaries).
	Plan     *Plan
	Enqueued int
	Dispatch DispatchStats
	Track    TrackStats
	Report   ReportStats
	// Held says what held sending back when the pass ended: the kill
	// switch and paused senders, in words.
	Held []string
}

// Problems lists what kept the pass from sending all it should have: an
// account, sender or connection problem met while sending, and every pause
// still in force. `nudge run` exits with ExitHeld when there are any.
func (r *RunResult) Problems() []string {
	out := append([]string(nil), r.Dispatch.Problems...)
	for _, h := range r.Held {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// Summaries counts the plan's decisions per rule, in rule order, with
// those a pass only counted (see RunResult.Plan).
func (p *Plan) Summaries(e *Engine) []RuleSummary {
	idx := make(map[string]*RuleSummary)
	var out []*RuleSummary
	for _, r := range e.study().Rules {
		s := &RuleSummary{Name: r.Name, Channel: r.Channel}
		if c, ok := p.counted[r.Name]; ok {
			*s = *c
		}
		idx[r.Name] = s
		out = append(out, s)
	}
	for i := range p.Decisions {
		if s := idx[p.Decisions[i].Rule]; s != nil {
			s.add(&p.Decisions[i])
		}
	}
	res := make([]RuleSummary, len(out))
	for i, s := range out {
		res[i] = *s
	}
	return res
}

// add counts decision d.
func (s *RuleSummary) add(d *Decision) {
	if d.Selected {
		s.Selected++
	}
	switch d.Outcome {
	case Send:
		s.Planned++
	case Deferred:
		s.Deferred++
	case Skipped:
		s.Skipped++
	case Done:
		s.Done++
	case Excluded:
		s.Excluded++
	}
}

// keep adds a decision of a pass to the plan: a skipped one is kept, with
// the reason the pass logs; any other is only counted, for Summaries.
func (p *Plan) keep(e *Engine, d *Decision) {
	if d.Outcome == Skipped {
		p.Decisions = append(p.Decisions, *d)
		if m := d.Message; m != nil { // the planner's, reused (see PlanEach)
			c := *m
			p.Decisions[len(p.Decisions)-1].Message = &c
		}
		return
	}
	p.summary(e, d.Rule).add(d)
}

// countExcluded counts n decisions of rule that its condition is false
// for, as keep counts them (see PlanOptions.CountExcluded).
func (p *Plan) countExcluded(e *Engine, rule string, n int) {
	p.summary(e, rule).Excluded += n
}

// summary is the count of rule's decisions the plan did not keep.
func (p *Plan) summary(e *Engine, rule string) *RuleSummary {
	s := p.counted[rule]
	if s == nil {
		if p.counted == nil {
			p.counted = make(map[string]*RuleSummary)
		}
		s = &RuleSummary{Name: rule}
		if r := e.study().Rule(rule); r != nil {
			s.Channel = r.Channel
		}
		p.counted[rule] = s
	}
	return s
}

// enqueueBatch is how many messages a pass enqueues at a time while it
// plans.
const enqueueBatch = 500

// Run is one full pass — export, select, plan, enqueue, dispatch, track,
// report — as `nudge run` does it from cron. Prepare must have run.
func (e *Engine) Run(ctx context.Context, opt PlanOptions) (*RunResult, error) {
	res := &RunResult{}
	start := e.now()
	id, err := e.Store.StartRun(ctx, "run", start)
	if err != nil {
		return nil, err
	}
	res.RunID = id
	err = e.pass(ctx, res, opt)
	outcome := "ok"
	if err != nil {
		outcome = "failed: " + err.Error()
	}
	// Recorded even when ctx ended (a shutdown, a lost lease).
	if ferr := e.Store.FinishRun(context.WithoutCancel(ctx), id, e.now(), outcome, res.summary(e)); ferr != nil && err == nil {
		err = ferr
	}
	e.afterPass(ctx, res, outcome)
	return res, err
}

func (e *Engine) pass(ctx context.Context, res *RunResult, opt PlanOptions) error {
	e.progress(Progress{Stage: "export"})
	snaps, err := e.Export(ctx)
	if err != nil {
		return err
	}
	now := e.now()
	e.progress(Progress{Stage: "plan"})
	if err := e.planAndEnqueue(ctx, snaps, now, opt, res); err != nil {
		return err
	}
	e.logPlan(ctx, res.Plan, res.Enqueued)
	if res.Dispatch, err = e.Dispatch(ctx); err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	if res.Track, err = e.Track(ctx); err != nil {
		return fmt.Errorf("track: %w", err)
	}
	if res.Report, err = e.Report(ctx); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if res.Held, err = e.Held(ctx); err != nil {
		return err
	}
	for _, p := range res.Problems() {
		e.log().WithField("problem", p).Error("sending was held back")
	}
	return nil
}

// planAndEnqueue plans snaps at now as a pass does and enqueues the
// messages planned, for run res: res.Plan gets the plan (its skipped
// decisions kept, the others counted) and res.Enqueued the messages new
// to the outbox.
func (e *Engine) planAndEnqueue(ctx context.Context, snaps map[string]*Snapshot, now time.Time, opt PlanOptions, res *RunResult) error {
	// The messages are enqueued a batch at a time while planning goes on,
	// so that a pass over many records does not hold them all. Each was
	// decided in full: when planning fails later, those enqueued stand.
	plan := &Plan{}
	// The batch holds copies: the planner reuses its messages.
	batch := make([]storage.Message, 0, enqueueBatch+8)
	ptrs := make([]*storage.Message, 0, cap(batch))
	enqueue := func() error {
		ptrs = ptrs[:0]
		for i := range batch {
			ptrs = append(ptrs, &batch[i])
		}
		n, err := e.Store.EnqueueBatch(ctx, ptrs)
		res.Enqueued += n
		clear(batch)
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
		return nil
	}
	// Excluded decisions are only counted (see keep), and need no reason.
	opt.Unexplained = true
	opt.CountExcluded = func(rule string, n int) { plan.countExcluded(e, rule, n) }
	err := e.PlanEach(ctx, snaps, now, opt, func(d *Decision) error {
		plan.keep(e, d)
		if d.Message != nil {
			batch = append(batch, *d.Message)
			batch[len(batch)-1].RunID = res.RunID
		}
		for _, m := range d.More {
			batch = append(batch, *m)
			batch[len(batch)-1].RunID = res.RunID
		}
		if len(batch) < enqueueBatch {
			return nil
		}
		return enqueue()
	})
	if err == nil && len(batch) > 0 {
		err = enqueue()
	}
	if err != nil {
		return err
	}
	res.Plan = plan
	return nil
}

func (e *Engine) logPlan(ctx context.Context, p *Plan, enqueued int) {
	for _, s := range p.Summaries(e) {
		e.log().WithFields(map[string]any{"rule": s.Name, "channel": s.Channel, "selected": s.Selected,
			"planned": s.Planned, "deferred": s.Deferred, "skipped": s.Skipped, "already_sent": s.Done,
			"excluded": s.Excluded}).Info("planned")
	}
	e.logSkips(ctx, p)
	e.log().WithField("messages", enqueued).Info("enqueued")
}

// logSkips warns about each skipped participant once while the skip lasts
// (the store remembers which were warned, see storage.FirstSkips); a skip
// warned about on an earlier pass is logged at debug, so that a pass run
// from cron every 15 minutes does not mail the same warning each time.
// When the store cannot tell, every skip is warned about.
func (e *Engine) logSkips(ctx context.Context, p *Plan) {
	var skips []Decision
	var digests []string
	var logged []storage.Skip
	for _, d := range p.Decisions {
		if d.Outcome == Skipped {
			dg := skipDigest(d)
			skips = append(skips, d)
			digests = append(digests, dg)
			logged = append(logged, storage.Skip{Digest: dg, Project: d.Project, Rule: d.Rule, Record: d.Record,
				Event: d.Event, Instance: d.Instance, Reason: d.Reason})
		}
	}
	if len(skips) == 0 {
		return
	}
	fresh, err := e.Store.FirstSkips(ctx, logged, e.now())
	if err != nil {
		e.log().WithError(err).Debug("could not tell which skips were warned about before; warning about all")
	}
	known := 0
	for i, d := range skips {
		log := e.log().WithFields(map[string]any{"rule": d.Rule, "project": d.Project, "record": d.Record,
			"event": d.Event, "instance": d.Instance, "reason": d.Reason})
		if err == nil && !fresh[digests[i]] {
			known++
			log.Debug("participant skipped (warned about before)")
			continue
		}
		log.Warn("participant skipped")
	}
	if known > 0 {
		e.log().WithField("participants", known).Info("participants still skipped for the reasons warned about before (nudge preview lists them)")
	}
}

// skipDigest names one skip: the rule, the record's occurrence and the
// reason. A new reason for the same participant is a new skip.
func skipDigest(d Decision) string {
	h := sha256.New()
	for _, s := range []string{d.Rule, d.Project, d.Record, d.Event, strconv.Itoa(d.Instance), d.Reason} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (r *RunResult) summary(e *Engine) map[string]any {
	out := map[string]any{"enqueued": r.Enqueued, "dispatch": r.Dispatch, "track": r.Track, "report": r.Report}
	if p := r.Problems(); len(p) > 0 {
		out["held_back"] = p
	}
	if r.Plan != nil {
		s := r.Plan.Summaries(e)
		sort.SliceStable(s, func(i, j int) bool { return s[i].Name < s[j].Name })
		out["rules"] = s
	}
	return out
}
