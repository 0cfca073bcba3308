package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/go-co-op/gocron/v2"

	"github.com/nudge-study/nudge/rules"
)

// ErrRestartNeeded means a reload found a change in nudge.yaml that only a
// restart of `nudge serve` applies; the running study was kept.
var ErrRestartNeeded = errors.New("nudge.yaml changed settings a reload cannot apply")

// reload reads the study again from its config file and, when it passes
// the checks `nudge check` and the start of `nudge serve` make, puts it in
// force: the rule jobs are rebuilt, and the cached records are read again
// when the rules need other fields. A study that fails them is not put in
// force: the error (a rules.Errors with FILE:LINE:COL lines, or
// ErrRestartNeeded) says why and the running study goes on. The pass in
// progress, if any, ends first.
func (e *Engine) reload(ctx context.Context, rj *ruleJobs) error {
	old := e.study()
	next, err := rules.Load(old.Config.Path)
	var errs rules.Errors
	if err != nil && !errors.As(err, &errs) {
		return err
	}
	if next == nil {
		return errs
	}
	if keys := restartOnly(old.Config, next.Config); len(keys) > 0 && len(errs) == 0 {
		return fmt.Errorf("%s: %w: %s; restart nudge serve to apply them", next.Config.Path, ErrRestartNeeded, strings.Join(keys, ", "))
	}

	e.studyMu.Lock()
	defer e.studyMu.Unlock()
	if e.checked != nil {
		errs = append(errs, e.checked.check(next)...)
	} else {
		// REDCap has not been reached since the start: the dictionary
		// files the config names, as `nudge check` does; catching up
		// checks the study against REDCap's own before anything is sent.
		dicts, err := LoadDictionaries(next.Config)
		if err != nil && len(errs) == 0 {
			return err
		}
		errs = append(errs, next.CheckFields(dicts)...)
		errs = append(errs, next.CheckSurveys(dicts, nil)...)
	}
	if len(errs) > 0 {
		errs.Sort()
		return errs
	}
	if err := rj.add(next); err != nil {
		return err
	}
	stale := make(map[string]bool)
	for _, p := range next.Config.Projects {
		if !slices.Equal(old.Fields(p.Name), next.Fields(p.Name)) {
			stale[p.Name] = true
		}
	}
	e.mu.Lock()
	e.reloaded.Store(next)
	e.init()
	for p := range stale {
		delete(e.records, p)
		delete(e.exported, p)
		delete(e.fetched, p)
	}
	e.mu.Unlock()
	rj.prune(next)
	if len(stale) > 0 && len(e.Dicts) > 0 {
		// The rules use other fields: read the records again for replies
		// and the checks before sending (each pass reads them anyway).
		if _, err := e.Export(ctx); err != nil && ctx.Err() == nil {
			e.log().WithError(err).Warn("reload: reading the records again failed; the next pass reads them")
		}
	}
	return nil
}

// restartOnly lists the settings of nudge.yaml that differ between old and
// next and that only a restart applies: what the process connected to or
// built at its start (database, listener, webhook signatures, REDCap,
// Twilio and SMTP clients, sending pace, time zone of the scheduler, the
// poller's and write-back's intervals). Rules, templates, help_text,
// run_every, each project's dictionary, project_id and opt_out apply live.
func restartOnly(old, next *rules.Config) []string {
	var keys []string
	diff := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, key)
		}
	}
	diff("storage.path", old.Storage.Path, next.Storage.Path)
	diff("timezone", old.Timezone, next.Timezone)
	diff("server.listen", old.Server.Listen, next.Server.Listen)
	diff("server.public_url", old.Server.PublicURL, next.Server.PublicURL)
	diff("server.trigger_secret_env", old.Server.TriggerSecretEnv, next.Server.TriggerSecretEnv)
	diff("server.trigger_secret_file", old.Server.TriggerSecretFile, next.Server.TriggerSecretFile)
	diff("server.poll_every", old.Server.PollEvery, next.Server.PollEvery)
	diff("server.writeback_every", old.Server.WritebackEvery, next.Server.WritebackEvery)
	diff("server.admin_listen", old.Server.AdminListen, next.Server.AdminListen)
	diff("server.trusted_proxies", old.Server.TrustedProxies, next.Server.TrustedProxies)
	type conn struct {
		Name, RedcapURL, TokenEnv, TokenFile, SMSFrom, SMSService string
		SMSNumbers                                                []string
	}
	conns := func(c *rules.Config) []conn {
		var out []conn
		for _, p := range c.Projects {
			out = append(out, conn{p.Name, p.RedcapURL, p.TokenEnv, p.TokenFile, p.SMSFrom, p.SMSService, p.SMSNumbers})
		}
		return out
	}
	diff("projects (names, redcap_url, token_env, token_file or sending numbers)", conns(old), conns(next))
	tw := func(c *rules.Config) *rules.Twilio {
		if c.Twilio == nil {
			return nil
		}
		t := *c.Twilio
		t.Pos = rules.Pos{}
		return &t
	}
	diff("twilio", tw(old), tw(next))
	mail := func(c *rules.Config) *rules.SMTP {
		if c.SMTP == nil {
			return nil
		}
		s := *c.SMTP
		s.Pos = rules.Pos{}
		return &s
	}
	diff("smtp", mail(old), mail(next))
	// The daily digest's job and the SMTP client are set up at the start.
	reports := func(c *rules.Config) *rules.Reports {
		if c.Reports == nil {
			return nil
		}
		r := *c.Reports
		r.Pos = rules.Pos{}
		return &r
	}
	diff("reports", reports(old), reports(next))
	return keys
}

// ruleJobs are the scheduler's jobs that make passes over the rules: one
// per cron schedule, and one every server.run_every for the rules without
// a schedule. A job finds its rules in the study in force when it runs, so
// a reload only adds the jobs of new schedules and removes those of
// schedules no rule uses any more.
type ruleJobs struct {
	e       *Engine
	sched   gocron.Scheduler
	newJob  func(name string, def gocron.JobDefinition, fn func(context.Context) error, more ...gocron.JobOption) (gocron.Job, error)
	owner   string
	started func() bool // the scheduler runs
	jobs    map[string]gocron.Job
}

// ruleJob is the job a rule belongs to: its key and definition.
func ruleJob(r *rules.Rule, cfg *rules.Config) (key string, def gocron.JobDefinition, ok bool) {
	switch {
	case !r.Enabled || r.OnSave:
		return "", nil, false
	case r.Schedule != "":
		return "rules on " + r.Schedule, gocron.CronJob(r.Schedule, false), true
	case cfg.Server.RunEvery > 0:
		return "rules every " + cfg.Server.RunEvery.String(), gocron.DurationJob(cfg.Server.RunEvery), true
	}
	return "", nil, false
}

// byJob groups the names of s's rules by job key.
func byJob(s *rules.Study) map[string][]string {
	out := make(map[string][]string)
	for _, r := range s.Rules {
		if key, _, ok := ruleJob(r, s.Config); ok {
			out[key] = append(out[key], r.Name)
		}
	}
	return out
}

// add adds the jobs s needs and does not have yet; a job whose rules gained
// one runs at once (when the scheduler runs), so a new rule takes effect
// without waiting for run_every. Nothing is changed when a job cannot be
// made.
func (rj *ruleJobs) add(s *rules.Study) error {
	before := byJob(rj.e.study())
	var added []gocron.Job
	var runNow []gocron.Job
	for _, r := range s.Rules {
		key, def, ok := ruleJob(r, s.Config)
		if !ok || rj.jobs[key] != nil || slices.ContainsFunc(added, func(j gocron.Job) bool { return j.Name() == key }) {
			continue
		}
		var more []gocron.JobOption
		if r.Schedule == "" {
			more = append(more, gocron.WithStartAt(gocron.WithStartImmediately()))
		}
		j, err := rj.newJob(key, def, rj.pass(key), more...)
		if err != nil {
			for _, a := range added {
				rj.sched.RemoveJob(a.ID())
			}
			return fmt.Errorf("%s: rule %s: schedule %q: %w", r.Pos, r.Name, r.Schedule, err)
		}
		added = append(added, j)
	}
	for _, j := range added {
		rj.jobs[j.Name()] = j
	}
	for key, names := range byJob(s) {
		if j := rj.jobs[key]; j != nil && !slices.Contains(added, j) && len(names) > 0 &&
			slices.ContainsFunc(names, func(n string) bool { return !slices.Contains(before[key], n) }) {
			runNow = append(runNow, j)
		}
	}
	if rj.started != nil && rj.started() {
		for _, j := range runNow {
			if err := j.RunNow(); err != nil {
				rj.e.log().WithError(err).WithField("job", j.Name()).Warn("reload: running the new rules at once")
			}
		}
	}
	return nil
}

// prune removes the jobs no rule of s uses.
func (rj *ruleJobs) prune(s *rules.Study) {
	want := byJob(s)
	for _, key := range slices.Sorted(maps.Keys(rj.jobs)) {
		if _, ok := want[key]; ok {
			continue
		}
		if err := rj.sched.RemoveJob(rj.jobs[key].ID()); err != nil && !errors.Is(err, gocron.ErrJobNotFound) {
			rj.e.log().WithError(err).WithField("job", key).Warn("reload: removing a job")
		}
		delete(rj.jobs, key)
	}
}

// pass is the work of the job key: a pass over the rules of the study in
// force that belong to it.
func (rj *ruleJobs) pass(key string) func(context.Context) error {
	return func(ctx context.Context) error {
		names := byJob(rj.e.study())[key]
		if len(names) == 0 {
			return nil
		}
		return rj.e.lockedPass(rj.owner, names...)(ctx)
	}
}
