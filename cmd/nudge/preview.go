package main

import (
	"context"
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
	asOf := fs.String("as-of", "", `evaluate as if it were this time ("2026-11-23 10:00" in the study time zone, or RFC 3339)`)
	if err := parse(fs, args); err != nil {
		return err
	}
	e, err := open(ctx, c, stdout, stderr, true)
	if err != nil {
		return err
	}
	defer e.Close()
	snaps, err := e.Export(ctx)
	if err != nil {
		return err
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
		if now, err = parseTime(*asOf, e.Study.Config.Location); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--as-of: %w", err)}
		}
	}
	plan, err := e.Plan(ctx, snaps, now, opt)
	if err != nil {
		return err
	}
	printPlan(stdout, plan, *all || *rule != "" || *record != "")
	printSummaries(stdout, plan.Summaries(e))
	return nil
}

// parseTime reads a time as a coordinator writes it, in the study's zone,
// or as RFC 3339.
func parseTime(s string, loc *time.Location) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a time like \"2026-11-23 10:00\"", s)
	}
	return t, nil
}

func printPlan(w io.Writer, plan *engine.Plan, withExcluded bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tRECORD\tEVENT\tINSTANCE\tDECISION\tREASON")
	ds := append([]engine.Decision(nil), plan.Decisions...)
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Rule < ds[j].Rule })
	for _, d := range ds {
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
