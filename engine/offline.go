package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/storage"
)

// ErrOffline is returned when something would be written to REDCap from
// records given offline: previews and rule tests never write.
var ErrOffline = errors.New("records given offline: nothing is written to REDCap")

// OfflineRecords stands in for one REDCap project when nudge works from
// records exported earlier (REDCap's web UI or API, flat format) or written
// in a rule test, with the data dictionary from the config's dictionary
// file. Its export answers as REDCap's does, so that the planner sees what
// it would see in production: only the columns asked for (a checkbox field
// expanded into its field___code columns), each present on every row, blank
// where the row has no value, plus the event and repeat columns.
type OfflineRecords struct {
	Dict    *dict.Dictionary
	Rows    []map[string]string // in REDCap's flat export shape
	Missing []string            // the project's missing-data codes
}

// ExportRecords returns the rows (limited to p.Records and p.Events when
// given) with the columns of p.Fields (all when empty). FilterLogic is not
// supported: nudge's export never uses it.
func (o *OfflineRecords) ExportRecords(_ context.Context, p redcap.ExportParams) ([]redcap.Row, error) {
	if p.FilterLogic != "" || len(p.Forms) > 0 {
		return nil, fmt.Errorf("%w: filter logic and forms are not supported offline", ErrOffline)
	}
	id := o.Dict.RecordID()
	var cols []string
	for _, f := range p.Fields {
		if c := o.Dict.Columns(f); len(c) > 0 {
			cols = append(cols, c...)
		} else {
			cols = append(cols, f) // a <form>_complete column, or a field the dictionary lacks
		}
	}
	longitudinal, repeating := o.shape()
	out := make([]redcap.Row, 0, len(o.Rows))
	for _, row := range o.Rows {
		if len(p.Records) > 0 && !slices.Contains(p.Records, row[id]) {
			continue
		}
		if len(p.Events) > 0 && !slices.Contains(p.Events, row[rules.ColEvent]) {
			continue
		}
		if len(p.Fields) == 0 {
			r := make(redcap.Row, len(row))
			for k, v := range row {
				r[k] = v
			}
			out = append(out, r)
			continue
		}
		r := make(redcap.Row, len(cols)+4)
		r[id] = row[id]
		if longitudinal {
			r[rules.ColEvent] = row[rules.ColEvent]
		}
		if repeating {
			r[rules.ColRepeatInstrument] = row[rules.ColRepeatInstrument]
			r[rules.ColRepeatInstance] = row[rules.ColRepeatInstance]
		}
		for _, c := range cols {
			r[c] = row[c]
		}
		out = append(out, r)
	}
	return out, nil
}

// shape reports whether the rows carry events and repeat instances.
func (o *OfflineRecords) shape() (longitudinal, repeating bool) {
	for _, row := range o.Rows {
		if strings.TrimSpace(row[rules.ColEvent]) != "" {
			longitudinal = true
		}
		if strings.TrimSpace(row[rules.ColRepeatInstance]) != "" {
			repeating = true
		}
	}
	return longitudinal, repeating
}

// Project describes the project as far as the rows show it.
func (o *OfflineRecords) Project(context.Context) (redcap.Project, error) {
	l, r := o.shape()
	return redcap.Project{Title: "offline records", Longitudinal: l, HasRepeating: r, MissingCodes: o.Missing}, nil
}

// Metadata returns the data dictionary.
func (o *OfflineRecords) Metadata(context.Context) (*dict.Dictionary, error) { return o.Dict, nil }

// Events lists the events the rows use, in order of appearance.
func (o *OfflineRecords) Events(context.Context) ([]redcap.Event, error) {
	var out []redcap.Event
	seen := map[string]bool{}
	for _, row := range o.Rows {
		ev := row[rules.ColEvent]
		if ev != "" && !seen[ev] {
			seen[ev] = true
			out = append(out, redcap.Event{Name: ev, UniqueName: ev})
		}
	}
	return out, nil
}

// FormEvents is unknown offline: none.
func (o *OfflineRecords) FormEvents(context.Context) ([]redcap.FormEvent, error) { return nil, nil }

// ImportRecords refuses: nothing is written to REDCap offline.
func (o *OfflineRecords) ImportRecords(context.Context, []redcap.Row) (redcap.ImportResult, error) {
	return redcap.ImportResult{}, ErrOffline
}

// NewOffline connects a loaded study to records given offline instead of
// REDCap, with no Twilio and no SMTP: Export and Plan then run exactly as
// in `nudge run`, for `nudge preview --records` and `nudge test rules`.
// Every project needs its data dictionary in dicts (the config's dictionary
// files, engine.LoadDictionaries); a project missing from records has none.
// opt.DBPath is the store the plan reads its history from (opt-outs, what
// was sent): give a fresh file in a temporary directory unless the history
// of a real database is wanted. Close releases it.
func NewOffline(study *rules.Study, dicts map[string]*dict.Dictionary, records map[string]*OfflineRecords, opt Options) (*Engine, error) {
	if opt.DBPath == "" {
		return nil, fmt.Errorf("%w: offline engine: no database path", storage.ErrInvalid)
	}
	e := &Engine{Study: study, Log: opt.Log, Clock: opt.Clock, REDCap: make(map[string]REDCap),
		Dicts: make(map[string]*dict.Dictionary), infos: make(map[string]redcap.Project)}
	for name := range records {
		if study.Config.Project(name) == nil {
			return nil, fmt.Errorf("records given for project %q, which the config does not name", name)
		}
	}
	for _, p := range study.Config.Projects {
		d := dicts[p.Name]
		if d == nil {
			return nil, fmt.Errorf("project %s: no data dictionary: set dictionary: in %s to the project's data dictionary CSV (REDCap: Project Setup → Data Dictionary → Download)",
				p.Name, study.Config.Path)
		}
		src := records[p.Name]
		if src == nil {
			src = &OfflineRecords{}
		}
		src.Dict = d
		info, _ := src.Project(context.Background())
		e.REDCap[p.Name] = src
		e.Dicts[p.Name] = d
		e.infos[p.Name] = info
	}
	st, err := storage.Open(opt.DBPath)
	if err != nil {
		return nil, err
	}
	e.Store = st
	return e, nil
}
