package engine

import (
	"context"
	"fmt"
	"net/mail"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
	"github.com/nudge-study/nudge/templates"
)

// maxSMSLength is the longest body Twilio accepts (error 21617 above it).
const maxSMSLength = 1600

// Snapshot is one project's records as exported for one pass.
type Snapshot struct {
	Project string
	Records []*rules.Record
	Missing []string  // the project's missing-data codes
	At      time.Time // when the read began: the data is at least this fresh
}

// Outcome is what the planner decided for one rule and one record row.
type Outcome string

// The planner's outcomes.
const (
	Send     Outcome = "send"     // a message is planned now
	Deferred Outcome = "deferred" // a message is planned for the next allowed hour
	Excluded Outcome = "excluded" // the rule's condition is false
	Skipped  Outcome = "skipped"  // selected, but the message cannot be sent (bad number, opt-out, blank piped value, …)
	Done     Outcome = "done"     // selected, and already messaged as often as the rule allows for now
)

// Decision is the planner's verdict for one rule over one record row, with
// the reason a coordinator reads in `nudge preview`.
type Decision struct {
	Rule, Project, Record, Event, Instrument string
	Instance                                 int
	Selected                                 bool // the rule's condition is true
	Outcome                                  Outcome
	Reason                                   string
	Message                                  *storage.Message // for Send and Deferred
	// More holds a timed rule's further messages for the row planned in the
	// same pass (later occurrences due within PlanHorizon, reminders).
	More []*storage.Message
}

// Plan is the outcome of select and plan for one pass.
type Plan struct {
	Decisions []Decision
	// counted holds, per rule, the decisions a pass counted but did not
	// keep (see RunResult.Plan).
	counted map[string]*RuleSummary
}

// Messages returns the messages the plan wants enqueued.
func (p *Plan) Messages() []*storage.Message {
	var out []*storage.Message
	for i := range p.Decisions {
		if m := p.Decisions[i].Message; m != nil {
			out = append(out, m)
		}
		out = append(out, p.Decisions[i].More...)
	}
	return out
}

// Export reads every project's records, limited to the fields its rules need.
func (e *Engine) Export(ctx context.Context) (map[string]*Snapshot, error) {
	snaps := make(map[string]*Snapshot)
	for _, p := range e.study().Config.Projects {
		fields := e.study().Fields(p.Name)
		if len(fields) == 0 {
			continue // no rule uses this project
		}
		d := e.Dicts[p.Name]
		if d == nil {
			return nil, fmt.Errorf("project %s: data dictionary not loaded (call Prepare first)", p.Name)
		}
		id := d.RecordID()
		fields = append([]string{id}, fields...)
		start := time.Now()
		at := e.now()
		rows, err := exportTable(ctx, e.REDCap[p.Name], redcap.ExportParams{Fields: dedupe(fields)})
		if err != nil {
			return nil, fmt.Errorf("project %s: exporting records: %w", p.Name, err)
		}
		recs := rules.GroupTable(id, rows)
		e.log().WithFields(map[string]any{"project": p.Name, "records": len(recs), "rows": rows.Len(),
			"fields": len(fields), "took": time.Since(start).Round(time.Millisecond).String()}).Info("exported records")
		snap := &Snapshot{Project: p.Name, Records: recs, Missing: e.infos[p.Name].MissingCodes, At: at}
		snaps[p.Name] = snap
		e.remember(snap)
		if err := e.Store.ReplaceParticipants(ctx, p.Name, e.participants(snap, e.now()), e.now()); err != nil {
			return nil, err
		}
	}
	return snaps, nil
}

// tableExporter is a REDCap that exports records as a table (the API
// client does), which the planner groups without a map per row.
type tableExporter interface {
	ExportTable(ctx context.Context, p redcap.ExportParams) (*redcap.Table, error)
}

// The planner's tables are the rules' tables.
var _ rules.Table = (*redcap.Table)(nil)

// exportTable exports records from rc as a table: with ExportTable when
// rc has it, else with ExportRecords.
func exportTable(ctx context.Context, rc REDCap, p redcap.ExportParams) (*redcap.Table, error) {
	if t, ok := rc.(tableExporter); ok {
		return t.ExportTable(ctx, p)
	}
	rows, err := rc.ExportRecords(ctx, p)
	if err != nil {
		return nil, err
	}
	return redcap.TableOf(rows), nil
}

func dedupe(xs []string) []string {
	seen := make(map[string]bool, len(xs))
	out := xs[:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// PlanOptions narrows a plan.
type PlanOptions struct {
	Rules   map[string]bool // only these rules; nil = every enabled rule except on-save ones
	Records map[string]bool // only these record ids; nil = all
	// Unexplained leaves the Reason of every decision but a skipped one
	// blank, for a pass that only counts them (see Plan.keep): explaining
	// a false condition, or saying when a message is due, is costly.
	Unexplained bool
	// CountExcluded, when set, is told how many rows each rule's condition
	// is false for (a rule at a time, a few times a plan), and PlanEach
	// does not hand on those decisions one by one: a pass with many
	// records has millions, and only counts them. Rows of an opted-out
	// number are handed on as ever (they are skipped, not excluded), and
	// so are all rows of a plan that explains its decisions.
	CountExcluded func(rule string, n int)
}

// Plan evaluates every enabled rule over every exported record row and
// decides, for each row the rule selects, whether a message goes out now,
// later (quiet hours), not at all (with the reason) or not again.
// The decisions come rule by rule, in file order.
func (e *Engine) Plan(ctx context.Context, snaps map[string]*Snapshot, now time.Time, opt PlanOptions) (*Plan, error) {
	plan := &Plan{}
	opt.CountExcluded = nil // a Plan has every decision
	var kept messageArena   // the plan's own copies of the messages
	err := e.plan(ctx, snaps, now, opt, func(total int) { plan.Decisions = make([]Decision, total) },
		func(slot int, d *Decision) error {
			plan.Decisions[slot] = *d
			if d.Message != nil {
				m := kept.next()
				*m = *d.Message
				plan.Decisions[slot].Message = m
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return plan, nil
}

// PlanEach decides as Plan does, but hands each decision to emit as soon
// as it is made instead of keeping them: a pass over many records holds no
// more than the decisions emit keeps. The decisions come record by record,
// each record's in rule order; those whose messages pipe survey links come
// last, once the links are fetched. An error from emit stops planning and
// is returned, as is a store error, after which nothing more is emitted.
// d and d.Message are the planner's, reused once emit returns: emit may
// keep copies of them, never the pointers. d.More's messages it may keep.
func (e *Engine) PlanEach(ctx context.Context, snaps map[string]*Snapshot, now time.Time, opt PlanOptions, emit func(d *Decision) error) error {
	return e.plan(ctx, snaps, now, opt, nil, func(_ int, d *Decision) error { return emit(d) })
}

// plan is Plan and PlanEach. When sized is not nil, it is first told how
// many decisions there will be, and each decision's slot is its place in
// Plan's order (rule by rule); otherwise slots mean nothing.
func (e *Engine) plan(ctx context.Context, snaps map[string]*Snapshot, now time.Time, opt PlanOptions,
	sized func(total int), emit func(slot int, d *Decision) error) error {
	optedOut, err := e.Store.OptedOut(ctx)
	if err != nil {
		return err
	}
	occs, err := e.Store.AllOccurrences(ctx)
	if err != nil {
		return err
	}
	sent := make(map[string]storage.Occurrence, len(occs))
	for _, o := range occs {
		event, value := o.Event, o.OncePer
		if r := e.study().Rule(o.Rule); r != nil {
			if r.AnyEvent {
				// Once per participant on any event: the occurrences of
				// every event count together.
				event = rules.AnyEventKey
			}
			if r.OncePer.Field == "" {
				// once_per was removed: the messages sent per value still
				// count, all together, so nobody is messaged again.
				value = ""
			}
		}
		k := occurrenceKey(o.Project, o.Rule, o.Record, event, o.Instance, value)
		if prev, ok := sent[k]; ok {
			o = addOccurrences(prev, o)
		}
		sent[k] = o
	}
	bad, err := e.Store.BadNumbers(ctx)
	if err != nil {
		return err
	}
	paused, err := e.Store.PausedNumbers(ctx, now)
	if err != nil {
		return err
	}
	passes := make(map[string]*rules.Pass, len(snaps))
	pl := &planner{e: e, ctx: ctx, now: now, optedOut: optedOut, sent: sent, bad: bad, paused: paused, addrs: newParsedAddresses(e.parsed.Load()),
		optOutTails: make(map[string]bool, len(optedOut)), passes: passes, unexplained: opt.Unexplained,
		senders: make(map[string]rules.Sender), texts: make(map[string][]time.Time), planned: make(map[string][]time.Time), links: newSurveyLinks(ctx, e, linkPreview)}
	for p := range optedOut {
		pl.optOutTails[tail(p)] = true
	}
	// The rules that run, in order, grouped by project.
	var active []*rules.Rule
	byProject := map[string][]int{}
	var projects []string
	for _, r := range e.study().Rules {
		if !r.Enabled || (opt.Rules != nil && !opt.Rules[r.Name]) || (opt.Rules == nil && r.OnSave) {
			continue // on-save rules run when REDCap reports a save, or when named
		}
		if snaps[r.Project] == nil {
			continue
		}
		if _, ok := byProject[r.Project]; !ok {
			projects = append(projects, r.Project)
		}
		byProject[r.Project] = append(byProject[r.Project], len(active))
		active = append(active, r)
	}
	var nTemplates int
	pl.slots, nTemplates = templateSlots(active)
	pl.rendered = make([]renderedRow, nTemplates)
	pl.windows = make([]windowMemo, len(active))
	pl.at = -1
	if err := pl.loadTimed(ctx, active); err != nil {
		return err
	}
	// Plan's decisions come rule by rule: each rule has one per candidate
	// row. They are worked out record by record, so that a record's values
	// are read for every rule while the processor still holds them, and
	// each lands in its rule's place (its slot).
	next := make([]int, len(active))
	if sized != nil {
		total := 0
		for i, r := range active {
			next[i] = total
			for _, rec := range snaps[r.Project].Records {
				if opt.Records != nil && !opt.Records[rec.ID] {
					continue
				}
				for _, row := range rec.Rows {
					if r.Candidate(row) {
						total++
					}
				}
			}
		}
		sized(total)
	}
	var linked []pendingLinks
	workers := 1
	if !e.study().Config.Caps.Active() {
		// Without caps no decision depends on another record's: records
		// are worked out on every core, and their decisions handed on in
		// order. The caps count each number's texts across the pass, in
		// order, so with caps one planner works alone.
		workers = min(runtime.GOMAXPROCS(0), maxPlanWorkers)
	}
	linking := make([]bool, len(active)) // the rules whose messages pipe survey links
	for i, r := range active {
		linking[i] = hasSurveyLinks(r)
	}
	for _, project := range projects {
		snap := snaps[project]
		passes[project] = newPass(now, snap.Missing, opt)
		idx := byProject[project]
		recs := snap.Records
		n := (len(recs) + planChunk - 1) / planChunk
		work := func(w *planner, k int, out *chunk) error {
			return w.work(active, idx, snap, recs[k*planChunk:min((k+1)*planChunk, len(recs))], opt, out)
		}
		err := pl.inOrder(n, workers, work, func(c *chunk) error {
			for i, n := range c.excluded {
				if n > 0 {
					opt.CountExcluded(active[i].Name, n)
				}
			}
			var excluded Decision
			for j := range c.items {
				it := &c.items[j]
				slot := next[it.rule]
				next[it.rule]++
				if it.dec < 0 {
					excluded = excludedDecision(active[it.rule], it.rec, it.row)
					if err := emit(slot, &excluded); err != nil {
						return err
					}
					continue
				}
				d := &c.decs[it.dec]
				if d.Message != nil && linking[it.rule] {
					// Held past this chunk: the message is copied out of
					// the chunk's, which are reused.
					m := *d.Message
					d.Message = &m
					linked = append(linked, pendingLinks{slot: slot, d: *d, rule: active[it.rule], rec: it.rec, row: it.row, missing: snap.Missing})
					continue
				}
				if err := emit(slot, d); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	pl.fillLinks(linked)
	for i := range linked {
		if err := emit(linked[i].slot, &linked[i].d); err != nil {
			return err
		}
	}
	if pl.err == nil && opt.Records == nil {
		// The next plan reuses what this one parsed; a plan of a few
		// records would leave it too little.
		pl.addrs.forget()
		e.parsed.Store(pl.addrs)
	}
	return pl.err
}

// newPass is a Pass of a project with missing-data codes missing, for a
// plan with options opt.
func newPass(now time.Time, missing []string, opt PlanOptions) *rules.Pass {
	p := rules.NewPass(now, missing)
	if opt.Unexplained {
		p.LeaveUnexplained()
	}
	return p
}

// planChunk is how many records a planner works out at a time.
const planChunk = 64

// maxPlanWorkers bounds the planners working out records at once.
const maxPlanWorkers = 4

// plannedItem is one decision worked out and waiting to be handed on in
// order, with its rule's place in the rules that run. The decision is
// its chunk's decs[dec], or, when dec is -1, the rule's condition is
// false and the decision an unexplained exclusion (excludedDecision):
// a pass has millions, and writing each out in full costs more than the
// rest of their work.
type plannedItem struct {
	rule int
	dec  int
	rec  *rules.Record
	row  *rules.Row
}

// excludedDecision is the decision of rule r on a row its condition is
// false for, unexplained, as decide would make it.
func excludedDecision(r *rules.Rule, rec *rules.Record, row *rules.Row) Decision {
	return Decision{Rule: r.Name, Project: r.Project, Record: rec.ID, Event: row.Event,
		Instrument: row.RepeatInstrument, Instance: row.Instance, Outcome: Excluded}
}

// chunk is the decisions of one chunk of records, worked out and waiting
// to be handed on, and the messages they plan. Once handed on, a chunk is
// reset and reused for another: a pass plans many messages, and
// allocating each anew would keep the garbage collector busy.
type chunk struct {
	items []plannedItem
	decs  []Decision
	msgs  messageArena
	// excluded counts, by place in the rules that run, the rows those
	// rules' conditions are false for, when PlanOptions.CountExcluded
	// counts them instead of items.
	excluded []int
}

// reset empties c for reuse.
func (c *chunk) reset() {
	clear(c.items) // nothing of the records is kept alive by a spare chunk
	clear(c.decs)
	clear(c.excluded)
	c.items, c.decs = c.items[:0], c.decs[:0]
	c.msgs.reset()
}

// messageArena hands out messages from blocks it keeps: after reset, the
// same messages are handed out again.
type messageArena struct {
	blocks [][]storage.Message
	n      int // messages handed out since the last reset
}

// arenaBlock is how many messages a messageArena allocates at a time.
const arenaBlock = 256

// next returns a message of the arena's. Its fields are those it had when
// last handed out (or zero): the caller sets them all.
func (a *messageArena) next() *storage.Message {
	b, i := a.n/arenaBlock, a.n%arenaBlock
	if b == len(a.blocks) {
		a.blocks = append(a.blocks, make([]storage.Message, arenaBlock))
	}
	a.n++
	return &a.blocks[b][i]
}

// reset takes back every message handed out.
func (a *messageArena) reset() { a.n = 0 }

// work appends to out the decisions of the rules idx (places in active,
// all of snap's project) for records recs, record by record, each
// record's in rule order, their messages taken from out's. A store error
// stops it: the decisions so far are in out.
func (pl *planner) work(active []*rules.Rule, idx []int, snap *Snapshot, recs []*rules.Record, opt PlanOptions, out *chunk) error {
	pass := pl.passes[snap.Project]
	if pass == nil {
		pass = newPass(pl.now, snap.Missing, opt)
		pl.passes[snap.Project] = pass
	}
	pl.arena = &out.msgs
	defer func() { pl.arena = nil }()
	for _, rec := range recs {
		if opt.Records != nil && !opt.Records[rec.ID] {
			continue
		}
		for _, i := range idx {
			r := active[i]
			pl.ds = pass.EvaluateNth(i, r, rec, pl.ds[:0])
			for _, d := range pl.ds {
				if pl.unexplained && !d.Selected && d.Err == nil && !pl.isOptedOut(r, d.To) {
					// As decide decides, unexplained.
					if opt.CountExcluded != nil {
						if out.excluded == nil {
							out.excluded = make([]int, len(active))
						}
						out.excluded[i]++
						continue
					}
					out.items = append(out.items, plannedItem{rule: i, dec: -1, rec: rec, row: d.Row})
					continue
				}
				out.items = append(out.items, plannedItem{rule: i, dec: len(out.decs), rec: rec, row: d.Row})
				out.decs = append(out.decs, Decision{})
				dec := &out.decs[len(out.decs)-1]
				pl.at = i
				pl.decideInto(dec, r, rec, d, snap)
				pl.at = -1
				if pl.err != nil {
					return pl.err // the caps could not be counted: this decision may be wrong
				}
				if pl.unexplained && dec.Outcome != Skipped {
					dec.Reason = "" // also those decideTimed explained
				}
			}
		}
	}
	return nil
}

// inOrder works out chunks 0 to n-1 with work, on up to workers
// goroutines each with a planner of its own (see fork), and hands each
// chunk to use in chunk order. A few chunks at most are worked out ahead
// of use, so the decisions held stay few; each is reused once used. An
// error from use or work stops it; the decisions work made before its
// error are used first.
func (pl *planner) inOrder(n, workers int, work func(w *planner, k int, out *chunk) error, use func(c *chunk) error) error {
	if workers <= 1 || n <= 1 {
		c := &chunk{}
		for k := 0; k < n; k++ {
			err := work(pl, k, c)
			if uerr := use(c); uerr != nil {
				return uerr
			}
			if err != nil {
				return err
			}
			c.reset()
		}
		return nil
	}
	type result struct {
		c   *chunk
		err error
	}
	results := make([]chan result, n)
	for k := range results {
		results[k] = make(chan result, 1)
	}
	ahead := make(chan struct{}, 2*workers) // chunks handed out and not yet used
	free := make(chan *chunk, 2*workers)
	jobs := make(chan int)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	go func() {
		defer close(jobs)
		for k := 0; k < n; k++ {
			select {
			case ahead <- struct{}{}:
			case <-stop:
				return
			}
			select {
			case jobs <- k:
			case <-stop:
				return
			}
		}
	}()
	for range workers {
		w := pl.fork()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				var c *chunk
				select {
				case c = <-free:
				default:
					c = &chunk{}
				}
				err := work(w, k, c)
				results[k] <- result{c, err}
			}
		}()
	}
	for k := 0; k < n; k++ {
		r := <-results[k]
		err := use(r.c)
		// The chunk is reset before the next one is handed out: no
		// worker writes to it while use reads it.
		r.c.reset()
		select {
		case free <- r.c:
		default:
		}
		<-ahead
		if err != nil {
			return err
		}
		if r.err != nil {
			return r.err
		}
	}
	return nil
}

// fork returns a planner for another goroutine: it shares pl's read-only
// state (the store's answers, the parsed numbers) and has its own of the
// rest. It is for plans without caps: its count of planned texts is its own.
func (pl *planner) fork() *planner {
	w := *pl
	w.toReasons = nil
	w.block = nil
	w.arena = nil
	w.phones = nil
	w.rendered = make([]renderedRow, len(pl.rendered))
	w.windows = make([]windowMemo, len(pl.windows))
	w.lastPhone.ok = false
	w.ds = nil
	w.passes = make(map[string]*rules.Pass, len(pl.passes))
	w.senders = make(map[string]rules.Sender)
	w.texts = make(map[string][]time.Time)
	w.planned = make(map[string][]time.Time)
	w.err = nil
	return &w
}

type planner struct {
	e        *Engine
	now      time.Time
	optedOut map[string]bool
	sent     map[string]storage.Occurrence
	bad      map[string]storage.BadNumber // numbers Twilio said cannot get texts
	paused   map[string]time.Time         // numbers whose texts a reply paused, with the pause's end
	addrs    *parsedAddresses             // raw values parsed, once per plan (or taken from the last plan's)
	phones   map[addressKey]phone         // the phone numbers this planner took from addrs
	// at is the place in the rules that run of the rule work is deciding
	// (-1: none), by which the caches below are found without a map.
	at int
	// slots gives, by place in the rules that run, the place in rendered
	// of the rule's template (shared by the planners, never changed).
	slots     []int
	rendered  []renderedRow // by template slot: its last row's content (see rowContent)
	windows   []windowMemo  // by place in the rules that run: when's last hours
	lastPhone struct {      // the number phone gave last
		key addressKey
		p   phone
		ok  bool
	}
	ds        []rules.Decision  // work's verdicts of the record and rule at hand
	scope     rules.Scope       // decide's scope of the row at hand
	toReasons map[string]string // address → toReason's reason
	block     []storage.Message // the messages message has yet to hand out
	arena     *messageArena     // when set, where message takes its messages from (see work)
	// optOutTails holds the last four digits of every opted-out number, so
	// only the few rows that could be opted out have their number parsed.
	optOutTails map[string]bool
	passes      map[string]*rules.Pass  // per project
	senders     map[string]rules.Sender // per project, once per pass
	// timedKeys holds every stored message of the timed rules that run,
	// by key (see loadTimed).
	timedKeys map[string]storage.KeyState
	// timedOther lists the stored keys of timed rules that hold a once_per
	// part, by the key without it (see splitOncePer).
	timedOther map[string][]string
	texts      map[string][]time.Time // number → its stored texts counted for the caps, read once per pass
	planned    map[string][]time.Time // number → when the texts planned in this pass go out
	err        error                  // a store error while counting texts: the plan fails
	// unexplained leaves reasons blank but a skip's (PlanOptions.Unexplained).
	unexplained bool
	ctx         context.Context
	links       *surveyLinks // the participants' survey links; nil: none can be piped
}

// when decides when a message of rule r to the participant at to (in zone
// loc) may go out, at the earliest now: after a pause the participant
// asked for by a reply, inside the rule's window and outside the study's
// quiet hours (texts), and within the study's caps (texts): the texts the
// number got or has queued, and those planned earlier in this pass (rules
// in file order), so that the first rule due gets the day's text. expires
// is the message's expiry, from the first time the hours allow; a cap that
// pushes the message to or past it means it cannot go out in time. reason
// says what deferred it.
func (pl *planner) when(r *rules.Rule, loc *time.Location, to, key string) (notBefore, expires time.Time, reason string) {
	cfg := pl.e.study().Config
	quiet := cfg.QuietFor(r)
	start := pl.now
	if until := pl.paused[to]; r.Channel == rules.ChannelSMS && until.After(start) {
		start, reason = until, "the participant paused their texts"
	}
	// The hours allowed are worked out once per rule, zone and start: a
	// pass asks for the same few many times over.
	wk := windowKey{r, loc, start}
	var memo *windowMemo
	if pl.at >= 0 && pl.at < len(pl.windows) {
		memo = &pl.windows[pl.at]
	}
	w := memo.get(wk)
	if w == nil {
		w = new(window)
		w.notBefore, _ = r.NextAllowed(start, loc, quiet)
		if w.notBefore.After(pl.now) {
			w.reason = "outside the allowed hours"
			if quiet != nil && r.Window.Contains(start, loc) {
				w.reason = "in the study's quiet hours " + quiet.String()
			}
		}
		w.expires = r.ExpiresAt(w.notBefore, loc)
		memo.set(wk, *w)
	}
	notBefore, expires = w.notBefore, w.expires
	if reason == "" {
		reason = w.reason
	}
	if r.Channel != rules.ChannelSMS || !cfg.Caps.Active() {
		return notBefore, expires, reason
	}
	texts := append(pl.capTexts(to, key), pl.planned[to]...)
	for notBefore.Before(expires) {
		ok, why := cfg.Caps.Allows(notBefore, loc, texts)
		if ok {
			return notBefore, expires, reason
		}
		reason = why
		notBefore, _ = r.NextAllowed(rules.NextDay(notBefore, loc), loc, quiet)
	}
	return notBefore, expires, reason
}

// windowKey is what the hours a message may go out in depend on: its
// rule, the participant's zone and the earliest time it may go (see when).
type windowKey struct {
	r     *rules.Rule
	loc   *time.Location
	start time.Time
}

// window is when's answer for a windowKey, before the caps.
type window struct {
	notBefore, expires time.Time
	reason             string
}

// windowMemo is a rule's last window and its key.
type windowMemo struct {
	key windowKey
	w   window
	ok  bool
}

// get returns the window of k when it is the memo's; m may be nil.
func (m *windowMemo) get(k windowKey) *window {
	if m == nil || !m.ok || m.key != k {
		return nil
	}
	return &m.w
}

// set makes w, for k, the memo's window; m may be nil.
func (m *windowMemo) set(k windowKey, w window) {
	if m != nil {
		*m = windowMemo{key: k, w: w, ok: true}
	}
}

// capTexts is the texts stored for number to that count for the caps,
// read once per pass (key: the message being planned, not counted); the
// slice may be appended to.
func (pl *planner) capTexts(to, key string) []time.Time {
	texts, ok := pl.texts[to]
	if !ok {
		var err error
		// Eight days back covers the longest span a cap counts.
		texts, err = pl.e.Store.Texts(pl.ctx, to, pl.now.Add(-8*24*time.Hour), true, key)
		if err != nil && pl.err == nil {
			pl.err = err
		}
		pl.texts[to] = texts
	}
	return texts[:len(texts):len(texts)]
}

// sender is Engine.sender with each project's SMS sender worked out once.
func (pl *planner) sender(r *rules.Rule, to string) string {
	if r.Channel == rules.ChannelEmail {
		return pl.e.sender(r, to)
	}
	s, ok := pl.senders[r.Project]
	if !ok {
		s = pl.e.study().Config.SenderFor(r.Project)
		pl.senders[r.Project] = s
	}
	return s.Pick(to)
}

// tail is the last four digits in s.
func tail(s string) string {
	var d []byte
	for i := len(s) - 1; i >= 0 && len(d) < 4; i-- {
		if c := s[i]; c >= '0' && c <= '9' {
			d = append(d, c)
		}
	}
	return string(d)
}

// optedOut reports whether a row's SMS recipient has opted out.
func (pl *planner) isOptedOut(r *rules.Rule, raw string) bool {
	if r.Channel != "sms" || len(pl.optOutTails) == 0 || !pl.optOutTails[tail(raw)] {
		return false
	}
	to, reason := pl.address(r, raw)
	return reason == "" && pl.optedOut[to]
}

type phone struct {
	e164 string
	err  error
}

// decide is the decision of rule r for a row of record rec (d: the
// rule's verdict on it).
func (pl *planner) decide(r *rules.Rule, rec *rules.Record, d rules.Decision, snap *Snapshot) Decision {
	var out Decision
	pl.decideInto(&out, r, rec, d, snap)
	return out
}

// decideInto is decide, writing its decision to out: a pass decides
// millions, each straight into its place.
func (pl *planner) decideInto(out *Decision, r *rules.Rule, rec *rules.Record, d rules.Decision, snap *Snapshot) {
	row := d.Row
	*out = Decision{Rule: r.Name, Project: r.Project, Record: rec.ID, Event: row.Event,
		Instrument: row.RepeatInstrument, Instance: row.Instance, Selected: d.Selected}
	switch {
	case pl.isOptedOut(r, d.To):
		// Said first, whatever the condition: after a STOP the write-back
		// usually makes the condition false too, and "opted out" is the
		// reason a coordinator needs to see.
		out.Outcome, out.Reason = Skipped, "opted out"
		return
	case d.Err != nil:
		out.Outcome, out.Reason = Skipped, "the condition could not be evaluated: "+d.Err.Error()
		return
	case !d.Selected:
		out.Outcome, out.Reason = Excluded, d.Reason
		return
	}

	to, reason := pl.address(r, d.To)
	if reason != "" {
		if r.Fallback != nil {
			if fb, ok := pl.fallback(r, rec, d, snap, reason); ok {
				*out = fb
				return
			}
		}
		out.Outcome, out.Reason = Skipped, reason
		return
	}
	if r.Timed() {
		*out = pl.decideTimed(r, rec, d, snap, *out, to)
		return
	}

	// Repeat schedule: which occurrence is due, if any. With once_per it is
	// counted per value of the field.
	value := ""
	if r.OncePer.Field != "" {
		value, reason = r.OncePerDigest(rules.NewScope(rec, row, pl.now, snap.Missing))
		if reason != "" {
			out.Outcome, out.Reason = Skipped, reason
			return
		}
	}
	occ := pl.occurrences(r.Project, r.Name, rec.ID, r.KeyEvent(row), row.Instance, value)
	if occ.Next == 0 {
		occ.Next = 1
	}
	max := r.Repeat.Max
	if max < 1 {
		max = 1
	}
	per := ""
	if value != "" {
		per = " for this value of " + r.OncePer.String()
	}
	switch {
	case occ.Count >= max:
		out.Outcome = Done
		if !pl.unexplained {
			out.Reason = fmt.Sprintf("already messaged (%d of %d)%s", occ.Count, max, per)
		}
		return
	case occ.Count > 0 && pl.now.Sub(occ.Last) < r.Repeat.Every:
		next := occ.Last.Add(r.Repeat.Every).In(pl.e.study().Config.Location)
		out.Outcome = Done
		if !pl.unexplained {
			out.Reason = fmt.Sprintf("messaged %d of %d%s; the next one is due %s", occ.Count, max, per, next.Format("2006-01-02 15:04"))
		}
		return
	}

	// The scope is the planner's own, reused: nothing keeps it.
	pl.scope = *pl.passes[r.Project].Scope(rec, row, pl.now)
	scope := &pl.scope
	loc, err := r.Location(scope, pl.e.study().Config.Location)
	if err != nil {
		out.Outcome, out.Reason = Skipped, err.Error()
		return
	}
	key := messageKey(r.Project, r.Name, rec.ID, r.KeyEvent(row), row.Instance, value, occ.Next)
	notBefore, expires, reason := pl.when(r, loc, to, key)
	out.Outcome = Send
	if notBefore.After(pl.now) {
		out.Outcome = Deferred
		if !pl.unexplained {
			out.Reason = reason + "; planned for " + notBefore.In(loc).Format("2006-01-02 15:04 MST")
		}
	}
	if !notBefore.Before(expires) {
		out.Outcome, out.Reason = Skipped, reason+"; the first time it may go out is after it would expire"
		return
	}
	c, reason := pl.rowContent(r, rec, row, scope, to)
	if reason != "" {
		out.Outcome, out.Reason = Skipped, reason
		return
	}
	if r.Channel == rules.ChannelSMS && pl.e.study().Config.Caps.Active() {
		// Counted for the caps only.
		pl.planned[to] = append(pl.planned[to], notBefore)
	}
	m := pl.message()
	*m = storage.Message{
		Key:     key,
		Project: r.Project, Rule: r.Name, Record: rec.ID, Event: row.Event,
		Instrument: row.RepeatInstrument, Instance: row.Instance, Occurrence: occ.Next, OncePer: value,
		Channel: r.Channel, To: c.To, From: pl.sender(r, c.To), Subject: c.Subject, Body: c.Body, HTML: c.HTML,
		Segments: c.Segments, State: storage.StatePlanned,
		NotBefore: notBefore, ExpiresAt: expires, Zone: loc.String(), CreatedAt: pl.now,
	}
	if out.Outcome == Send && !pl.unexplained {
		out.Reason = pl.toReason(r, to)
	}
	out.Message = m
}

// message returns a message for decide to fill in: one of the chunk's
// being worked out (see work), or else a new one. Messages are allocated
// in blocks: a plan has many.
func (pl *planner) message() *storage.Message {
	if pl.arena != nil {
		return pl.arena.next()
	}
	if len(pl.block) == 0 {
		pl.block = make([]storage.Message, 256)
	}
	m := &pl.block[0]
	pl.block = pl.block[1:]
	return m
}

// toReason is the reason of rule r's message sent now to the address to
// ("to" and the address redacted), built once per number and pass.
func (pl *planner) toReason(r *rules.Rule, to string) string {
	if r.Channel == rules.ChannelEmail {
		// Participants seldom share an address: nothing to remember.
		return "to " + redact(to)
	}
	why, ok := pl.toReasons[to]
	if !ok {
		why = "to " + redact(to)
		if pl.toReasons == nil {
			pl.toReasons = make(map[string]string)
		}
		pl.toReasons[to] = why
	}
	return why
}

// sender is the address a rule's message to the recipient to goes out
// from. For SMS it is the number itself, also when a Messaging Service
// sends: the number of its pool Sender.Pick gives this recipient. The
// outbox then holds the number Twilio sends from, so pacing (also after a
// restart), dispatch workers and lookups of unanswered creates all go by
// the real number.
func (e *Engine) sender(r *rules.Rule, to string) string {
	if r.Channel == rules.ChannelEmail {
		return e.study().Config.SMTP.From
	}
	return e.study().Config.SenderFor(r.Project).Pick(to)
}

// rowContent is content for the row at hand, whose scope is the
// planner's own at the plan's time. A template piping no survey link
// renders the same for every rule that uses it on one row: it is rendered
// once per row, and the other rules take the text as it came out.
func (pl *planner) rowContent(r *rules.Rule, rec *rules.Record, row *rules.Row, scope *rules.Scope, to string) (storage.Content, string) {
	if hasSurveyLinks(r) {
		return pl.content(r, scope, to)
	}
	if pl.at < 0 || pl.at >= len(pl.slots) {
		return pl.content(r, scope, to)
	}
	var tmpl any = r.SMS
	if r.Channel == rules.ChannelEmail {
		tmpl = r.Email
	}
	e := &pl.rendered[pl.slots[pl.at]]
	if e.tmpl == tmpl && e.rec == rec && e.row == row && e.project == r.Project {
		c := e.c
		c.To = to
		return c, e.reason
	}
	c, reason := pl.content(r, scope, to)
	*e = renderedRow{tmpl: tmpl, rec: rec, row: row, project: r.Project, c: c, reason: reason}
	return c, reason
}

// templateSlots numbers the templates of rules (an SMS rule's and an email
// rule's apart), giving each rule its template's number, and says how
// many there are.
func templateSlots(rs []*rules.Rule) (slots []int, n int) {
	seen := map[any]int{}
	for _, r := range rs {
		var tmpl any = r.SMS
		if r.Channel == rules.ChannelEmail {
			tmpl = r.Email
		}
		k, ok := seen[tmpl]
		if !ok {
			k = len(seen)
			seen[tmpl] = k
		}
		slots = append(slots, k)
	}
	return slots, len(seen)
}

// renderedRow is a template's content for a row (see rowContent).
type renderedRow struct {
	tmpl    any // the rule's *templates.SMS or *templates.Email
	rec     *rules.Record
	row     *rules.Row
	project string
	c       storage.Content
	reason  string
}

// content renders a rule's message for one participant row: the text (and
// for email the subject and HTML part) and its SMS segments. to is the
// recipient, already checked. The reason is set when the message cannot be
// sent as it stands (a blank piped field, a text too long).
func (pl *planner) content(r *rules.Rule, scope *rules.Scope, to string) (storage.Content, string) {
	c := storage.Content{To: to}
	dict := pl.e.Dicts[r.Project]
	src := pl.source(r, scope)
	var err error
	switch r.Channel {
	case rules.ChannelSMS:
		if c.Body, err = r.SMS.Body.Render(src, dict); err == nil {
			segs, n := templates.Measure(c.Body)
			if n > maxSMSLength {
				err = fmt.Errorf("the message is %d characters long; Twilio refuses more than %d", n, maxSMSLength)
			}
			c.Segments = segs.Count
		}
	case rules.ChannelEmail:
		if c.Subject, err = r.Email.Subject.Render(src, dict); err == nil {
			if c.Body, err = r.Email.Text.Render(src, dict); err == nil && r.Email.HTML != nil {
				c.HTML, err = r.Email.HTML.Render(src, dict)
			}
		}
	}
	if err != nil {
		return c, "template " + r.Template + ": " + err.Error()
	}
	return c, ""
}

// address turns the raw value of the rule's `to` field into the address a
// message goes to, or says why there is none.
func (pl *planner) address(r *rules.Rule, raw string) (string, string) {
	raw = strings.TrimSpace(raw)
	field := r.To.String
	if raw == "" {
		if r.Channel == "sms" {
			return "", reasonNoPhone + field()
		}
		return "", "no email address in " + field()
	}
	if r.Channel == "email" {
		if plainEmail(raw) {
			return raw, "" // as mail.ParseAddress gives it, without remembering it
		}
		a := pl.addrs.get(true, raw, "")
		if a.err != nil {
			return "", fmt.Sprintf("invalid email address in %s", field())
		}
		return a.e164, ""
	}
	p := pl.phone(raw, pl.e.study().Config.Twilio.Region)
	if p.err != nil {
		return "", fmt.Sprintf(reasonBadPhone+"%s (%s): %v", field(), redact(raw), p.err)
	}
	if b, ok := pl.bad[p.e164]; ok {
		return "", fmt.Sprintf(reasonFlaggedPhone+"%s (%s) cannot get texts (error %d); correct it in REDCap", field(), redact(raw), b.Code)
	}
	return p.e164, ""
}

// phone is pl.addrs.get of a phone number, remembered by the planner too:
// its own map needs no lock, which the planners on other cores would
// contend for.
// The last number looked up is at hand without a map: the rules that text
// a participant look up the same number one after the other.
func (pl *planner) phone(raw, region string) phone {
	k := addressKey{region, raw}
	if pl.lastPhone.ok && pl.lastPhone.key == k {
		return pl.lastPhone.p
	}
	p, ok := pl.phones[k]
	if !ok {
		p = pl.addrs.get(false, raw, region)
		if pl.phones == nil {
			pl.phones = make(map[addressKey]phone)
		}
		pl.phones[k] = p
	}
	pl.lastPhone.key, pl.lastPhone.p, pl.lastPhone.ok = k, p, true
	return p
}

// parsedAddresses holds the phone numbers and email addresses a plan has
// parsed, by raw value, for all its planners. Those it has not parsed it
// takes from the last plan's (prev) when there, so that it ends holding
// just those of its own plan.
type parsedAddresses struct {
	mu     sync.RWMutex
	phones map[addressKey]phone // by NormalizePhone's region and the raw value
	emails map[addressKey]phone // by the raw value alone; the address is in e164
	prev   *parsedAddresses     // the last plan's, or nil
	parsed int                  // how many values this plan parsed itself
}

// addressKey is a raw address with the region a phone number is read in.
type addressKey struct{ region, raw string }

func newParsedAddresses(prev *parsedAddresses) *parsedAddresses {
	a := &parsedAddresses{phones: make(map[addressKey]phone), emails: make(map[addressKey]phone), prev: prev}
	if prev != nil {
		a.phones = make(map[addressKey]phone, len(prev.phones))
	}
	return a
}

// forget lets go of the last plan's: a holds what it took from it.
func (a *parsedAddresses) forget() {
	a.mu.Lock()
	a.prev = nil
	a.mu.Unlock()
}

// get returns the parsed email address (email) or phone number raw,
// parsing it the first time; region is NormalizePhone's.
func (a *parsedAddresses) get(email bool, raw, region string) phone {
	m, key := a.phones, addressKey{region, raw}
	if email {
		m = a.emails
	}
	a.mu.RLock()
	p, ok := m[key]
	prev := a.prev
	a.mu.RUnlock()
	if ok {
		return p
	}
	if prev != nil {
		p, ok = prev.lookup(email, key)
	}
	if !ok {
		if email {
			p = parseEmail(raw)
		} else {
			p.e164, p.err = NormalizePhone(raw, region)
		}
	}
	a.mu.Lock()
	m[key] = p
	if !ok {
		a.parsed++
	}
	a.mu.Unlock()
	return p
}

// lookup returns what a parsed of key (see get), without parsing it.
func (a *parsedAddresses) lookup(email bool, key addressKey) (phone, bool) {
	m := a.phones
	if email {
		m = a.emails
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	p, ok := m[key]
	return p, ok
}

// plainEmail reports whether raw is a plain address local@domain: ASCII
// letters and digits, with '-', '_' and '+' in the local part, '-' in the
// domain, and dots between them (never first, last or doubled in either).
// mail.ParseAddress gives such an address back as it is.
func plainEmail(raw string) bool {
	at := strings.IndexByte(raw, '@')
	return at > 0 && plainDotAtom(raw[:at], true) && plainDotAtom(raw[at+1:], false)
}

// plainDotAtom reports whether s is plainEmail's local part (local) or
// domain.
func plainDotAtom(s string, local bool) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-':
		case c == '.':
			if s[i-1] == '.' {
				return false
			}
		case local && (c == '_' || c == '+'):
		default:
			return false
		}
	}
	return true
}

// parseEmail parses an email address as a coordinator typed it.
func parseEmail(raw string) phone {
	addr, err := mail.ParseAddress(raw)
	if err != nil {
		return phone{err: err}
	}
	return phone{e164: addr.Address}
}

// NormalizePhone parses a phone number as a coordinator typed it and returns
// it in E.164 form; region is the ISO country assumed for numbers written
// without a country code ("US" when empty).
func NormalizePhone(raw, region string) (string, error) {
	if region == "" {
		region = "US"
	}
	n, err := phonenumbers.Parse(raw, region)
	if err != nil {
		return "", fmt.Errorf("not a phone number")
	}
	if !phonenumbers.IsValidNumber(n) {
		return "", fmt.Errorf("not a valid number")
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

// messageKey is the outbox idempotency key
// project/rule/record/event/instance/occurrence, with the digest of the
// once_per value before the occurrence when there is one
// (…/instance/v<digest>/occurrence); each part is escaped so a record id
// holding a slash cannot collide with another key.
func messageKey(project, rule, record, event string, instance int, oncePer string, occurrence int) string {
	b := appendOccurrenceKey(make([]byte, 0, 64), project, rule, record, event, instance, oncePer)
	b = append(b, '/')
	return string(strconv.AppendInt(b, int64(occurrence), 10))
}

func occurrenceKey(project, rule, record, event string, instance int, oncePer string) string {
	return string(appendOccurrenceKey(make([]byte, 0, 64), project, rule, record, event, instance, oncePer))
}

// appendOccurrenceKey appends occurrenceKey's key to b.
func appendOccurrenceKey(b []byte, project, rule, record, event string, instance int, oncePer string) []byte {
	b = appendEscaped(b, project)
	b = append(b, '/')
	b = appendEscaped(b, rule)
	b = append(b, '/')
	b = appendEscaped(b, record)
	b = append(b, '/')
	b = appendEscaped(b, event)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(instance), 10)
	if oncePer != "" {
		b = append(b, "/v"...)
		b = appendEscaped(b, oncePer)
	}
	return b
}

// appendEscaped appends url.PathEscape(s) to b, without building a string
// when s holds only letters, digits and the marks PathEscape leaves as
// they are.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !pathSafe(s[i]) {
			return append(b, url.PathEscape(s)...)
		}
	}
	return append(b, s...)
}

// pathSafe reports whether url.PathEscape leaves c as it is (a subset: the
// other bytes it keeps go through PathEscape itself).
func pathSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
}

// occurrences is how often a rule has messaged a participant row (for one
// once_per value, when oncePer is set). Messages planned before the rule
// had once_per hold no value: nudge cannot know which value they were for,
// so they count for every value, and nobody already messaged is messaged
// again because once_per was added.
func (pl *planner) occurrences(project, rule, record, event string, instance int, oncePer string) storage.Occurrence {
	if len(pl.sent) == 0 {
		return storage.Occurrence{} // nothing was ever sent: no key to build
	}
	occ := pl.sent[occurrenceKey(project, rule, record, event, instance, oncePer)]
	if oncePer != "" {
		if legacy, ok := pl.sent[occurrenceKey(project, rule, record, event, instance, "")]; ok {
			occ = addOccurrences(occ, legacy)
		}
	}
	return occ
}

// addOccurrences counts the messages of a and b together.
func addOccurrences(a, b storage.Occurrence) storage.Occurrence {
	a.Count += b.Count
	a.Next = max(a.Next, b.Next)
	if b.Last.After(a.Last) {
		a.Last = b.Last
	}
	return a
}

// redact hides all but the last two characters of a phone number or address
// so that logs and previews never show one in full.
func redact(s string) string {
	if !utf8.ValidString(s) {
		return redactRunes(s)
	}
	n := utf8.RuneCountInString(s)
	if n <= 4 {
		return strings.Repeat("•", n)
	}
	keep := 2
	prefix := 0
	if s[0] == '+' {
		prefix = 2
	}
	// The first prefix runes and the last keep runes are shown.
	head := 0
	for i := 0; i < prefix; i++ {
		_, size := utf8.DecodeRuneInString(s[head:])
		head += size
	}
	tail := len(s)
	for i := 0; i < keep; i++ {
		_, size := utf8.DecodeLastRuneInString(s[:tail])
		tail -= size
	}
	var b strings.Builder
	b.Grow(head + (n-keep-prefix)*len("•") + len(s) - tail)
	b.WriteString(s[:head])
	for i := 0; i < n-keep-prefix; i++ {
		b.WriteString("•")
	}
	b.WriteString(s[tail:])
	return b.String()
}

// redactRunes is redact for text that is not valid UTF-8: each invalid byte
// counts as, and when shown becomes, one U+FFFD.
func redactRunes(s string) string {
	r := []rune(s)
	if len(r) <= 4 {
		return strings.Repeat("•", len(r))
	}
	keep := 2
	prefix := 0
	if r[0] == '+' {
		prefix = 2
	}
	return string(r[:prefix]) + strings.Repeat("•", len(r)-keep-prefix) + string(r[len(r)-keep:])
}
