package rules

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
)

// Structure is what a longitudinal project's structure tells nudge's
// checks: its events, the instruments designated for each event and its
// repeating instruments. A nil part is not known and not checked.
type Structure struct {
	Events     []string            // unique event names
	Designated map[string][]string // unique event name → instruments designated for it
	// Repeating maps a unique event name ("" in a classic project) to its
	// repeating instruments.
	Repeating map[string][]string
}

// ErrNoEventColumn is returned for an events or instrument-event file
// without a unique_event_name column.
var ErrNoEventColumn = errors.New("no unique_event_name column")

// ReadEvents reads a project's unique event names from the file REDCap
// gives at Project Setup → Define My Events → "Download events (CSV)"
// (or the API's content=event as JSON): the unique_event_name column.
func ReadEvents(path string) ([]string, error) {
	rows, err := readStructureRows(path, "events", "unique_event_name")
	if err != nil {
		return nil, err
	}
	var events []string
	for _, r := range rows {
		if !contains(events, r.event) {
			events = append(events, r.event)
		}
	}
	return events, nil
}

// ReadInstrumentEvents reads which instruments are designated for each
// event from the file REDCap gives at Project Setup → Designate
// Instruments for My Events → "Download instrument-event mappings (CSV)"
// (or the API's content=formEventMapping as JSON): the columns
// unique_event_name and form (arm_num is not needed).
func ReadInstrumentEvents(path string) (map[string][]string, error) {
	rows, err := readStructureRows(path, "form_events", "unique_event_name", "form")
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, r := range rows {
		if !contains(out[r.event], r.form) {
			out[r.event] = append(out[r.event], r.form)
		}
	}
	return out, nil
}

// structureRow is one row of an events or instrument-event file.
type structureRow struct{ event, form string }

// readStructureRows reads the rows of an events (want: unique_event_name)
// or instrument-event file (want: unique_event_name, form). A .json file is
// a JSON list as the API exports it, or an object holding that list under
// key (the layout of the REDCap simulator's NAME.structure.json).
func readStructureRows(path, key string, want ...string) ([]structureRow, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	if strings.EqualFold(filepath.Ext(path), ".json") {
		return structureJSON(path, data, key, want)
	}
	return structureCSV(path, data, want)
}

// formColumns are the names an instrument column goes by: the download
// and the API say form; some exports say form_name.
var formColumns = []string{"form", "form_name"}

func structureCSV(path string, data []byte, want []string) ([]structureRow, error) {
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s is empty: download it from REDCap again", path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	evCol, ok := col["unique_event_name"]
	if !ok {
		return nil, fmt.Errorf("%s:1: %w (the columns are %s): download the file from REDCap's Project Setup page, "+
			"which names each event's unique name", path, ErrNoEventColumn, strings.Join(header, ", "))
	}
	formCol := -1
	if len(want) > 1 {
		for _, name := range formColumns {
			if i, ok := col[name]; ok {
				formCol = i
				break
			}
		}
		if formCol < 0 {
			return nil, fmt.Errorf("%s:1: no form column (the columns are %s): download the instrument-event mappings "+
				"from REDCap's Designate Instruments for My Events page", path, strings.Join(header, ", "))
		}
	}
	var rows []structureRow
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		line, _ := cr.FieldPos(0)
		cell := func(i int) string {
			if i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		if strings.Join(rec, "") == "" {
			continue
		}
		r := structureRow{event: cell(evCol)}
		if formCol >= 0 {
			r.form = cell(formCol)
		}
		if r.event == "" || (formCol >= 0 && r.form == "") {
			return nil, fmt.Errorf("%s:%d: a row without a unique event name or instrument: download the file from REDCap again", path, line)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func structureJSON(path string, data []byte, key string, want []string) ([]structureRow, error) {
	var list []map[string]any
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(data, &obj); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		raw, ok := obj[key]
		if !ok {
			return nil, fmt.Errorf("%s: no %q list: give REDCap's download (CSV) or the API's JSON list", path, key)
		}
		data = raw
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("%s: %v: give REDCap's download (CSV) or the API's JSON list", path, err)
	}
	str := func(m map[string]any, k string) string {
		s, _ := m[k].(string)
		return strings.TrimSpace(s)
	}
	var rows []structureRow
	for i, m := range list {
		r := structureRow{event: str(m, "unique_event_name")}
		if len(want) > 1 {
			r.form = str(m, "form")
			if r.form == "" {
				r.form = str(m, "form_name")
			}
		}
		if r.event == "" || (len(want) > 1 && r.form == "") {
			return nil, fmt.Errorf("%s: item %d has no %s: give REDCap's download (CSV) or the API's JSON list", path, i+1, strings.Join(want, " and "))
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// ReadStructure reads the project's events and instrument-event files the
// config names (Project.Events, Project.InstrumentEvents); a part whose
// file is not named stays nil.
func ReadStructure(p *Project) (Structure, error) {
	var st Structure
	var err error
	if p.Events != "" {
		if st.Events, err = ReadEvents(p.Events); err != nil {
			return st, fmt.Errorf("project %s: events: %w", p.Name, err)
		}
	}
	if p.InstrumentEvents != "" {
		if st.Designated, err = ReadInstrumentEvents(p.InstrumentEvents); err != nil {
			return st, fmt.Errorf("project %s: instrument_events: %w", p.Name, err)
		}
		if st.Events == nil {
			for ev := range st.Designated {
				st.Events = append(st.Events, ev)
			}
			sort.Strings(st.Events)
		}
	}
	return st, nil
}

// CheckStructure checks the project's rules against its structure: the
// events they name (CheckEvents), the fields they write (CheckWriteEvents)
// and read (CheckReadEvents), and it resolves each rule's bare timezone
// field to the event it is read on (ResolveTimezoneFields). d may be nil
// (no dictionary: only events are checked).
func (s *Study) CheckStructure(project string, d *dict.Dictionary, st Structure) Errors {
	var errs Errors
	if st.Events != nil {
		errs = append(errs, s.CheckEvents(project, st.Events)...)
	}
	if d != nil {
		errs = append(errs, s.CheckWriteEvents(project, d, st.Designated)...)
		errs = append(errs, s.ResolveTimezoneFields(project, d, st.Designated)...)
		errs = append(errs, s.CheckReadEvents(project, d, st)...)
	}
	sortErrors(errs, append([]string{s.Config.Path}, s.Files...))
	return errs
}

// eventsWith lists, sorted, the events form is designated for.
func eventsWith(designated map[string][]string, form string) []string {
	var out []string
	for ev, forms := range designated {
		if contains(forms, form) {
			out = append(out, ev)
		}
	}
	sort.Strings(out)
	return out
}

// ResolveTimezoneFields decides, for each rule of the project with a
// timezone field, on which event the participant's zone is read, from the
// instruments designated for each event (nil: a classic project, nothing
// to resolve). A field of another event ([enrollment_arm_1][tz]) is read
// there. A bare field is read on the rule's own event when its instrument
// is designated for it; otherwise on the one event its instrument is
// designated for. A bare field designated for several other events, or
// none, is an error: reading it on the rule's event would always find it
// blank, and the participant would be messaged in the study zone.
func (s *Study) ResolveTimezoneFields(project string, d *dict.Dictionary, designated map[string][]string) Errors {
	if d == nil || designated == nil {
		return nil
	}
	var errs Errors
	for _, r := range s.Rules {
		ref := r.TimezoneField
		if r.Project != project || ref.Field == "" {
			continue
		}
		f, ok := d.Field(ref.Field)
		if !ok {
			continue // reported by CheckFields
		}
		evs := eventsWith(designated, f.Form)
		key, pos := r.timezoneKey(), r.pos["window.timezone_field"]
		if ref.Event != "" {
			if _, known := designated[ref.Event]; known && !contains(designated[ref.Event], f.Form) {
				errs = append(errs, &Error{Pos: pos, Rule: r.Name, Msg: fmt.Sprintf("%s: %s can never have a value: its instrument %s is not designated for %s%s",
					key, ref, f.Form, ref.Event, elsewhereHint(ref.Field, evs))})
				continue
			}
			r.resolveTimezone(ref)
			continue
		}
		switch {
		case r.Event != "" && contains(designated[r.Event], f.Form):
			r.resolveTimezone(ref)
		case len(evs) == 1:
			r.resolveTimezone(logic.Ref{Event: evs[0], Field: ref.Field})
		default:
			where := "the rule's event " + r.Event
			if r.Event == "" {
				where = "every event (event: any)"
			}
			errs = append(errs, &Error{Pos: pos, Rule: r.Name, Msg: fmt.Sprintf(
				"%s: [%s] is on the instrument %s, which is not designated for %s, so the time zone would be blank there "+
					"and the study zone used%s", key, ref.Field, f.Form, where, elsewhereHint(ref.Field, evs))})
		}
	}
	return errs
}

// elsewhereHint tells the coordinator how to read field on the events it
// is designated for.
func elsewhereHint(field string, evs []string) string {
	if len(evs) == 0 {
		return "; its instrument is designated for no event: designate it in REDCap, or use another field"
	}
	refs := make([]string, len(evs))
	for i, ev := range evs {
		refs[i] = fmt.Sprintf("\"[%s][%s]\"", ev, field)
	}
	return ": write the event where it is held, " + strings.Join(refs, " or ")
}

// CheckReadEvents reports the fields the project's rules read that can
// never have a value where they are read: the field's instrument is not
// designated for the event the reference reads (the rule's event when it
// names none), or it is a repeating instrument's field read on a base row
// (a rule without instrument: that names no instance). In a template or
// `to` (and once_per) that is an error: the message would never be sent.
// In a condition it is a warning: a comparison with a blank may be meant,
// but it never changes.
func (s *Study) CheckReadEvents(project string, d *dict.Dictionary, st Structure) Errors {
	var errs Errors
	seen := map[string]bool{}
	for _, u := range s.refs(project) {
		r := s.Rule(u.rule)
		if r == nil || u.ref.IsSmart() || (u.from == "" && u.what != "to" && u.what != "once_per") {
			continue
		}
		form, ok := formOf(d, u.ref.Field)
		if !ok {
			continue
		}
		event := u.ref.Event
		if event == "" {
			event = r.Event
		}
		msg := ""
		if forms, known := st.Designated[event]; known && event != "" && !contains(forms, form) {
			msg = fmt.Sprintf("%s can never have a value here: it is on the instrument %s, which is not designated for %s%s",
				u.ref, form, event, elsewhereHint(u.ref.Field, eventsWith(st.Designated, form)))
		} else if st.Repeating != nil && u.ref.Instance == "" && !readsInstances(r, u.ref, form) && contains(st.Repeating[event], form) {
			rows := "base rows"
			if r.Instrument != "" && (u.ref.Event == "" || u.ref.Event == r.Event) {
				rows = "instances of " + r.Instrument
			}
			msg = fmt.Sprintf("%s can never have a value here: %s is a repeating instrument and the rule reads %s; "+
				"give the rule instrument: %s, or name an instance, e.g. [%s][last-instance]", u.ref, form, rows, form, u.ref.Field)
		}
		if msg == "" {
			continue
		}
		e := &Error{Pos: u.pos, Rule: u.rule}
		switch {
		case u.from == "when":
			e.Warning = true
			e.Msg = "when: " + msg + " (the condition compares a blank)"
		case u.from == "template":
			e.Msg = "template: " + msg + " (the message would always be skipped for a blank)"
		default:
			e.Msg = u.what + ": " + msg + " (nothing would ever be sent)"
		}
		if !seen[e.Error()] {
			seen[e.Error()] = true
			errs = append(errs, e)
		}
	}
	return errs
}

// readsInstances reports whether ref, read by rule r, reads the instance
// rows of the repeating instrument form: the rule runs on them and ref
// reads the rule's own event.
func readsInstances(r *Rule, ref logic.Ref, form string) bool {
	return r.Instrument == form && (ref.Event == "" || ref.Event == r.Event)
}

// formOf is the instrument of a data field, or of a <form>_complete
// status column.
func formOf(d *dict.Dictionary, field string) (string, bool) {
	if f, ok := d.Field(field); ok {
		return f.Form, f.Type != "descriptive"
	}
	if form, ok := strings.CutSuffix(field, "_complete"); ok && contains(d.Forms(), form) {
		return form, true
	}
	return "", false
}
