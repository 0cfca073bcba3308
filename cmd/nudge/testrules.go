package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// cmdTestRules runs rule test files, like promtool test rules: each test
// plans a series of moments over the records it gives, on the same code
// path as `nudge run` (export, select, plan, enqueue) but against the
// records in the file and a temporary outbox; nothing is sent and neither
// REDCap nor Twilio is contacted.
func cmdTestRules(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nudge test rules", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: nudge test rules FILE...\n\nruns the rule tests in each FILE (see README: Testing rules); exit 0 all passed, 1 a test failed or a file has problems")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &exitError{code: 0}
		}
		return errUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	failed := 0
	for _, path := range fs.Args() {
		fmt.Fprintf(stdout, "rule tests in %s\n", path)
		ok, err := runTestFile(ctx, path, stdout)
		if err != nil {
			var errs rules.Errors
			if errors.As(err, &errs) {
				for _, e := range errs {
					fmt.Fprintf(stdout, "  %s\n", e)
				}
			} else {
				fmt.Fprintf(stdout, "  %v\n", err)
			}
			ok = false
		}
		if ok {
			fmt.Fprintln(stdout, "  SUCCESS")
		} else {
			failed++
		}
		fmt.Fprintln(stdout)
	}
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d rule test file(s) failed", failed, fs.NArg())}
	}
	return nil
}

// runTestFile runs every test of one file and prints each failure; ok is
// false when any failed.
func runTestFile(ctx context.Context, path string, stdout io.Writer) (ok bool, err error) {
	f, err := parseTestFile(path)
	if err != nil {
		return false, err
	}
	var buf strings.Builder
	study, err := loadStudy(f.config, &buf)
	if err != nil {
		fmt.Fprintf(stdout, "  the study %s has problems; `nudge check --config %s` shows them:\n", f.config, f.config)
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			fmt.Fprintf(stdout, "    %s\n", line)
		}
		return false, nil
	}
	ok = true
	for _, t := range f.tests {
		failures, err := runTest(ctx, study, f, t)
		if err != nil {
			return false, err
		}
		if len(failures) > 0 {
			if ok {
				fmt.Fprintln(stdout, "  FAILED:")
			}
			ok = false
			for _, line := range failures {
				fmt.Fprintf(stdout, "    %s\n", line)
			}
		}
	}
	return ok, nil
}

// projectRows resolves project "" (records given without a project) to the
// study's only project.
func projectRows(study *rules.Study, in map[string][]map[string]string, pos rules.Pos, out map[string][]map[string]string) error {
	for name, rows := range in {
		if name == "" {
			if len(study.Config.Projects) != 1 {
				return rules.Errors{{Pos: pos, Msg: fmt.Sprintf("the study has %d projects (%s): give the records by project, e.g. records: {%s: [...]}",
					len(study.Config.Projects), strings.Join(study.Config.ProjectNames(), ", "), study.Config.Projects[0].Name)}}
			}
			name = study.Config.Projects[0].Name
		}
		if study.Config.Project(name) == nil {
			return rules.Errors{{Pos: pos, Msg: fmt.Sprintf("records for project %q, which %s does not name; projects: %s",
				name, study.Config.Path, strings.Join(study.Config.ProjectNames(), ", "))}}
		}
		out[name] = rows
	}
	return nil
}

// runTest runs one test's moments in order over one fresh outbox and
// returns its failures, one line each.
func runTest(ctx context.Context, study *rules.Study, f *ruleTestFile, t ruleTest) ([]string, error) {
	records := map[string][]map[string]string{}
	if err := projectRows(study, f.records, rules.Pos{File: f.path}, records); err != nil {
		return nil, err
	}
	if err := projectRows(study, t.records, t.pos, records); err != nil {
		return nil, err
	}
	for name, rows := range records {
		records[name] = cloneRows(rows) // updates must not leak into the next test
	}
	var opt engine.PlanOptions
	for _, name := range t.rules {
		if study.Rule(name) == nil {
			return nil, rules.Errors{{Pos: t.pos, Msg: fmt.Sprintf("test %q: no rule named %q", t.name, name)}}
		}
		if opt.Rules == nil {
			opt.Rules = map[string]bool{}
		}
		opt.Rules[name] = true
	}
	o, err := openOffline(study, records, nil)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	loc := study.Config.Location
	var failures []string
	for i, mo := range t.moments {
		at, err := parseTime(mo.at, loc)
		if err != nil {
			return nil, rules.Errors{{Pos: mo.pos, Msg: fmt.Sprintf("at: %v", err)}}
		}
		head := fmt.Sprintf("%s: test %q, moment %d (at %s):", mo.pos, t.name, i+1, at.In(loc).Format("2006-01-02 15:04 MST"))
		if err := applyMoment(ctx, study, o, mo, at); err != nil {
			return nil, err
		}
		o.Clock.Set(at)
		snaps, err := o.Export(ctx)
		if err != nil {
			return nil, err
		}
		plan, err := o.Plan(ctx, snaps, at, opt)
		if err != nil {
			return nil, err
		}
		if diff := compareMoment(mo, plan, loc); len(diff) > 0 {
			failures = append(failures, head)
			for _, d := range diff {
				failures = append(failures, "  "+d)
			}
		}
		// As `nudge run`: what is planned is enqueued, and counts from now on.
		if _, err := o.Store.EnqueueBatch(ctx, plan.Messages()); err != nil {
			return nil, err
		}
	}
	return failures, nil
}

func cloneRows(rows []map[string]string) []map[string]string {
	out := make([]map[string]string, len(rows))
	for i, r := range rows {
		c := make(map[string]string, len(r))
		for k, v := range r {
			c[k] = v
		}
		out[i] = c
	}
	return out
}

// applyMoment merges a moment's updated rows into the records (a row with
// the same record, event, repeat instrument and instance is updated, any
// other added) and records its opt-outs.
func applyMoment(ctx context.Context, study *rules.Study, o *offline, mo moment, at time.Time) error {
	update := map[string][]map[string]string{}
	if err := projectRows(study, mo.update, mo.pos, update); err != nil {
		return err
	}
	for project, rows := range update {
		src := o.Sources[project]
		id := o.Dicts[project].RecordID()
		for _, row := range rows {
			if row[id] == "" {
				return rules.Errors{{Pos: mo.pos, Msg: fmt.Sprintf("update: a row of project %s has no %s: name the record it changes", project, id)}}
			}
			merged := false
			for _, old := range src.Rows {
				if sameRow(old, row, id) {
					for k, v := range row {
						old[k] = v
					}
					merged = true
					break
				}
			}
			if !merged {
				src.Rows = append(src.Rows, cloneRows([]map[string]string{row})[0])
			}
		}
	}
	for _, raw := range mo.optOut {
		phone, err := engine.NormalizePhone(raw, study.Config.Twilio.Region)
		if err != nil {
			return rules.Errors{{Pos: mo.pos, Msg: fmt.Sprintf("opt_out: %q is %v", raw, err)}}
		}
		if err := o.Store.OptOut(ctx, phone, "nudge test rules", at); err != nil {
			return err
		}
	}
	return nil
}

// sameRow reports whether two flat rows are the same record row.
func sameRow(a, b map[string]string, id string) bool {
	inst := func(r map[string]string) int {
		n, _ := strconv.Atoi(strings.TrimSpace(r[rules.ColRepeatInstance]))
		return n
	}
	return a[id] == b[id] && a[rules.ColEvent] == b[rules.ColEvent] &&
		a[rules.ColRepeatInstrument] == b[rules.ColRepeatInstrument] && inst(a) == inst(b)
}

// compareMoment compares what a moment planned with what it expected and
// returns the differences, one line each ("-" expected but not planned,
// "+" planned but not expected).
func compareMoment(mo moment, plan *engine.Plan, loc *time.Location) []string {
	var got []engine.Decision
	for _, d := range plan.Decisions {
		if d.Message != nil {
			got = append(got, eachMessage(d)...)
		}
	}
	used := make([]bool, len(got))
	var diff []string
	for _, x := range mo.expect {
		match, near := -1, -1
		for i, d := range got {
			if used[i] || !x.sameRow(d) {
				continue
			}
			if near < 0 {
				near = i
			}
			if x.matches(d, loc) {
				match = i
				break
			}
		}
		if match >= 0 {
			used[match] = true
			continue
		}
		diff = append(diff, fmt.Sprintf("- %s: expected %s", x.pos, x.describe()))
		if near >= 0 {
			used[near] = true
			diff = append(diff, "    got "+describeMessage(got[near], loc))
			continue
		}
		diff = append(diff, "    got no message: "+whyNot(plan, x.rule, x.record, x.event, x.instance))
	}
	for i, d := range got {
		if !used[i] {
			diff = append(diff, "+ not expected: "+describeMessage(d, loc))
		}
	}
	for _, x := range mo.notSent {
		if d, ok := x.find(plan); !ok {
			diff = append(diff, fmt.Sprintf("- %s: expected %s %s not messaged (%s), but %s", x.pos, x.rule, testRowName(x.record, x.event, x.instance), x.describe(), d))
		}
	}
	return diff
}

// eachMessage is one decision per message a decision plans: a timed rule
// plans several (later occurrences, reminders), each deferred to its own
// time and on its own repeat instance (every.instrument).
func eachMessage(d engine.Decision) []engine.Decision {
	out := make([]engine.Decision, 0, 1+len(d.More))
	for i, m := range append([]*storage.Message{d.Message}, d.More...) {
		x := d
		x.Message, x.More = m, nil
		x.Instrument, x.Instance = m.Instrument, m.Instance
		if i > 0 && (d.Outcome == engine.Deferred || m.NotBefore.After(d.Message.NotBefore)) {
			x.Outcome = engine.Deferred
		}
		out = append(out, x)
	}
	return out
}

func (x expectedMessage) sameRow(d engine.Decision) bool {
	return d.Rule == x.rule && d.Record == x.record && (x.event == "" || d.Event == x.event) && (x.instance == 0 || d.Instance == x.instance)
}

func (x expectedMessage) matches(d engine.Decision, loc *time.Location) bool {
	m := d.Message
	if x.channel != "" && m.Channel != x.channel {
		return false
	}
	if x.text != "" && strings.TrimSpace(m.Body) != strings.TrimSpace(x.text) {
		return false
	}
	if x.contains != "" && !strings.Contains(m.Body, x.contains) {
		return false
	}
	if x.subject != "" && m.Subject != x.subject {
		return false
	}
	if x.deferredTo == "" {
		return d.Outcome == engine.Send
	}
	t, err := parseTime(x.deferredTo, loc)
	return err == nil && d.Outcome == engine.Deferred && m.NotBefore.Equal(t)
}

func (x expectedMessage) describe() string {
	var parts []string
	if x.channel != "" {
		parts = append(parts, x.channel)
	}
	if x.deferredTo != "" {
		parts = append(parts, "deferred to "+x.deferredTo)
	} else {
		parts = append(parts, "sent now")
	}
	s := fmt.Sprintf("%s %s (%s)", x.rule, testRowName(x.record, x.event, x.instance), strings.Join(parts, ", "))
	if x.subject != "" {
		s += fmt.Sprintf(" subject %q", x.subject)
	}
	if x.text != "" {
		s += fmt.Sprintf(": %q", strings.TrimSpace(x.text))
	}
	if x.contains != "" {
		s += fmt.Sprintf(" containing %q", x.contains)
	}
	return s
}

// describeMessage says what the plan decided for a participant row that
// gets a message, in the terms of a test file.
func describeMessage(d engine.Decision, loc *time.Location) string {
	m := d.Message
	when := "sent now"
	if d.Outcome == engine.Deferred {
		when = "deferred to " + m.NotBefore.In(loc).Format("2006-01-02 15:04")
	}
	s := fmt.Sprintf("%s %s (%s, %s)", d.Rule, testRowName(d.Record, d.Event, d.Instance), m.Channel, when)
	if m.Subject != "" {
		s += fmt.Sprintf(" subject %q", m.Subject)
	}
	return s + fmt.Sprintf(": %q", strings.TrimSpace(m.Body))
}

// whyNot gives the plan's reason a participant row got no message.
func whyNot(plan *engine.Plan, rule, record, event string, instance int) string {
	for _, d := range plan.Decisions {
		if d.Rule == rule && d.Record == record && (event == "" || d.Event == event) && (instance == 0 || d.Instance == instance) {
			return fmt.Sprintf("%s (%s)", d.Outcome, oneLine(d.Reason))
		}
	}
	return "the rule was not evaluated on this row (no such record or row, the row is not on the rule's event or instrument, or the rule is not run at this moment: on_save rules only when the test names them in rules:)"
}

func testRowName(record, event string, instance int) string {
	s := "record " + record
	if event != "" {
		s += ", " + event
	}
	if instance > 0 {
		s += fmt.Sprintf(", instance %d", instance)
	}
	return s
}

func (x expectedMiss) describe() string {
	var parts []string
	if x.outcome != "" {
		parts = append(parts, x.outcome)
	}
	if x.reason != "" {
		parts = append(parts, fmt.Sprintf("reason containing %q", x.reason))
	}
	if len(parts) == 0 {
		return "any reason"
	}
	return strings.Join(parts, ", ")
}

// find looks for the decision the entry expects; when there is none it
// says what was decided instead.
func (x expectedMiss) find(plan *engine.Plan) (string, bool) {
	var seen []string
	for _, d := range plan.Decisions {
		if d.Rule != x.rule || d.Record != x.record || (x.event != "" && d.Event != x.event) || (x.instance != 0 && d.Instance != x.instance) {
			continue
		}
		if d.Message == nil && (x.outcome == "" || string(d.Outcome) == x.outcome) && strings.Contains(d.Reason, x.reason) {
			return "", true
		}
		seen = append(seen, fmt.Sprintf("%s (%s)", d.Outcome, oneLine(d.Reason)))
	}
	if len(seen) == 0 {
		return "the rule was not evaluated on this row", false
	}
	return "got " + strings.Join(seen, "; "), false
}
