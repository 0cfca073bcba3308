package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/nudge-study/nudge/engine/webhook"
	"github.com/nudge-study/nudge/storage"
)

// Health reports in plain words; the errors behind it go to the log only
// (they name files, hosts and SQLite's or REDCap's messages). nudge is
// unhealthy (503) when the database cannot be read, the last pass failed,
// a pass is stuck or overdue, sending is paused, a due message waits too
// long or write-backs fail: the limits are server.health in nudge.yaml.
func (h hooks) Health(ctx context.Context) (webhook.Health, error) {
	e := h.e
	now := e.now()
	lim := e.study().Config.Server.Health
	hl := webhook.Health{OK: true, Status: webhook.StatusHealthy, Database: "ok", REDCap: "ok"}
	degrade := func(problem string) {
		if hl.Status == webhook.StatusHealthy {
			hl.Status = webhook.StatusDegraded
		}
		hl.Problems = append(hl.Problems, problem)
	}
	fail := func(problem string) {
		hl.OK, hl.Status = false, webhook.StatusUnhealthy
		hl.Problems = append(hl.Problems, problem)
	}
	unreadable := func(what string, err error) (webhook.Health, error) {
		e.log().WithError(err).Warn("health: reading " + what)
		return webhook.Health{OK: false, Status: webhook.StatusUnhealthy, Database: "unreachable",
			Problems: []string{"the database answers but " + what + " cannot be read; nudge's log says why"}}, nil
	}
	if err := e.Store.Ping(ctx); err != nil {
		e.log().WithError(err).Warn("health: the database cannot be reached")
		return webhook.Health{OK: false, Status: webhook.StatusUnhealthy, Database: "unreachable",
			Problems: []string{"the database cannot be reached: nudge can record nothing; its log says why"}}, nil
	}
	if h.st != nil && !h.st.ready.Load() {
		hl.REDCap = "waiting"
		degrade(h.st.getProblem())
	}
	w, err := e.Store.Watch(ctx, now)
	if err != nil {
		return unreadable("its health figures", err)
	}
	if run, err := e.Store.LastRun(ctx); err == nil {
		outcome := "running"
		switch {
		case run.Outcome == "ok":
			outcome = "ok"
		case run.Outcome != "":
			outcome = "failed"
			fail(problemLastPass)
		case lim.MaxPassDuration > 0 && now.Sub(run.StartedAt) > lim.MaxPassDuration:
			fail(fmt.Sprintf("a pass has been running for %s, longer than server.health.max_pass_duration (%s): it is stuck, or the nudge making it stopped in the middle; nudge's log says more",
				roundAge(now.Sub(run.StartedAt)), lim.MaxPassDuration))
		}
		hl.LastRun = map[string]any{"id": run.ID, "started_at": run.StartedAt, "finished_at": run.FinishedAt, "outcome": outcome}
	}
	if !w.LastOK.IsZero() {
		t := w.LastOK
		hl.LastSuccess = &t
	}
	if lim.MaxPassAge > 0 {
		since := w.LastOK
		if h.st != nil && h.st.since.After(since) {
			since = h.st.since
		}
		if !since.IsZero() && now.Sub(since) > lim.MaxPassAge {
			what := "no pass has succeeded since nudge started " + roundAge(now.Sub(since)) + " ago"
			if since.Equal(w.LastOK) {
				what = "no pass has succeeded for " + roundAge(now.Sub(since))
			}
			fail(fmt.Sprintf("%s, longer than server.health.max_pass_age (%s): nothing new is planned; nudge's log says why", what, lim.MaxPassAge))
		}
	}
	d, err := e.Store.Depths(ctx)
	if err != nil {
		return unreadable("its queues", err)
	}
	hl.Queues = map[string]int{"planned": d.Planned, "retry": w.Retrying, "sending": d.Sending, "tracking": d.Tracking,
		"writebacks": d.WriteBacks, "failed_writebacks": d.FailedWriteBacks, "retrying_writebacks": w.WriteBacksRetrying,
		"triggers": d.Triggers}
	if !w.OldestDue.IsZero() {
		age := now.Sub(w.OldestDue)
		hl.OldestDueSeconds = age.Seconds()
		if lim.MaxDueAge > 0 && age > lim.MaxDueAge {
			fail(fmt.Sprintf("a message has been due for %s and is not sent, longer than server.health.max_due_age (%s): sending is stuck, paused or too slow",
				roundAge(age), lim.MaxDueAge))
		}
	}
	if n := d.FailedWriteBacks + w.WriteBacksRetrying; n > lim.MaxWritebackFailures {
		fail(fmt.Sprintf("%d write-backs to REDCap failed for good and %d failed %d times or more and are being retried, more than server.health.max_writeback_failures (%d): REDCap is missing values nudge holds; nudge's log says why",
			d.FailedWriteBacks, w.WriteBacksRetrying, storage.WriteBackRetryAttempts, lim.MaxWritebackFailures))
	}
	held, err := e.Held(ctx)
	if err != nil {
		return unreadable("its pauses", err)
	}
	for _, p := range held {
		fail(p)
	}
	return hl, nil
}

// roundAge is d to the second, for reading.
func roundAge(d time.Duration) string { return d.Round(time.Second).String() }
