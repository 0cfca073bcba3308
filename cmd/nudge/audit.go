package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nudge-study/nudge/storage"
)

// auditRunRule is the kind of the event that gives one rule's decisions in
// a run: how many participants it selected, planned, deferred, skipped
// and excluded (per-participant skips are not stored).
const auditRunRule = "run rule"

// auditRow is one event of the audit trail as audit prints it.
type auditRow struct {
	TimeUTC   string `json:"time_utc"`
	TimeStudy string `json:"time_study"`
	Project   string `json:"project"`
	Record    string `json:"record"`
	Rule      string `json:"rule"`
	Key       string `json:"message_key"`
	Event     string `json:"event"`
	Detail    string `json:"detail"`
	Contact   string `json:"contact"`
	at        time.Time
}

// auditColumns are the CSV header.
var auditColumns = []string{"time_utc", "time_study", "project", "record", "rule", "message_key", "event", "detail", "contact"}

func (r auditRow) csv() []string {
	return []string{r.TimeUTC, r.TimeStudy, r.Project, r.Record, r.Rule, r.Key, r.Event, r.Detail, r.Contact}
}

// cmdAudit prints the trail of what nudge decided and did over a period,
// one row per event, from what the database holds.
func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("audit", stderr)
	db := fs.String("db", "", "the database (default: the config's storage path)")
	since := fs.String("since", "", `from this time ("2026-11-23", "2026-11-23 10:00" in the study time zone, or RFC 3339); required`)
	until := fs.String("until", "", "up to this time, not included (a date alone: to the end of that day; default now)")
	asCSV := fs.Bool("csv", false, "print CSV (UTF-8, a header row)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	showContact := fs.Bool("show-contact", false, "show phone numbers and addresses in full")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *since == "" {
		fmt.Fprintln(stderr, "nudge audit: --since is required (e.g. --since 2026-11-01)")
		return errUsage
	}
	if *asCSV && *asJSON {
		fmt.Fprintln(stderr, "nudge audit: give --csv or --json, not both")
		return errUsage
	}
	study, err := loadStatusStudy(c.config, *db, stdout)
	if err != nil {
		return err
	}
	from, err := parseTime(*since, study.loc)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--since: %w", err)}
	}
	to := time.Now()
	if *until != "" {
		if to, err = parseTime(*until, study.loc); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--until: %w", err)}
		}
		if isDate(*until) {
			to = to.AddDate(0, 0, 1)
		}
	}
	if !to.After(from) {
		return &exitError{code: 2, err: fmt.Errorf("--until (%s) must come after --since (%s)", to.Format(time.RFC3339), from.Format(time.RFC3339))}
	}
	st, err := study.openStore()
	if err != nil {
		return err
	}
	defer st.Close()
	v := viewer{loc: study.loc, showContact: *showContact}
	var (
		emit   func(auditRow) error
		finish func(n int) error
	)
	switch {
	case *asJSON:
		head, _ := json.Marshal(map[string]any{"since": from.UTC(), "until": to.UTC()})
		fmt.Fprintf(stdout, "%s,\n\"events\": [", head[:len(head)-1])
		sep := "\n"
		emit = func(r auditRow) error {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s  %s", sep, b)
			sep = ",\n"
			return err
		}
		finish = func(int) error {
			_, err := fmt.Fprintln(stdout, "\n]}")
			return err
		}
	case *asCSV:
		cw := csv.NewWriter(stdout)
		cw.Write(auditColumns)
		emit = func(r auditRow) error { return cw.Write(r.csv()) }
		finish = func(int) error {
			cw.Flush()
			return cw.Error()
		}
	default:
		fmt.Fprintf(stdout, "audit from %s to %s\n\n", v.when(from), v.when(to))
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tEVENT\tPROJECT\tRECORD\tRULE\tCONTACT\tDETAIL")
		emit = func(r auditRow) error {
			_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.when(r.at), r.Event, dash(r.Project), dash(r.Record),
				dash(r.Rule), dash(r.Contact), r.Detail)
			return err
		}
		finish = func(n int) error {
			if err := tw.Flush(); err != nil {
				return err
			}
			_, err := fmt.Fprintf(stdout, "\n%d event(s)\n", n)
			return err
		}
	}
	n := 0
	err = st.AuditEach(ctx, from, to, func(e storage.AuditEvent) error {
		for _, r := range auditRows(v, e) {
			n++
			if err := emit(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return finish(n)
}

// isDate reports whether a --until value is a date without a time.
func isDate(s string) bool {
	_, err := time.Parse("2006-01-02", strings.TrimSpace(s))
	return err == nil
}

// auditRows turns one of the store's events into rows: a run is followed
// by its rules' counts.
func auditRows(v viewer, e storage.AuditEvent) []auditRow {
	detail := oneLine(e.Detail)
	if e.Kind == storage.AuditRun {
		detail = fmt.Sprintf("run %d %s", e.RunID, detail)
	}
	rows := []auditRow{v.auditRow(e, detail)}
	if e.Kind != storage.AuditRun || len(e.Summary) == 0 {
		return rows
	}
	var s runSummary
	if json.Unmarshal(e.Summary, &s) != nil {
		return rows
	}
	for _, r := range s.Rules {
		rows = append(rows, v.auditRow(storage.AuditEvent{At: e.At, Kind: auditRunRule, Rule: r.Name},
			fmt.Sprintf("run %d channel=%s selected=%d planned=%d deferred=%d skipped=%d already_sent=%d excluded=%d",
				e.RunID, r.Channel, r.Selected, r.Planned, r.Deferred, r.Skipped, r.Done, r.Excluded)))
	}
	return rows
}

func (v viewer) auditRow(e storage.AuditEvent, detail string) auditRow {
	return auditRow{
		TimeUTC:   e.At.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		TimeStudy: e.At.In(v.loc).Format("2006-01-02T15:04:05.000-07:00"),
		Project:   e.Project, Record: e.Record, Rule: e.Rule, Key: e.Key, Event: e.Kind,
		Detail: detail, Contact: v.contact(e.Contact), at: e.At,
	}
}
