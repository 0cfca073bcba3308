package rules

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// When a report is emailed to the study team (reports.when).
const (
	// ReportOnChanges emails a report after a pass when something changed
	// since the last report: nothing new, no email.
	ReportOnChanges = "changes"
	// ReportDaily emails one digest a day, at reports.daily_at.
	ReportDaily = "daily"
)

// Defaults of the reports section.
const (
	DefaultReportKeep    = 30
	DefaultReportDailyAt = 8 * 60 // minutes after midnight, study time
)

// Reports configures the run reports: after each pass a summary for the
// study team, emailed (To) and written as JSON (Dir). It holds counts,
// record ids and masked contacts only.
type Reports struct {
	To      []string // the team's addresses; none = no email
	When    string   // ReportOnChanges or ReportDaily
	DailyAt int      // minutes after midnight, study time (ReportDaily)
	Dir     string   // absolute folder of the JSON reports, "" = none
	Keep    int      // how many JSON reports Dir keeps, newest first
	Pos     Pos
}

// decodeReports reads the reports section; the team's email needs smtp.
func (c *Config) decodeReports(d *decoder, n *yaml.Node) *Reports {
	r := &Reports{When: ReportOnChanges, DailyAt: DefaultReportDailyAt, Keep: DefaultReportKeep, Pos: d.pos(n)}
	m := d.mapping(n, "reports", "to", "when", "daily_at", "dir", "keep")
	if m == nil {
		return r
	}
	if v := m.get("to"); v != nil {
		if items, ok := d.list(v, "reports.to"); ok {
			for _, it := range items {
				s, ok := d.str(it, "reports.to")
				if !ok {
					continue
				}
				if !isBareAddress(s) {
					d.errorf(it, "reports.to: %q is not an email address: write the team's address, e.g. to: [team@example.edu]", s)
					continue
				}
				r.To = append(r.To, strings.TrimSpace(s))
			}
		}
		if len(r.To) > 0 && c.SMTP == nil {
			d.errorf(v, "reports.to needs an smtp: section in %s (host, from): the report is sent by email", c.Path)
		}
	}
	if v := m.get("when"); v != nil {
		if s, ok := d.str(v, "reports.when"); ok {
			switch s {
			case ReportOnChanges, ReportDaily:
				r.When = s
			default:
				d.errorf(v, "reports.when: %q is not one of changes (after a pass that changed something), daily (one digest a day at daily_at)", s)
			}
		}
	}
	if v := m.get("daily_at"); v != nil {
		if s, ok := d.str(v, "reports.daily_at"); ok {
			if t, ok := parseClock(s); ok {
				r.DailyAt = t
			} else {
				d.errorf(v, "reports.daily_at: %q is not a time of day: write HH:MM on a 24-hour clock, e.g. \"08:00\" (quoted)", s)
			}
		}
	}
	if v := m.get("dir"); v != nil {
		if s, ok := d.str(v, "reports.dir"); ok && s != "" {
			r.Dir = c.abs(s)
		}
	}
	if v := m.get("keep"); v != nil {
		if k, ok := d.integer(v, "reports.keep"); ok {
			if k < 1 {
				d.errorf(v, "reports.keep: %d is not a positive count of reports: write at least 1", k)
			} else {
				r.Keep = k
			}
		}
	}
	if m.get("to") == nil && m.get("dir") == nil {
		d.errorf(n, "reports: give to (the team's addresses), dir (a folder for JSON reports) or both")
	}
	return r
}

// DailyAtString is DailyAt as HH:MM.
func (r *Reports) DailyAtString() string { return fmt.Sprintf("%02d:%02d", r.DailyAt/60, r.DailyAt%60) }
