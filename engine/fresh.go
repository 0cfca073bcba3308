package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

const (
	// freshFor is how old a participant's data may be when a queued
	// message is checked against it right before its send; older data is
	// read again through the API.
	freshFor = 2 * time.Minute
	// rereadBatch is how many records one such read asks for: the
	// record of the message at hand and those of the messages queued
	// behind it.
	rereadBatch = 100
)

// exportSome reads some records of a project through the API, limited to
// the fields the rules need, and remembers them with the time of the read.
func (e *Engine) exportSome(ctx context.Context, project string, ids []string) (*Snapshot, error) {
	d := e.Dicts[project]
	if d == nil {
		return nil, fmt.Errorf("project %s: data dictionary not loaded", project)
	}
	at := e.now()
	fields := dedupe(append([]string{d.RecordID()}, e.study().Fields(project)...))
	rows, err := e.REDCap[project].ExportRecords(ctx, redcap.ExportParams{Records: ids, Fields: fields})
	if err != nil {
		return nil, fmt.Errorf("project %s: reading records: %w", project, err)
	}
	flat := make([]map[string]string, len(rows))
	for i, r := range rows {
		flat[i] = r
	}
	snap := &Snapshot{Project: project, Records: rules.GroupRows(d.RecordID(), flat), Missing: e.infos[project].MissingCodes, At: at}
	e.rememberRead(snap, ids)
	return snap, nil
}

// freshRecord returns a record as last read, when that read was at or
// after since; rec is nil for a record that no longer exists.
func (e *Engine) freshRecord(project, id string, since time.Time) (rec *rules.Record, missing []string, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	at, read := e.fetched[project][id]
	if !read {
		at = e.exported[project]
	}
	if at.IsZero() || at.Before(since) {
		return nil, nil, false
	}
	return e.records[project][id], e.missing[project], true
}

// freshness gives the dispatch workers the participants' current data:
// what the pass exported when it is recent enough, otherwise records read
// again through the API, in batches.
type freshness struct {
	e  *Engine
	mu sync.Mutex // one read at a time, and the planner's caches
	pl *planner
}

// record returns m's record, read no longer than freshFor ago. rest are the
// messages queued behind m: their stale records are read in the same call.
func (f *freshness) record(ctx context.Context, m storage.Message, rest []storage.Message) (*rules.Record, []string, error) {
	since := f.e.now().Add(-freshFor)
	if rec, missing, ok := f.e.freshRecord(m.Project, m.Record, since); ok {
		return rec, missing, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if rec, missing, ok := f.e.freshRecord(m.Project, m.Record, since); ok {
		return rec, missing, nil // another worker read it meanwhile
	}
	ids := []string{m.Record}
	seen := map[string]bool{m.Record: true}
	for _, o := range rest {
		if len(ids) >= rereadBatch {
			break
		}
		if o.Project != m.Project || seen[o.Record] {
			continue
		}
		seen[o.Record] = true
		if _, _, ok := f.e.freshRecord(o.Project, o.Record, since); !ok {
			ids = append(ids, o.Record)
		}
	}
	if _, err := f.e.exportSome(ctx, m.Project, ids); err != nil {
		return nil, nil, err
	}
	rec, missing, _ := f.e.freshRecord(m.Project, m.Record, time.Time{})
	return rec, missing, nil
}

// planner returns the planner the checks share, made once per dispatch.
func (f *freshness) planner(ctx context.Context) (*planner, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pl == nil {
		bad, err := f.e.Store.BadNumbers(ctx)
		if err != nil {
			return nil, err
		}
		f.pl = &planner{e: f.e, bad: bad, addrs: newParsedAddresses(f.e.parsed.Load()), links: newSurveyLinks(ctx, f.e, linkFetch)}
	}
	return f.pl, nil
}

// recheck checks a queued message against the participant's current data
// right before it is sent: its rule still exists and is enabled, the
// condition is still true for the row it was planned for, the rule's
// once_per field still holds the value it was planned for, and the address
// and text are worked out again. A message that no longer applies gets a
// cancel reason; otherwise the content to send (to the current address,
// with the current text) and the participant's zone for allowed hours. An
// error means the data could not be read: nothing is sent.
func (e *Engine) recheck(ctx context.Context, m storage.Message, rest []storage.Message, fresh *freshness) (c storage.Content, zone, reason string, err error) {
	if isNotification(m) {
		// A staff notification: its fixed address and the text as received.
		return storage.Content{To: m.To, Subject: m.Subject, Body: m.Body, HTML: m.HTML}, "", "", nil
	}
	r := e.study().Rule(m.Rule)
	var smsRule *rules.Rule // for an email fallback: the SMS rule it stands in for
	if r != nil && rules.IsFallbackKey(m.Key) {
		if r.Fallback == nil || r.Channel != rules.ChannelSMS {
			return c, "", "rule " + m.Rule + " no longer has an email fallback", nil
		}
		smsRule, r = r, r.FallbackRule()
	}
	switch {
	case r == nil:
		return c, "", "rule " + m.Rule + " no longer exists", nil
	case !r.Enabled:
		return c, "", "rule " + m.Rule + " is disabled", nil
	case r.Project != m.Project || r.Channel != m.Channel:
		return c, "", "rule " + m.Rule + " now sends to another project or channel", nil
	}
	rec, missing, err := fresh.record(ctx, m, rest)
	if err != nil {
		return c, "", "", err
	}
	if rec == nil {
		return c, "", "record " + m.Record + " is no longer in REDCap", nil
	}
	now := e.now()
	var d *rules.Decision
	instrument, instance := m.Instrument, m.Instance
	if r.Timed() && r.Every != nil && r.Every.Instrument != "" && m.Instrument == r.Every.Instrument {
		// A series message names the instance of its occurrence; the rule
		// selected the participant's base row.
		instrument, instance = "", 0
	}
	for _, x := range r.Evaluate(rec, now, missing) {
		if x.Row.Event == m.Event && x.Row.RepeatInstrument == instrument && x.Row.Instance == instance {
			d = &x
			break
		}
	}
	switch {
	case d == nil:
		return c, "", "the event or repeat instance it was planned for no longer exists", nil
	case d.Err != nil:
		return c, "", "the condition can no longer be evaluated: " + d.Err.Error(), nil
	case !d.Selected:
		return c, "", "the condition is no longer true: " + d.Reason, nil
	}
	scope := rules.NewScope(rec, d.Row, now, missing)
	if r.OncePer.Field != "" {
		// Planned for another value (the visit moved): what it says is
		// wrong. The current value gets its own message at the next plan.
		value, reason := r.OncePerDigest(scope)
		switch {
		case reason != "":
			return c, "", reason, nil
		case m.OncePer == "":
			return c, "", "the rule now sends once per value of " + r.OncePer.String() + ": it is planned again for the current value", nil
		case value != m.OncePer:
			return c, "", "the value of " + r.OncePer.String() + " (once_per) changed since it was planned", nil
		}
	}
	if r.Timed() {
		loc, err := r.Location(scope, e.study().Config.Location)
		if err != nil {
			return c, "", err.Error(), nil
		}
		oscope, reason, err := e.recheckTimed(ctx, r, m, rec, d.Row, loc, now, missing)
		if err != nil || reason != "" {
			return c, "", reason, err
		}
		scope = oscope
	}
	pl, err := fresh.planner(ctx)
	if err != nil {
		return c, "", "", err
	}
	fresh.mu.Lock()
	defer fresh.mu.Unlock()
	if smsRule != nil {
		// A participant who texted STOP gets no email in place of a text.
		// (The number may be flagged as unable to get texts by now: the
		// opt-out is looked up all the same.)
		raw, _ := scope.Lookup(smsRule.To)
		if number, err := NormalizePhone(raw, e.region()); err == nil {
			out, err := e.Store.IsOptedOut(ctx, number)
			if err != nil {
				return c, "", "", err
			}
			if out {
				return c, "", "the participant opted out of texts (STOP): no email in their place", nil
			}
		}
	}
	to, reason := pl.address(r, d.To)
	if reason != "" {
		return c, "", reason, nil
	}
	loc, err := r.Location(scope, e.study().Config.Location)
	if err != nil {
		return c, "", err.Error(), nil
	}
	pl.now = now
	c, reason = pl.content(r, scope, to)
	if err := pl.links.takeOutage(); err != nil {
		// A text is never sent without its survey link: it waits, as for
		// any REDCap outage.
		return c, "", "", err
	}
	return c, loc.String(), reason, nil
}
