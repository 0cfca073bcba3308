package redcaptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nudge-study/nudge/rules/dict"
)

// The pseudo-columns of a flat export.
const (
	colEvent      = "redcap_event_name"
	colInstrument = "redcap_repeat_instrument"
	colInstance   = "redcap_repeat_instance"
	colDAG        = "redcap_data_access_group"
)

func isPseudo(col string) bool {
	return col == colEvent || col == colInstrument || col == colInstance || col == colDAG
}

// rowKey identifies one exported row of a record: its event ("" in a classic project), the
// repeating instrument ("" for the base row or a repeating event) and the instance (0 for the
// base row).
type rowKey struct {
	event, instrument string
	instance          int
}

// state is one project and its records; the Server's mutex guards it.
type state struct {
	p          *Project
	d          *dict.Dictionary
	idField    string
	records    map[string]map[rowKey]map[string]string // record → row → column → non-blank value
	eventIdx   map[string]int
	eventArm   map[string]int
	formIdx    map[string]int
	designated map[string]map[string]bool // event → forms; nil: every form in every event
	repForms   map[string]map[string]bool // event → repeating forms
	repEvents  map[string]bool
	missing    map[string]bool
	identifier map[string]bool // fields marked as identifiers
	colIdx     map[string]int
	locked     map[string]bool // records no import may touch
}

func newState(p *Project) *state {
	st := &state{
		p:          p,
		d:          p.Dict,
		idField:    p.Dict.RecordID(),
		records:    map[string]map[rowKey]map[string]string{},
		eventIdx:   map[string]int{},
		eventArm:   map[string]int{},
		formIdx:    map[string]int{},
		repForms:   map[string]map[string]bool{},
		repEvents:  map[string]bool{},
		missing:    map[string]bool{},
		identifier: map[string]bool{},
		colIdx:     map[string]int{},
		locked:     map[string]bool{},
	}
	for _, id := range p.Locked {
		st.locked[id] = true
	}
	for i, c := range p.Dict.ExportColumns() {
		st.colIdx[c.Name] = i
	}
	for _, f := range p.Identifiers {
		st.identifier[f] = true
	}
	for i, e := range p.Events {
		st.eventIdx[e.UniqueName] = i
		st.eventArm[e.UniqueName] = e.Arm
	}
	for i, f := range p.Dict.Forms() {
		st.formIdx[f] = i
	}
	if p.Longitudinal() && len(p.FormEvents) > 0 {
		st.designated = map[string]map[string]bool{}
		for _, fe := range p.FormEvents {
			if st.designated[fe.Event] == nil {
				st.designated[fe.Event] = map[string]bool{}
			}
			st.designated[fe.Event][fe.Form] = true
		}
	}
	for _, r := range p.Repeating {
		ev := r.Event
		if !p.Longitudinal() {
			ev = ""
		}
		if r.Form == "" {
			st.repEvents[ev] = true
			continue
		}
		if st.repForms[ev] == nil {
			st.repForms[ev] = map[string]bool{}
		}
		st.repForms[ev][r.Form] = true
	}
	for _, part := range strings.Split(p.MissingCodes, "|") {
		code, _, _ := strings.Cut(part, ",")
		if code = strings.TrimSpace(code); code != "" {
			st.missing[code] = true
		}
	}
	return st
}

func (st *state) hasRepeating() bool { return len(st.p.Repeating) > 0 }

func (st *state) isDesignated(event, form string) bool {
	if st.designated == nil {
		return true
	}
	return st.designated[event][form]
}

// applies reports whether a form's columns belong to a row.
func (st *state) applies(k rowKey, form string) bool {
	switch {
	case k.instrument != "":
		return form == k.instrument
	case st.repEvents[k.event]:
		return st.isDesignated(k.event, form)
	default:
		return st.isDesignated(k.event, form) && !st.repForms[k.event][form]
	}
}

// kv is one column of an ordered row.
type kv struct{ key, value string }

type exportRequest struct {
	records, fields, forms, events []string
	rights                         Rights
	// blankGray exports the <form>_complete of a form never entered as "" instead of "0".
	blankGray bool
}

// withID reports whether an export holds the record-id column and the pseudo-columns:
// REDCap adds them only when the record id is requested (among the fields, or its form among
// the forms) or when neither fields nor forms are named.
func (st *state) withID(req exportRequest) bool {
	if len(req.fields) == 0 && len(req.forms) == 0 {
		return true
	}
	f, _ := st.d.Field(st.idField)
	return slices.Contains(req.fields, st.idField) || slices.Contains(req.forms, f.Form)
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "'" + x + "'"
	}
	return strings.Join(q, ", ")
}

func (st *state) handleExport(p url.Values, rights Rights) answer {
	req := exportRequest{records: list(p, "records"), fields: list(p, "fields"), forms: list(p, "forms"), events: list(p, "events"),
		rights: rights, blankGray: p.Get("exportBlankForGrayFormStatus") == "true"}
	var bad []string
	for _, f := range req.fields {
		if _, ok := st.d.Field(f); ok {
			continue
		}
		if c, ok := st.d.Column(f); ok && c.Complete {
			continue
		}
		bad = append(bad, f)
	}
	if len(bad) > 0 {
		return errAnswer(http.StatusBadRequest, "The following values in the parameter fields are not valid: "+quoteList(bad))
	}
	bad = nil
	for _, f := range req.forms {
		if _, ok := st.formIdx[f]; !ok {
			bad = append(bad, f)
		}
	}
	if len(bad) > 0 {
		return errAnswer(http.StatusBadRequest, "The following values in the parameter forms are not valid: "+quoteList(bad))
	}
	bad = nil
	for _, e := range req.events {
		if _, ok := st.eventIdx[e]; !ok {
			bad = append(bad, e)
		}
	}
	if len(bad) > 0 {
		return errAnswer(http.StatusBadRequest, "The following values in the parameter events are not valid: "+quoteList(bad))
	}
	return rawJSON(encodeRows(st.export(req)))
}

// export builds the rows of an export in REDCap's order.
func (st *state) export(req exportRequest) [][]kv {
	cols := st.restrict(req.rights, st.selectColumns(req.fields, req.forms))
	hash := st.hashesIDs(req.rights)
	withID := st.withID(req)
	ids := make([]string, 0, len(st.records))
	if len(req.records) > 0 {
		for _, id := range req.records {
			if _, ok := st.records[id]; ok && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	} else {
		for id := range st.records {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return lessID(ids[i], ids[j]) })
	var events map[string]bool
	if len(req.events) > 0 {
		events = map[string]bool{}
		for _, e := range req.events {
			events[e] = true
		}
	}

	var out [][]kv
	for _, id := range ids {
		rows := st.records[id]
		keys := make([]rowKey, 0, len(rows))
		for k := range rows {
			if events != nil && !events[k.event] {
				continue
			}
			if k.instrument != "" && !hasForm(cols, k.instrument) {
				continue
			}
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return st.lessKey(keys[i], keys[j]) })
		shown := id
		if hash {
			shown = st.hashID(id)
		}
		for _, k := range keys {
			out = append(out, st.exportRow(shown, k, rows[k], cols, withID, req.blankGray))
		}
	}
	return out
}

func hasForm(cols []dict.Column, form string) bool {
	for _, c := range cols {
		if c.Form == form {
			return true
		}
	}
	return false
}

// selectColumns returns the data columns an export includes, in dictionary order.
func (st *state) selectColumns(fields, forms []string) []dict.Column {
	all := st.d.ExportColumns()
	if len(fields) == 0 && len(forms) == 0 {
		return all
	}
	fieldSet := map[string]bool{}
	for _, f := range fields {
		fieldSet[f] = true
	}
	formSet := map[string]bool{}
	for _, f := range forms {
		formSet[f] = true
	}
	var out []dict.Column
	for _, c := range all {
		if formSet[c.Form] || fieldSet[c.Field] || (c.Complete && fieldSet[c.Name]) {
			out = append(out, c)
		}
	}
	return out
}

// exportRow builds one row of an export: with withID the record id and the pseudo-columns
// first, then the columns cols. A form never entered (no <form>_complete stored) exports its
// status as "0", or "" with blankGray; a form that does not apply to the row exports "".
func (st *state) exportRow(id string, k rowKey, stored map[string]string, cols []dict.Column, withID, blankGray bool) []kv {
	var row []kv
	if withID {
		row = append(row, kv{st.idField, id})
	}
	if withID && st.p.Longitudinal() {
		row = append(row, kv{colEvent, k.event})
	}
	if withID && st.hasRepeating() {
		inst := ""
		if k.instance > 0 {
			inst = strconv.Itoa(k.instance)
		}
		row = append(row, kv{colInstrument, k.instrument}, kv{colInstance, inst})
	}
	for _, c := range cols {
		if c.Name == st.idField {
			continue
		}
		v := ""
		if st.applies(k, c.Form) {
			v = stored[c.Name]
			if v == "" && (c.Code != "" || c.Complete && !blankGray) {
				v = "0"
			}
		}
		row = append(row, kv{c.Name, v})
	}
	return row
}

func (st *state) lessKey(a, b rowKey) bool {
	if a.event != b.event {
		return st.eventIdx[a.event] < st.eventIdx[b.event]
	}
	if a.instrument != b.instrument {
		if a.instrument == "" || b.instrument == "" {
			return a.instrument == ""
		}
		return st.formIdx[a.instrument] < st.formIdx[b.instrument]
	}
	return a.instance < b.instance
}

// lessID orders record ids as REDCap lists them: numbers numerically, before other names.
func lessID(a, b string) bool {
	na, ea := strconv.Atoi(a)
	nb, eb := strconv.Atoi(b)
	switch {
	case ea == nil && eb == nil:
		return na < nb
	case ea == nil:
		return true
	case eb == nil:
		return false
	}
	return a < b
}

// encodeRows writes rows as a JSON array of objects, keeping the column order. Every value is
// a JSON string except redcap_repeat_instance on an instance row, a JSON number as in REDCap.
func encodeRows(rows [][]kv) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, r := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		for j, c := range r {
			if j > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(c.key)
			b.Write(k)
			b.WriteByte(':')
			if c.key == colInstance && positive(c.value) {
				b.WriteString(c.value)
				continue
			}
			v, _ := json.Marshal(c.value)
			b.Write(v)
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes()
}

// importError is REDCap's refusal of an import: HTTP 400 and a message.
type importError struct{ msg string }

func (st *state) handleImport(p url.Values) answer {
	overwrite := p.Get("overwriteBehavior") == "overwrite"
	ret := p.Get("returnContent")
	rows, err := decodeRows(strings.NewReader(p.Get("data")))
	var bad *badValue
	switch {
	case errors.As(err, &bad):
		return errAnswer(http.StatusBadRequest, fmt.Sprintf("The data being imported is not formatted correctly: the value of %s in record %d is not a string", bad.field, bad.row))
	case err != nil:
		return errAnswer(http.StatusBadRequest, "The data being imported is not formatted correctly: it must be a JSON array of records")
	}
	var before map[string]map[rowKey]map[string]string
	if st.p.RecordsFile != "" {
		before = cloneRecords(st.records)
	}
	ids, ierr := st.importRows(rows, overwrite)
	if ierr != nil {
		return errAnswer(http.StatusBadRequest, ierr.msg)
	}
	if st.p.RecordsFile != "" {
		if err := st.saveRecords(); err != nil {
			st.records = before
			return errAnswer(http.StatusInternalServerError, "redcaptest: the import could not be saved, nothing was imported: "+err.Error())
		}
	}
	switch ret {
	case "ids":
		return jsonAnswer(ids)
	case "nothing":
		return answer{http.StatusOK, "application/json", nil}
	}
	return jsonAnswer(map[string]int{"count": len(ids)})
}

func cloneRecords(in map[string]map[rowKey]map[string]string) map[string]map[rowKey]map[string]string {
	out := make(map[string]map[rowKey]map[string]string, len(in))
	for id, rows := range in {
		rs := make(map[rowKey]map[string]string, len(rows))
		for k, r := range rows {
			rs[k] = maps.Clone(r)
		}
		out[id] = rs
	}
	return out
}

// importRows checks every row and, when all are good, stores them; it returns the distinct
// record ids in order of appearance.
func (st *state) importRows(rows []map[string]string, overwrite bool) ([]string, *importError) {
	keys, ierr := st.validate(rows)
	if ierr != nil {
		return nil, ierr
	}
	var ids []string
	seen := map[string]bool{}
	for i, r := range rows {
		id := r[st.idField]
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
		if st.records[id] == nil {
			st.records[id] = map[rowKey]map[string]string{}
		}
		stored := st.records[id][keys[i]]
		if stored == nil {
			stored = map[string]string{}
			st.records[id][keys[i]] = stored
		}
		touched := map[string]bool{}
		for col, v := range r {
			if col == st.idField || isPseudo(col) {
				continue
			}
			c, _ := st.d.Column(col)
			switch {
			case v == "" && overwrite, c.Code != "" && v == "0":
				delete(stored, col)
			case v == "":
			default:
				stored[col] = v
				if !c.Complete {
					touched[c.Form] = true
				}
			}
		}
		for form := range touched {
			if _, ok := stored[form+"_complete"]; !ok {
				stored[form+"_complete"] = "0"
			}
		}
	}
	return ids, nil
}

// validate checks rows the way REDCap does before an import, in REDCap's order: unknown
// fields, then event names, then values. It returns each row's key.
func (st *state) validate(rows []map[string]string) ([]rowKey, *importError) {
	var unknown []string
	for _, r := range rows {
		for col := range r {
			if col != st.idField && !isPseudo(col) && !st.d.HasColumn(col) && !slices.Contains(unknown, col) {
				unknown = append(unknown, col)
			}
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, &importError{"The following fields were not found in the project as real data fields: " + strings.Join(unknown, ", ")}
	}
	var badEvents []string
	for i, r := range rows {
		if strings.TrimSpace(r[st.idField]) == "" {
			return nil, &importError{fmt.Sprintf("Record %d of the data has no value for the record ID field (%s)", i+1, st.idField)}
		}
		ev := r[colEvent]
		if st.p.Longitudinal() && ev == "" {
			return nil, &importError{fmt.Sprintf("The %s field is required in a longitudinal project, but record %s has none", colEvent, r[st.idField])}
		}
		if _, ok := st.eventIdx[ev]; ev != "" && !ok && !slices.Contains(badEvents, ev) {
			badEvents = append(badEvents, ev)
		}
	}
	if len(badEvents) > 0 {
		return nil, &importError{"The following values of redcap_event_name are invalid: " + strings.Join(badEvents, ", ")}
	}

	if st.p.PlainRefusals {
		for _, r := range rows {
			if st.locked[r[st.idField]] {
				return nil, &importError{msgLocked}
			}
		}
	}

	var lines []string
	bad := func(record, field, value, msg string) {
		lines = append(lines, csvLine(record, field, value, msg))
	}
	keys := make([]rowKey, len(rows))
	for i, r := range rows {
		id := r[st.idField]
		k := rowKey{event: r[colEvent], instrument: r[colInstrument]}
		inst := r[colInstance]
		switch {
		case k.instrument != "" && !st.repForms[k.event][k.instrument]:
			bad(id, colInstrument, k.instrument, "The instrument is not set up as a repeating instrument in this event")
		case k.instrument == "" && inst != "" && !st.repEvents[k.event]:
			bad(id, colInstance, inst, "A repeat instance was given but neither an instrument nor the event repeats")
		case (k.instrument != "" || st.repEvents[k.event]) && !positive(inst):
			bad(id, colInstance, inst, "The repeat instance must be a whole number of 1 or more")
		}
		k.instance, _ = strconv.Atoi(inst)
		keys[i] = k

		cols := make([]string, 0, len(r))
		for col := range r {
			cols = append(cols, col)
		}
		sort.Slice(cols, func(a, b int) bool { return st.colOrder(cols[a]) < st.colOrder(cols[b]) })
		for _, col := range cols {
			v := r[col]
			if v == "" || col == st.idField || isPseudo(col) {
				continue
			}
			c, _ := st.d.Column(col)
			if st.locked[id] {
				bad(id, col, v, msgFormLocked)
				continue
			}
			if !st.applies(k, c.Form) {
				notDesignated := k.instrument == "" && !st.repForms[k.event][c.Form]
				switch {
				case notDesignated && st.p.PlainRefusals:
					return nil, &importError{fmt.Sprintf(msgNotDesignated, c.Field, st.eventLabel(k.event))}
				case notDesignated:
					bad(id, col, v, fmt.Sprintf(msgNotDesignated, c.Field, st.eventArmLabel(k.event)))
				default:
					bad(id, col, v, st.whyNotHere(k, c.Form))
				}
				continue
			}
			if msg := st.checkValue(c, v); msg != "" {
				if msg == msgNotValidated && st.p.PlainRefusals {
					return nil, &importError{msgNotValidated}
				}
				bad(id, col, v, msg)
			}
		}
	}
	if len(lines) > 0 {
		return nil, &importError{strings.Join(lines, "\n")}
	}
	return keys, nil
}

// REDCap's wordings of import refusals. REDCap puts them in the fourth item of its CSV lines
// ("record","field","value","message"); with Project.PlainRefusals msgNotValidated,
// msgNotDesignated and msgLocked come alone, naming no record. msgLocked is the simulator's
// own wording (REDCap's plain text varies by version).
const (
	msgNotValidated  = "The value you provided could not be validated because it does not follow the expected format. Please try again."
	msgNotDesignated = "This field ('%s') exists on an instrument that is not designated for the event named '%s'. You are not allowed to import data for this field into this event."
	msgFormLocked    = "This field is located on a form that is locked. You must first unlock this form for this record."
	msgLocked        = "The data cannot be imported because a record, event or form it would change is locked. Unlock it in REDCap first."
)

// eventArmLabel is an event's name as REDCap's import errors show it: "Label (Arm 1: Arm 1)".
func (st *state) eventArmLabel(unique string) string {
	arm := st.eventArm[unique]
	return fmt.Sprintf("%s (Arm %d: Arm %d)", st.eventLabel(unique), arm, arm)
}

// eventLabel is an event's name as REDCap shows it (its label), or the unique name when unknown.
func (st *state) eventLabel(unique string) string {
	for _, e := range st.p.Events {
		if e.UniqueName == unique {
			return e.Name
		}
	}
	return unique
}

func (st *state) colOrder(col string) int {
	if i, ok := st.colIdx[col]; ok {
		return i
	}
	return -1
}

func (st *state) whyNotHere(k rowKey, form string) string {
	switch {
	case k.instrument != "":
		return fmt.Sprintf("The field is not on the repeating instrument %s", k.instrument)
	case st.repForms[k.event][form]:
		return fmt.Sprintf("The instrument %s repeats: give %s and %s", form, colInstrument, colInstance)
	default:
		return fmt.Sprintf("The instrument %s is not designated for the event %s", form, k.event)
	}
}

func positive(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1
}

var (
	reInteger = regexp.MustCompile(`^[-+]?[0-9]+$`)
	reNumber  = regexp.MustCompile(`^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$`)
)

// checkValue returns why REDCap would refuse v for column c, or "".
func (st *state) checkValue(c dict.Column, v string) string {
	if st.missing[v] {
		return ""
	}
	if c.Complete {
		if v != "0" && v != "1" && v != "2" {
			return "The value is not a valid category for " + c.Name
		}
		return ""
	}
	if c.Code != "" {
		if v != "0" && v != "1" {
			return "The value is not a valid category for " + c.Name
		}
		return ""
	}
	f, _ := st.d.Field(c.Field)
	switch f.Type {
	case "dropdown", "radio", "yesno", "truefalse":
		if _, ok := f.Label(v); !ok {
			return "The value is not a valid category for " + f.Name
		}
		return ""
	case "text":
	default:
		return ""
	}
	ok := true
	switch f.Validation {
	case "integer":
		ok = reInteger.MatchString(v)
	case "number":
		ok = reNumber.MatchString(v)
	case "date_ymd", "date_mdy", "date_dmy":
		_, err := time.Parse("2006-01-02", v)
		ok = err == nil
	case "datetime_ymd", "datetime_mdy", "datetime_dmy":
		_, err := time.Parse("2006-01-02 15:04", v)
		ok = err == nil
	case "datetime_seconds_ymd", "datetime_seconds_mdy", "datetime_seconds_dmy":
		_, err := time.Parse("2006-01-02 15:04:05", v)
		ok = err == nil
	}
	if !ok {
		return msgNotValidated
	}
	return ""
}

// csvLine writes one line of REDCap's value-error answer: every item double-quoted.
func csvLine(items ...string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return strings.Join(q, ",")
}

// badValue is a value of a flat row that is neither text, a number nor null.
type badValue struct {
	row   int // 1-based
	field string
}

func (b *badValue) Error() string {
	return fmt.Sprintf("row %d: the value of %s is neither text nor a number", b.row, b.field)
}

// decodeRows reads a JSON array of flat rows, as REDCap exports and imports
// them: each value text or a number (kept as written), null meaning blank.
func decodeRows(r io.Reader) ([]map[string]string, error) {
	var raw []map[string]any
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	rows := make([]map[string]string, len(raw))
	for i, m := range raw {
		row := make(map[string]string, len(m))
		for k, v := range m {
			switch v := v.(type) {
			case string:
				row[k] = v
			case json.Number:
				row[k] = v.String()
			case nil:
				row[k] = ""
			default:
				return nil, &badValue{row: i + 1, field: k}
			}
		}
		rows[i] = row
	}
	return rows, nil
}
