package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// reportRule is the Rule of a run report in the outbox. Rule names hold no
// ':', so it never clashes with a rule's.
const reportRule = "report:team"

// reportRecordPrefix starts the Record of a run report in the outbox; the
// study day follows, so that the last report is found among a few days'
// rows, never the whole history.
const reportRecordPrefix = "report-"

// reportLookback is how far back the last report is looked for; the first
// report (or one after a long silence) covers at most this much.
const (
	reportLookbackDays = 8
	reportFirstWindow  = 24 * time.Hour
	// reportListMax bounds each list of the email; the JSON file holds all.
	reportListMax = 50
)

// Report file names: report-<UTC time>-<run or daily>.json.
const (
	reportFilePrefix = "report-"
	reportFileSuffix = ".json"
)

// isReport reports whether an outbox message is a run report to the team.
func isReport(m storage.Message) bool { return m.Rule == reportRule }

// PassReport is what the study team is told after a pass (or in the daily
// digest): the pass's counts per rule, what was not reached since the
// last report, and what holds sending back. It names records and message
// ids; a contact is only ever shown masked, and no message text is in it.
type PassReport struct {
	Study   string    `json:"study"`
	RunID   int64     `json:"run_id,omitempty"` // the pass reported on; 0 = none (a digest before any pass)
	At      time.Time `json:"at"`
	Since   time.Time `json:"since"` // not_reached and sent cover events from Since to At
	Outcome string    `json:"outcome"`
	// Rules counts each rule's decisions in the pass, and what it sent since
	// the last report.
	Rules     []ReportRule  `json:"rules"`
	Enqueued  int           `json:"enqueued"`
	Dispatch  DispatchStats `json:"dispatch"`
	WriteBack ReportStats   `json:"write_back"`
	// NotReached is the worklist delta: who was not reached since the last
	// report, and why.
	NotReached NotReached `json:"not_reached"`
	// Held is the kill switch and every paused sender, in words.
	Held []string `json:"held,omitempty"`
}

// ReportRule is one rule's counts in a report.
type ReportRule struct {
	RuleSummary
	Sent int `json:"sent"` // handed to Twilio or the SMTP server since the last report
}

// NotReached lists, since the last report, the messages and numbers that
// did not reach a participant and the write-backs REDCap refused.
type NotReached struct {
	Undelivered      []ReportItem `json:"undelivered"`
	Failed           []ReportItem `json:"failed"`
	Expired          []ReportItem `json:"expired"`
	BadNumbers       []ReportItem `json:"bad_numbers"`
	OptOuts          []ReportItem `json:"opt_outs"`
	FailedWriteBacks []ReportItem `json:"failed_write_backs"`
}

// ReportItem is one entry of the worklist: where, and a masked contact.
type ReportItem struct {
	Project   string    `json:"project,omitempty"`
	Record    string    `json:"record,omitempty"`
	Rule      string    `json:"rule,omitempty"`
	MessageID int64     `json:"message_id,omitempty"`
	To        string    `json:"to,omitempty"`    // masked
	Error     int       `json:"error,omitempty"` // Twilio's error code
	Field     string    `json:"field,omitempty"` // a refused write-back's field
	At        time.Time `json:"at"`
}

// lists names each list of the worklist, in report order.
func (n *NotReached) lists() []struct {
	name  string
	items []ReportItem
} {
	return []struct {
		name  string
		items []ReportItem
	}{
		{"undelivered", n.Undelivered}, {"failed", n.Failed}, {"expired", n.Expired},
		{"bad numbers", n.BadNumbers}, {"opt-outs", n.OptOuts}, {"failed write-backs", n.FailedWriteBacks},
	}
}

// Len is how many entries the worklist delta has.
func (n *NotReached) Len() int {
	k := 0
	for _, l := range n.lists() {
		k += len(l.items)
	}
	return k
}

// afterPass makes the run report of a pass: its JSON file, and its email
// when one is due. A report that cannot be made is logged; it never
// changes the pass's outcome.
func (e *Engine) afterPass(ctx context.Context, res *RunResult, outcome string) {
	if e.study().Config.Reports == nil {
		return
	}
	if err := e.makeReport(context.WithoutCancel(ctx), res, outcome); err != nil {
		e.log().WithError(err).Warn("the run report could not be made; the next pass tries again")
	}
}

// DailyReport emails the daily digest when reports.when is daily and its
// time has come today and it was not sent yet (`nudge serve` runs it at
// reports.daily_at; a pass checks it too).
func (e *Engine) DailyReport(ctx context.Context) error {
	c := e.study().Config.Reports
	if c == nil || c.When != rules.ReportDaily || len(c.To) == 0 {
		return nil
	}
	return e.makeReport(ctx, nil, "")
}

// makeReport writes a pass's report (res nil: a digest without a pass) and
// enqueues and delivers its email when due.
func (e *Engine) makeReport(ctx context.Context, res *RunResult, outcome string) error {
	c := e.study().Config.Reports
	now := e.now()
	loc := e.study().Config.Location
	var keys []string
	if len(c.To) > 0 {
		base := ""
		switch c.When {
		case rules.ReportDaily:
			if day, due := dailyDue(now.In(loc), c.DailyAt); due {
				base = "report/daily/" + day
			}
		default:
			if res != nil {
				base = "report/run/" + strconv.FormatInt(res.RunID, 10)
			}
		}
		if base != "" {
			for _, to := range c.To {
				keys = append(keys, base+"/"+addrTag(to))
			}
			if _, err := e.Store.ByKey(ctx, keys[0]); err == nil {
				keys = nil // sent already: the digest of the day, once
			} else if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
		}
	}
	if len(keys) == 0 && (res == nil || c.Dir == "") {
		return nil
	}
	since, err := e.lastReportAt(ctx, now)
	if err != nil {
		return err
	}
	rep, err := e.buildReport(ctx, res, outcome, since, now)
	if err != nil {
		return err
	}
	if res != nil && c.Dir != "" {
		if err := writeReportFile(c.Dir, c.Keep, rep); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if c.When != rules.ReportDaily {
		changed, err := e.changedSinceLast(ctx, rep)
		if err != nil || !changed {
			return err
		}
	}
	return e.sendReport(ctx, rep, keys, now)
}

// dailyDue says whether the daily digest's time has come on the local day
// of now, and names the day.
func dailyDue(local time.Time, at int) (string, bool) {
	return local.Format(time.DateOnly), local.Hour()*60+local.Minute() >= at
}

// addrTag names a recipient in a report's key without writing the address.
func addrTag(addr string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(addr))))
	return hex.EncodeToString(sum[:6])
}

// lastReportAt is when the last report email was queued, or, when none was
// in the last reportLookbackDays, reportFirstWindow before now.
func (e *Engine) lastReportAt(ctx context.Context, now time.Time) (time.Time, error) {
	loc := e.study().Config.Location
	project := e.study().Config.Projects[0].Name
	for d := range reportLookbackDays {
		day := now.In(loc).AddDate(0, 0, -d).Format(time.DateOnly)
		ms, err := e.Store.RecordMessages(ctx, project, reportRecordPrefix+day)
		if err != nil {
			return time.Time{}, err
		}
		var last time.Time
		for _, m := range ms {
			if isReport(m) && m.CreatedAt.After(last) {
				last = m.CreatedAt
			}
		}
		if !last.IsZero() {
			return last, nil
		}
	}
	return now.Add(-reportFirstWindow), nil
}

// passSummary is the part of a run's stored summary a report reads.
type passSummary struct {
	Enqueued int           `json:"enqueued"`
	Dispatch DispatchStats `json:"dispatch"`
	Report   ReportStats   `json:"report"`
	Rules    []RuleSummary `json:"rules"`
	HeldBack []string      `json:"held_back"`
}

// buildReport gathers a report: the pass (res nil: the last pass as
// stored), and the audit trail from since to now for the worklist delta.
func (e *Engine) buildReport(ctx context.Context, res *RunResult, outcome string, since, now time.Time) (*PassReport, error) {
	study := e.study().Config.Study
	if study == "" {
		study = "nudge"
	}
	rep := &PassReport{Study: study, At: now, Since: since, Outcome: outcome}
	var sums []RuleSummary
	if res != nil {
		rep.RunID, rep.Enqueued, rep.Dispatch, rep.WriteBack = res.RunID, res.Enqueued, res.Dispatch, withoutReasons(res.Report)
		if res.Plan != nil {
			sums = res.Plan.Summaries(e)
		}
	} else if runs, err := e.Store.Runs(ctx, 1); err != nil {
		return nil, err
	} else if len(runs) > 0 {
		var ps passSummary
		if len(runs[0].Summary) > 0 {
			if err := json.Unmarshal(runs[0].Summary, &ps); err != nil {
				return nil, fmt.Errorf("reading run %d's summary: %w", runs[0].ID, err)
			}
		}
		rep.RunID, rep.Outcome, rep.Enqueued, rep.Dispatch, rep.WriteBack = runs[0].ID, runs[0].Outcome, ps.Enqueued, ps.Dispatch, withoutReasons(ps.Report)
		sums = ps.Rules
	}
	rep.Rules = make([]ReportRule, 0, len(sums))
	byRule := map[string]int{}
	for i, s := range sums {
		rep.Rules = append(rep.Rules, ReportRule{RuleSummary: s})
		byRule[s.Name] = i
	}
	nr := &rep.NotReached
	// Once per message (or record and number) in each list: a message's
	// failure is recorded both at the send and by the status poll.
	seen := map[string]bool{}
	add := func(list *[]ReportItem, name string, it ReportItem) {
		k := fmt.Sprintf("%s\x00%d\x00%s\x00%s\x00%s", name, it.MessageID, it.Project, it.Record, it.To)
		if it.MessageID != 0 {
			k = fmt.Sprintf("%s\x00%d", name, it.MessageID)
		}
		if name == "write-back" {
			k += "\x00" + it.Field
		}
		if !seen[k] {
			seen[k] = true
			*list = append(*list, it)
		}
	}
	// The window begins just after the last report, which covered events
	// up to the instant it was made.
	err := e.Store.AuditEach(ctx, since.Add(time.Nanosecond), now.Add(time.Nanosecond), func(ev storage.AuditEvent) error {
		if ev.Rule == reportRule {
			return nil
		}
		it := ReportItem{Project: ev.Project, Record: ev.Record, Rule: ev.Rule, MessageID: ev.MessageID, At: ev.At}
		if ev.Contact != "" {
			it.To = redact(ev.Contact)
		}
		it.Error, _ = strconv.Atoi(detailValue(ev.Detail, "error"))
		switch ev.Kind {
		case storage.AuditSent:
			if i, ok := byRule[ev.Rule]; ok {
				rep.Rules[i].Sent++
			}
		case storage.AuditStatus:
			switch detailValue(ev.Detail, "status") {
			case "undelivered":
				add(&nr.Undelivered, "undelivered", it)
			case "failed":
				add(&nr.Failed, "failed", it)
			}
		case storage.AuditFailed, storage.AuditReview:
			add(&nr.Failed, "failed", it)
		case storage.AuditExpired:
			add(&nr.Expired, "expired", it)
		case storage.AuditBadNumber:
			add(&nr.BadNumbers, "bad number", it)
		case storage.AuditOptedOut:
			add(&nr.OptOuts, "opt-out", it)
		case storage.AuditWriteBackFailed:
			// Never the value: only the field it was for.
			it.Error, it.Field = 0, detailValue(ev.Detail, "field")
			add(&nr.FailedWriteBacks, "write-back", it)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	held, err := e.Held(ctx)
	if err != nil {
		return nil, err
	}
	rep.Held = held
	if res != nil {
		rep.Held = res.Problems()
	}
	return rep, nil
}

// withoutReasons is st without REDCap's words for each refused write-back:
// they may quote the value refused.
func withoutReasons(st ReportStats) ReportStats {
	st.Problems = slices.Clone(st.Problems)
	for i := range st.Problems {
		st.Problems[i].Reason = ""
	}
	return st
}

// detailValue is the value of key=value in an audit event's detail.
func detailValue(detail, key string) string {
	for _, f := range strings.Fields(detail) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// changedSinceLast says whether a pass's report tells anything new: the
// pass planned, sent or gave up on something, someone was not reached
// since the last report, the pass failed, or what holds sending back is
// not what held it after the pass before.
func (e *Engine) changedSinceLast(ctx context.Context, rep *PassReport) (bool, error) {
	d := rep.Dispatch
	if rep.Enqueued+d.Sent+d.Failed+d.Canceled+d.Expired+d.Review+rep.WriteBack.Rejected+rep.WriteBack.Dropped > 0 ||
		rep.NotReached.Len() > 0 || rep.Outcome != "ok" {
		return true, nil
	}
	runs, err := e.Store.Runs(ctx, 2)
	if err != nil {
		return false, err
	}
	var before []string
	for _, r := range runs {
		if r.ID == rep.RunID || len(r.Summary) == 0 {
			continue
		}
		var ps passSummary
		if err := json.Unmarshal(r.Summary, &ps); err != nil {
			return true, nil
		}
		before = ps.HeldBack
		break
	}
	now := slices.Clone(rep.Held)
	sort.Strings(now)
	sort.Strings(before)
	return !slices.Equal(now, before), nil
}

// sendReport queues the report email for each recipient (keys, in the
// order of reports.to) and hands it to the SMTP server at once when no
// dispatch is running; otherwise the running dispatch or the next one
// sends it. The outbox key makes it once per pass or day whatever retries.
func (e *Engine) sendReport(ctx context.Context, rep *PassReport, keys []string, now time.Time) error {
	c := e.study().Config
	from := ""
	if c.SMTP != nil {
		from = c.SMTP.From
	}
	subject, body := rep.Email(c.Location)
	record := reportRecordPrefix + now.In(c.Location).Format(time.DateOnly)
	for i, to := range c.Reports.To {
		m := &storage.Message{Key: keys[i], Project: c.Projects[0].Name, Rule: reportRule, Record: record,
			Channel: storage.ChannelEmail, To: to, From: from, Subject: subject, Body: body,
			State: storage.StatePlanned, NotBefore: now, CreatedAt: now, RunID: rep.RunID}
		if _, err := e.Store.Enqueue(ctx, m); err != nil {
			return fmt.Errorf("queueing the run report: %w", err)
		}
	}
	e.log().WithFields(map[string]any{"run": rep.RunID, "recipients": len(keys)}).Info("run report queued for the study team")
	if e.Email == nil || !e.dispatchMu.TryLock() {
		return nil
	}
	defer e.dispatchMu.Unlock()
	fresh := &freshness{e: e}
	for _, k := range keys {
		m, err := e.Store.ByKey(ctx, k)
		if err != nil {
			return err
		}
		if m.State != storage.StatePlanned {
			continue
		}
		if _, _, err := e.sendEmail(ctx, m, nil, fresh); err != nil {
			return err
		}
	}
	return nil
}

// Email is the report as an email's subject and plain text, times in loc.
func (r *PassReport) Email(loc *time.Location) (subject, text string) {
	var b strings.Builder
	stamp := func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04 MST") }
	what := "run report"
	if r.RunID != 0 {
		what = fmt.Sprintf("run report, pass %d", r.RunID)
	}
	sent := 0
	for _, ru := range r.Rules {
		sent += ru.Sent
	}
	subject = fmt.Sprintf("%s: nudge %s: %d sent, %d not reached", r.Study, what, sent, r.NotReached.Len())
	if len(r.Held) > 0 {
		subject += ", sending held back"
	}
	fmt.Fprintf(&b, "%s: nudge %s at %s (outcome: %s).\n", r.Study, what, stamp(r.At), r.Outcome)
	fmt.Fprintf(&b, "It names records and message ids only; contacts are masked. `nudge status` shows a record's messages.\n\n")
	if len(r.Rules) > 0 {
		b.WriteString("Per rule (the pass; sent: since the last report):\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RULE\tCHANNEL\tSELECTED\tPLANNED\tDEFERRED\tSKIPPED\tEXCLUDED\tSENT")
		for _, s := range r.Rules {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Name, s.Channel, s.Selected, s.Planned, s.Deferred, s.Skipped, s.Excluded, s.Sent)
		}
		tw.Flush()
		b.WriteString("\n")
	}
	d := r.Dispatch
	fmt.Fprintf(&b, "The pass: enqueued %d; sent %d, retried %d, failed %d, canceled %d, expired %d, held %d, for review %d; written back %d (%d refused).\n\n",
		r.Enqueued, d.Sent, d.Retried, d.Failed, d.Canceled, d.Expired, d.Held, d.Review, r.WriteBack.Imported, r.WriteBack.Rejected)
	fmt.Fprintf(&b, "Not reached since %s: %d\n", stamp(r.Since), r.NotReached.Len())
	for _, l := range r.NotReached.lists() {
		if len(l.items) == 0 {
			continue
		}
		fmt.Fprintf(&b, "  %s: %d\n", l.name, len(l.items))
		for i, it := range l.items {
			if i == reportListMax {
				fmt.Fprintf(&b, "    … and %d more (the JSON report lists all)\n", len(l.items)-i)
				break
			}
			fmt.Fprintf(&b, "    %s\n", it.line())
		}
	}
	b.WriteString("\n")
	if len(r.Held) == 0 {
		b.WriteString("Nothing holds sending back: the kill switch is off and no sender is paused.\n")
	} else {
		b.WriteString("Held back (the kill switch and paused senders):\n")
		for _, h := range r.Held {
			fmt.Fprintf(&b, "  %s\n", h)
		}
	}
	return subject, b.String()
}

// line is a worklist entry on one line.
func (it ReportItem) line() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	add("project", it.Project)
	add("record", it.Record)
	add("rule", it.Rule)
	if it.MessageID != 0 {
		add("message", strconv.FormatInt(it.MessageID, 10))
	}
	add("to", it.To)
	if it.Error != 0 {
		add("error", strconv.Itoa(it.Error))
	}
	add("field", it.Field)
	return strings.Join(parts, ", ")
}

// writeReportFile writes rep as JSON into dir (made 0700; the file 0600,
// written whole then renamed into place) and keeps only the newest keep
// reports there.
func writeReportFile(dir string, keep int, rep *PassReport) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("reports.dir: %w", err)
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	tag := "digest"
	if rep.RunID != 0 {
		tag = fmt.Sprintf("run%d", rep.RunID)
	}
	name := reportFilePrefix + rep.At.UTC().Format("20060102T150405.000000000Z") + "-" + tag + reportFileSuffix
	tmp, err := os.CreateTemp(dir, ".report-*.tmp") // 0600
	if err != nil {
		return fmt.Errorf("reports.dir: %w", err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("reports.dir: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("reports.dir: %w", err)
	}
	return rotateReports(dir, keep)
}

// rotateReports removes all but the newest keep report files of dir.
func rotateReports(dir string, keep int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reports.dir: %w", err)
	}
	var names []string
	for _, en := range entries {
		if n := en.Name(); en.Type().IsRegular() && strings.HasPrefix(n, reportFilePrefix) && strings.HasSuffix(n, reportFileSuffix) {
			names = append(names, n)
		}
	}
	sort.Strings(names) // by time: the names start with it
	for len(names) > keep {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("reports.dir: %w", err)
		}
		names = names[1:]
	}
	return nil
}
