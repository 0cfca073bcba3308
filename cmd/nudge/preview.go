package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nudge-study/nudge/engine"
)

// cmdPreview shows who would get which message now, and why not; it sends nothing.
func cmdPreview(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("preview", stderr)
	rule := fs.String("rule", "", "only this rule")
	record := fs.String("record", "", "only this record id")
	all := fs.Bool("all", false, "also list excluded participants (default: only with --rule or --record)")
	asOf := fs.String("as-of", "", `evaluate as if it were this time ("2026-11-23 10:00" or "2026-11-23T10:00" in the study time zone, or RFC 3339)`)
	asJSON := fs.Bool("json", false, "print the preview as JSON")
	var records recordsFlag
	fs.Var(&records, "records", "preview against records exported from REDCap (flat CSV or JSON, raw values) instead of REDCap itself: [PROJECT=]FILE, repeatable; "+
		"the data dictionaries come from the config's dictionary files and the send history starts empty")
	if err := parse(fs, args); err != nil {
		return err
	}
	var e *engine.Engine
	if len(records) > 0 {
		o, err := previewOffline(c, records, stdout, stderr)
		if err != nil {
			return err
		}
		defer o.Close()
		e = o.Engine
	} else {
		on, err := open(ctx, c, stdout, stderr, true)
		if err != nil {
			return err
		}
		defer on.Close()
		e = on
	}
	var opt engine.PlanOptions
	if *rule != "" {
		if e.Study.Rule(*rule) == nil {
			return &exitError{code: 1, err: fmt.Errorf("no rule named %q", *rule)}
		}
		opt.Rules = map[string]bool{*rule: true}
	}
	if *record != "" {
		opt.Records = map[string]bool{*record: true}
	}
	now := e.Clock.Now()
	if *asOf != "" {
		var err error
		if now, err = parseTime(*asOf, e.Study.Config.Location); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--as-of: %w", err)}
		}
	}
	snaps, err := e.Export(ctx)
	if err != nil {
		return err
	}
	plan, err := e.Plan(ctx, snaps, now, opt)
	if err != nil {
		return err
	}
	withExcluded := *all || *rule != "" || *record != ""
	if *asJSON {
		return printPreviewJSON(stdout, e, plan, now, previewScope{offline: len(records) > 0, withExcluded: withExcluded, rules: opt.Rules})
	}
	printPlan(stdout, plan, withExcluded)
	printSummaries(stdout, plan.Summaries(e))
	printTexts(stdout, plan, e.Study.Config.Location)
	return nil
}

// previewOffline loads the study and connects it to the records files, with
// the offline checks of `nudge check`.
func previewOffline(c *common, records recordsFlag, stdout, stderr io.Writer) (*offline, error) {
	log, err := c.logger(stderr)
	if err != nil {
		return nil, err
	}
	study, err := loadStudy(c.config, stdout)
	if err != nil {
		return nil, err
	}
	rows, err := records.read(study)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return openOffline(study, rows, log)
}

// parseTime reads a time as a coordinator writes it, in the study's zone,
// or as RFC 3339.
func parseTime(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a time like \"2026-11-23 10:00\" or \"2026-11-23T10:00\" (study time zone) or \"2026-11-23T10:00:00-08:00\"", s)
	}
	return t, nil
}

func printPlan(w io.Writer, plan *engine.Plan, withExcluded bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tRECORD\tEVENT\tINSTANCE\tDECISION\tREASON")
	for _, d := range sortedDecisions(plan) {
		if d.Outcome == engine.Excluded && !withExcluded {
			continue
		}
		inst := ""
		if d.Instance > 0 {
			inst = fmt.Sprint(d.Instance)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Rule, d.Record, dash(d.Event), dash(inst), d.Outcome, oneLine(d.Reason))
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// printTexts prints the rendered message of every participant who gets one
// now or later, rule by rule.
func printTexts(w io.Writer, plan *engine.Plan, loc *time.Location) {
	first := true
	for _, d := range sortedDecisions(plan) {
		m := d.Message
		if m == nil {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nMESSAGES")
			first = false
		}
		fmt.Fprintf(w, "\n%s → record %s%s (%s", d.Rule, d.Record, rowLabel(d), m.Channel)
		if d.Outcome == engine.Deferred {
			fmt.Fprintf(w, ", deferred to %s", m.NotBefore.In(loc).Format("2006-01-02 15:04 MST"))
		}
		if m.Segments > 0 {
			fmt.Fprintf(w, ", %d segment(s)", m.Segments)
		}
		fmt.Fprintln(w, ")")
		if m.Subject != "" {
			fmt.Fprintf(w, "  Subject: %s\n", m.Subject)
		}
		for _, line := range strings.Split(strings.TrimRight(m.Body, "\n"), "\n") {
			fmt.Fprintf(w, "  | %s\n", line)
		}
	}
}

func rowLabel(d engine.Decision) string {
	s := ""
	if d.Event != "" {
		s += ", " + d.Event
	}
	if d.Instance > 0 {
		s += fmt.Sprintf(", instance %d", d.Instance)
	}
	return s
}

func sortedDecisions(plan *engine.Plan) []engine.Decision {
	ds := append([]engine.Decision(nil), plan.Decisions...)
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Rule < ds[j].Rule })
	return ds
}

// previewJSON is what `nudge preview --json` prints.
type previewJSON struct {
	AsOf    string        `json:"as_of"`   // RFC 3339, study time zone
	Offline bool          `json:"offline"` // from --records files, with an empty send history
	Rules   []previewRule `json:"rules"`
}

type previewRule struct {
	engine.RuleSummary
	Decisions []previewDecision `json:"decisions"`
}

// previewDecision is one rule's verdict on one record row.
type previewDecision struct {
	Record     string `json:"record"`
	Event      string `json:"event,omitempty"`
	Instrument string `json:"instrument,omitempty"`
	Instance   int    `json:"instance,omitempty"`
	Outcome    string `json:"outcome"` // send, deferred, excluded, skipped, done
	Reason     string `json:"reason,omitempty"`
	DeferredTo string `json:"deferred_to,omitempty"` // RFC 3339, in the participant's zone
	Subject    string `json:"subject,omitempty"`
	Text       string `json:"text,omitempty"` // the rendered message
	Segments   int    `json:"segments,omitempty"`
}

// previewScope is what a preview covers.
type previewScope struct {
	offline      bool            // from --records files
	withExcluded bool            // list excluded rows too
	rules        map[string]bool // only these rules; nil = all
}

func printPreviewJSON(w io.Writer, e *engine.Engine, plan *engine.Plan, now time.Time, sc previewScope) error {
	out := previewJSON{AsOf: now.In(e.Study.Config.Location).Format(time.RFC3339), Offline: sc.offline, Rules: []previewRule{}}
	idx := map[string]int{}
	for _, s := range plan.Summaries(e) {
		if sc.rules != nil && !sc.rules[s.Name] {
			continue
		}
		idx[s.Name] = len(out.Rules)
		out.Rules = append(out.Rules, previewRule{RuleSummary: s, Decisions: []previewDecision{}})
	}
	for _, d := range plan.Decisions {
		i, ok := idx[d.Rule]
		if !ok || (d.Outcome == engine.Excluded && !sc.withExcluded) {
			continue
		}
		pd := previewDecision{Record: d.Record, Event: d.Event, Instrument: d.Instrument, Instance: d.Instance,
			Outcome: string(d.Outcome), Reason: oneLine(d.Reason)}
		if m := d.Message; m != nil {
			pd.Subject, pd.Text, pd.Segments = m.Subject, m.Body, m.Segments
			if d.Outcome == engine.Deferred {
				loc := e.Study.Config.Location
				if z, err := time.LoadLocation(m.Zone); err == nil && m.Zone != "" {
					loc = z
				}
				pd.DeferredTo = m.NotBefore.In(loc).Format(time.RFC3339)
			}
		}
		out.Rules[i].Decisions = append(out.Rules[i].Decisions, pd)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
