package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
	"github.com/nudge-study/nudge/templates"
)

// SurveyLinker gives a participant's own survey link; the REDCap client
// satisfies it. A project whose REDCap does not (records given offline)
// pipes PreviewSurveyLink.
type SurveyLinker interface {
	SurveyLink(ctx context.Context, p redcap.SurveyLinkParams) (string, error)
}

// SurveyChecker tells whether an instrument is enabled as a survey; the
// REDCap client satisfies it.
type SurveyChecker interface {
	IsSurvey(ctx context.Context, instrument, event string) (bool, error)
}

// surveysOf asks REDCap whether each instrument the project's templates
// link to is a survey. An instrument REDCap cannot answer for (no Survey
// Distribution Tools right, an outage, no event it is designated for) is
// left out: the check then goes by the config's surveys list.
func (e *Engine) surveysOf(ctx context.Context, project string, rc REDCap, longitudinal bool, designated map[string][]string) map[string]bool {
	if t, ok := rc.(timedREDCap); ok {
		rc = t.REDCap
	}
	sc, ok := rc.(SurveyChecker)
	if !ok {
		return nil
	}
	out := map[string]bool{}
	for _, r := range e.study().Rules {
		if r.Project != project {
			continue
		}
		for _, ref := range r.Surveys() {
			if _, done := out[ref.Instrument]; done {
				continue
			}
			event := ""
			if longitudinal {
				event = ref.Event
				for ev, forms := range designated {
					if event == "" && slices.Contains(forms, ref.Instrument) {
						event = ev
					}
				}
				if event == "" {
					continue
				}
			}
			is, err := sc.IsSurvey(ctx, ref.Instrument, event)
			if err != nil {
				e.log().WithFields(map[string]any{"project": project, "instrument": ref.Instrument}).WithError(err).
					Warn("could not ask REDCap whether the instrument is a survey; checking against the config's surveys list")
				continue
			}
			out[ref.Instrument] = is
		}
	}
	return out
}

// PreviewSurveyLink stands for a survey link where no REDCap can give one
// (`nudge preview --records`, `nudge test rules`). It is as long as a real
// REDCap link, so segment counts stay honest.
const PreviewSurveyLink = "https://redcap.example.edu/surveys/?s=PREVIEW123"

// linkFetchers is how many survey links a plan asks REDCap for at once.
const linkFetchers = 4

// linkMode is how surveyLinks answers a link it does not hold.
type linkMode int

const (
	linkPreview linkMode = iota // the placeholder: the plan's first render, before its links are fetched
	linkCached                  // only links fetched before: the plan's final render
	linkFetch                   // ask REDCap: right before a send
)

// linkKey is one participant's survey link.
type linkKey struct {
	project, record, instrument, event string
	instance                           int
}

// linkAnswer is REDCap's answer for one link: the URL, or why there is none.
type linkAnswer struct {
	url    string
	err    error
	outage bool // REDCap could not be asked: try again later
}

// surveyLinks fetches survey links and remembers them for one plan or one
// dispatch.
type surveyLinks struct {
	e     *Engine
	ctx   context.Context
	mode  linkMode
	mu    sync.Mutex
	cache map[linkKey]linkAnswer
	down  error // the first outage a render met since takeOutage
}

func newSurveyLinks(ctx context.Context, e *Engine, mode linkMode) *surveyLinks {
	return &surveyLinks{e: e, ctx: ctx, mode: mode, cache: map[linkKey]linkAnswer{}}
}

// errNoLinker is why a project whose REDCap connection cannot give
// survey links sends no message with one.
var errNoLinker = errors.New("this project's REDCap connection cannot give survey links")

// baseREDCap is the project's REDCap connection under any instrumentation.
func (e *Engine) baseREDCap(project string) REDCap {
	rc := e.REDCap[project]
	if t, ok := rc.(timedREDCap); ok {
		return t.REDCap
	}
	return rc
}

// linker is the project's REDCap when it can give survey links. offline
// is true for records given offline, which pipe PreviewSurveyLink.
func (l *surveyLinks) linker(project string) (sl SurveyLinker, offline bool) {
	rc := l.e.baseREDCap(project)
	if _, ok := rc.(*OfflineRecords); ok {
		return nil, true
	}
	sl, _ = rc.(SurveyLinker)
	return sl, false
}

// get returns a link, from the cache or (linkFetch) from REDCap. Only
// records given offline, and the plan's first render, get the placeholder;
// a message about to be planned or sent gets the real link or an error.
func (l *surveyLinks) get(k linkKey) (string, error) {
	sl, offline := l.linker(k.project)
	if offline || l.mode == linkPreview {
		return PreviewSurveyLink, nil
	}
	if sl == nil {
		return "", errNoLinker
	}
	l.mu.Lock()
	a, ok := l.cache[k]
	l.mu.Unlock()
	if !ok {
		if l.mode == linkCached {
			return "", fmt.Errorf("the survey link of %s was not fetched", k.instrument)
		}
		a = l.fetch(sl, k)
	}
	if a.outage {
		l.mu.Lock()
		if l.down == nil {
			l.down = a.err
		}
		l.mu.Unlock()
	}
	return a.url, a.err
}

// fetch asks REDCap for one link and caches the answer. A refusal (HTTP
// 400: no such survey, record or event) is the message's own problem;
// anything else (REDCap down, a refused token) is an outage.
func (l *surveyLinks) fetch(sl SurveyLinker, k linkKey) linkAnswer {
	u, err := sl.SurveyLink(l.ctx, redcap.SurveyLinkParams{Record: k.record, Instrument: k.instrument, Event: k.event, Instance: k.instance})
	var a linkAnswer
	var ae *redcap.APIError
	switch {
	case err == nil:
		a.url = u
	case errors.Is(err, redcap.ErrNotSurvey):
		a.err = fmt.Errorf("the instrument %s is not enabled as a survey in REDCap: enable it in the Online Designer, or remove the survey link from the template", k.instrument)
	case errors.As(err, &ae) && ae.Status == http.StatusBadRequest:
		a.err = fmt.Errorf("REDCap gave no survey link for %s: %v", k.instrument, err)
	default:
		a.err, a.outage = fmt.Errorf("REDCap could not give the survey link for %s: %w", k.instrument, err), true
	}
	l.mu.Lock()
	if !a.outage {
		l.cache[k] = a
	}
	l.mu.Unlock()
	return a
}

// takeOutage returns and forgets the outage the renders since the last
// call met, if any.
func (l *surveyLinks) takeOutage() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.down
	l.down = nil
	return err
}

// prefetch fetches the links not yet cached, a few at a time: REDCap has no
// call for many links at once.
func (l *surveyLinks) prefetch(keys []linkKey) {
	var todo []linkKey
	seen := map[linkKey]bool{}
	for _, k := range keys {
		if sl, _ := l.linker(k.project); sl == nil || seen[k] {
			continue
		}
		seen[k] = true
		todo = append(todo, k)
	}
	work := make(chan linkKey)
	var wg sync.WaitGroup
	for i := 0; i < min(linkFetchers, len(todo)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				sl, _ := l.linker(k.project)
				if a := l.fetch(sl, k); a.outage {
					l.mu.Lock()
					l.cache[k] = a // for this plan only: its messages wait for the next one
					l.mu.Unlock()
				}
			}
		}()
	}
	for _, k := range todo {
		work <- k
	}
	close(work)
	wg.Wait()
}

// linkedScope is a row's scope that also gives the row's survey links.
type linkedScope struct {
	*rules.Scope
	project string
	links   *surveyLinks
}

// SurveyLink gives the participant's link to the survey s names.
func (s linkedScope) SurveyLink(ref templates.SurveyRef) (string, error) {
	k, err := surveyKey(s.project, s.Record(), s.Row(), ref)
	if err != nil {
		return "", err
	}
	return s.links.get(k)
}

// surveyKey works out which link a survey tag names for a row: its event
// (the row's unless the tag names one) and its instance. Without an
// instance the tag means the row's instance when the row is an instance of
// the survey (or of a repeating event), else 1.
func surveyKey(project string, rec *rules.Record, row *rules.Row, ref templates.SurveyRef) (linkKey, error) {
	k := linkKey{project: project, record: rec.ID, instrument: ref.Instrument, event: ref.Event, instance: 1}
	if k.event == "" {
		k.event = row.Event
	}
	own := row.Instance > 0 && k.event == row.Event && (row.RepeatInstrument == ref.Instrument || row.RepeatInstrument == "")
	cur := max(row.Instance, 1)
	switch ref.Instance {
	case "":
		if own {
			k.instance = row.Instance
		}
	case "current-instance":
		k.instance = cur
	case "previous-instance":
		if cur < 2 {
			return k, fmt.Errorf("%s: the row is the first instance and has no previous one", ref)
		}
		k.instance = cur - 1
	case "next-instance":
		k.instance = cur + 1
	case "first-instance":
		k.instance = 1
	case "last-instance":
		for _, r := range rec.Rows {
			if r.Event == k.event && r.Instance > k.instance && (r.RepeatInstrument == ref.Instrument || r.RepeatInstrument == "") {
				k.instance = r.Instance
			}
		}
	default:
		n, err := strconv.Atoi(ref.Instance)
		if err != nil || n < 1 {
			return k, fmt.Errorf("%s: the instance must be 1 or more", ref)
		}
		k.instance = n
	}
	return k, nil
}

// hasSurveyLinks reports whether a rule's template pipes survey links.
func hasSurveyLinks(r *rules.Rule) bool {
	return len(r.Surveys()) > 0
}

// pendingLinks is a planned message whose text pipes survey links, to be
// rendered again once they are fetched.
type pendingLinks struct {
	slot int      // the decision's slot (see Engine.plan)
	d    Decision // the decision, held until its links are fetched
	rule *rules.Rule
	rec  *rules.Record
	row  *rules.Row
	// missing is the project's missing-data codes, for the scope of a
	// timed rule's occurrence.
	missing []string
}

// messages is every message the decision planned: a timed rule may plan
// several occurrences of one row.
func (p pendingLinks) messages(d *Decision) []*storage.Message {
	return append([]*storage.Message{d.Message}, d.More...)
}

// scope is what message m of the pending decision pipes from: the row, or
// for an occurrence of a timed series the instance it stands for, so that
// occurrence k links to survey instance k.
func (pl *planner) pendingScope(p pendingLinks, m *storage.Message) (*rules.Scope, *rules.Row) {
	if p.rule.Timed() {
		return occurrenceScope(p.rule, p.rec, p.row, m.Occurrence, pl.now, p.missing)
	}
	return pl.passes[p.rule.Project].Scope(p.rec, p.row, pl.now), p.row
}

// fillLinks fetches the survey links of the plan's messages, a few at a
// time, and renders those messages again with them. A message whose link
// REDCap refuses, or cannot give now, is skipped with the reason; the next
// pass plans it again.
func (pl *planner) fillLinks(pending []pendingLinks) {
	if len(pending) == 0 {
		return
	}
	var keys []linkKey
	for _, p := range pending {
		for _, m := range p.messages(&p.d) {
			scope, row := pl.pendingScope(p, m)
			for _, ref := range p.rule.Surveys() {
				if k, err := surveyKey(p.rule.Project, scope.Record(), row, ref); err == nil {
					keys = append(keys, k)
				}
			}
		}
	}
	pl.links.prefetch(keys)
	pl.links.mode = linkCached
	defer func() { pl.links.mode = linkPreview }()
	for i := range pending {
		p := pending[i]
		d := &pending[i].d
		for _, m := range p.messages(d) {
			scope, _ := pl.pendingScope(p, m)
			r := p.rule
			if rules.IsFallbackKey(m.Key) {
				// The email that stands in for the text: its own template.
				r = r.FallbackRule()
			}
			c, reason := pl.content(r, scope, m.To)
			pl.links.takeOutage()
			if reason != "" {
				d.Outcome, d.Reason, d.Message, d.More = Skipped, reason, nil, nil
				break
			}
			m.Subject, m.Body, m.HTML, m.Segments = c.Subject, c.Body, c.HTML, c.Segments
		}
	}
}

// source is what a rule's templates pipe from: the row's scope, with the
// participant's survey links when the planner has them.
func (pl *planner) source(r *rules.Rule, scope *rules.Scope) templates.Source {
	if pl.links == nil || !hasSurveyLinks(r) {
		return scope
	}
	return linkedScope{Scope: scope, project: r.Project, links: pl.links}
}
