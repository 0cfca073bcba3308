package redcap

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/nudge-study/nudge/rules/dict"
)

// ExportParams selects what ExportRecords returns. Empty lists mean "all".
type ExportParams struct {
	Records, Fields, Forms, Events []string
	FilterLogic                    string // REDCap logic; only rows where it is true
}

// ErrMissingColumns is the cause of the error ExportRecords returns when REDCap's answer lacks
// columns that were asked for (see MissingColumnsError).
var ErrMissingColumns = errors.New("REDCap left out columns that were asked for")

// ErrMissingRecords is the cause of the error ExportRecords returns when REDCap's answer lacks
// records it lists, or holds records that were not asked for.
var ErrMissingRecords = errors.New("REDCap's export does not match its list of records")

// MissingColumnsError says which requested fields REDCap left out of an export. REDCap does
// that without an error (HTTP 200) for the fields the token's user may not export.
type MissingColumnsError struct {
	Fields []string // the fields (or <form>_complete columns) that did not come back, in dictionary order
	Forms  []string // the forms holding them
}

// Error names the fields, the likely cause (the API user's data export rights) and the fix.
func (e *MissingColumnsError) Error() string {
	form := "form"
	if len(e.Forms) > 1 {
		form = "forms"
	}
	forms := strings.Join(e.Forms, ", ")
	return fmt.Sprintf("REDCap's export left out %s, which nudge asked for (%s %s). "+
		"REDCap drops without an error the fields the API token's user may not export: under "+
		"\"De-Identified\" or \"Remove All Identifier Fields\" data export rights the fields marked "+
		"as identifiers (De-Identified also drops free-text, notes and date fields and hashes the "+
		"record ids), and under \"No Access\" every field of the form. In REDCap, open User Rights, "+
		"edit the token's user and give \"Full Data Set\" export rights to %s %s (or stop using "+
		"these fields in the rules); nudge plans nothing for this project until every field comes back",
		strings.Join(e.Fields, ", "), form, forms, form, forms)
}

// Is makes errors.Is(err, ErrMissingColumns) true.
func (e *MissingColumnsError) Is(target error) bool { return target == ErrMissingColumns }

// ExportRecords exports records as flat rows of raw values (codes, not labels), with the
// record-id field and the pseudo-columns redcap_event_name, redcap_repeat_instrument and
// redcap_repeat_instance where the project has them.
//
// Without Records it first exports the record ids alone (with the same Events and
// FilterLogic), then the records in batches of the client's batch size; with Records it asks
// for those in batches. It checks REDCap's answers, which drop data without an error:
//   - Every requested column must come back (checkbox fields as their field___code columns),
//     or the export fails with a *MissingColumnsError. When no row comes back there is nothing
//     to check and nothing to act on: an empty answer is accepted.
//   - A batch must hold only records it asked for (hashed record ids of a De-Identified user
//     fail here) and every record it asked for. A record REDCap listed but did not export is
//     looked up in a second list of record ids: still listed, the export fails
//     (ErrMissingRecords); no longer listed, it was deleted meanwhile and is left out. Records
//     named in Records that REDCap does not have are left out: they do not exist.
func (c *Client) ExportRecords(ctx context.Context, p ExportParams) ([]Row, error) {
	t, err := c.ExportTable(ctx, p)
	if err != nil {
		return nil, err
	}
	return t.Rows(), nil
}

// ExportTable is ExportRecords with the rows in one table, all batches
// appended.
func (c *Client) ExportTable(ctx context.Context, p ExportParams) (*Table, error) {
	d, err := c.dictionary(ctx, false)
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(p.Fields, func(f string) bool { return !d.HasColumn(f) && !hasField(d, f) }) {
		if d, err = c.dictionary(ctx, true); err != nil { // a field added since the metadata was read
			return nil, err
		}
	}
	idField := d.RecordID()
	if c.recordID != "" {
		idField = c.recordID
	}
	q := p
	if (len(q.Fields) > 0 || len(q.Forms) > 0) && !slices.Contains(q.Fields, idField) {
		// REDCap adds the record id and the pseudo-columns only when the id is asked for.
		q.Fields = append([]string{idField}, q.Fields...)
	}

	listed := len(p.Records) == 0
	asked := unique(p.Records)
	if listed {
		if asked, err = c.recordIDs(ctx, idField, p); err != nil {
			return nil, err
		}
	}
	rows := newTable()
	var absent []string
	seen := map[string]bool{} // columns of the answers
	for start := 0; start < len(asked); start += c.batch {
		batch := asked[start:min(start+c.batch, len(asked))]
		q.Records = batch
		got, err := c.exportTable(ctx, q)
		if err != nil {
			return nil, err
		}
		if got.Len() > 0 {
			for col, name := range got.cols {
				if got.has(0, col) {
					seen[name] = true
				}
			}
		}
		want := make(map[string]bool, len(batch))
		for _, id := range batch {
			want[id] = true
		}
		present := make(map[string]bool, len(batch))
		stray := 0
		idCol, hasID := got.index[idField]
		for i := range got.Len() {
			var id string
			if hasID {
				id, _ = got.valueAt(i, idCol)
			}
			if !want[id] {
				stray++
			}
			present[id] = true
		}
		if stray > 0 {
			return nil, c.missingRecords(fmt.Sprintf("REDCap answered a request for %d records with %d rows of records that were not asked for", len(batch), stray), presentIDs(present))
		}
		for _, id := range batch {
			if !present[id] {
				absent = append(absent, id)
			}
		}
		rows.Append(got)
	}
	if len(absent) > 0 && listed {
		if err := c.confirmDeleted(ctx, idField, p, absent); err != nil {
			return nil, err
		}
	}
	if len(absent) > 0 {
		c.log.WithField("records", len(absent)).Debug("redcap: records asked for are not in REDCap (deleted or never created)")
	}
	if rows.Len() == 0 {
		return rows, nil
	}
	if err := c.checkColumns(ctx, d, p, seen); err != nil {
		return nil, err
	}
	return rows, nil
}

func hasField(d *dict.Dictionary, name string) bool {
	_, ok := d.Field(name)
	return ok
}

// dictionary returns the project's data dictionary, from the last Metadata call unless
// refresh is set or there was none.
func (c *Client) dictionary(ctx context.Context, refresh bool) (*dict.Dictionary, error) {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	c.mu.Lock()
	d := c.dict
	c.mu.Unlock()
	if d != nil && !refresh {
		return d, nil
	}
	return c.Metadata(ctx)
}

// exportTable makes one record export request.
func (c *Client) exportTable(ctx context.Context, p ExportParams) (*Table, error) {
	v := url.Values{}
	v.Set("type", "flat")
	v.Set("rawOrLabel", "raw")
	setList(v, "records", p.Records)
	setList(v, "fields", p.Fields)
	setList(v, "forms", p.Forms)
	setList(v, "events", p.Events)
	if p.FilterLogic != "" {
		v.Set("filterLogic", p.FilterLogic)
	}
	body, err := c.call(ctx, "record", v, jsonBody)
	if err != nil {
		return nil, err
	}
	t, err := DecodeTable(body)
	if err != nil {
		return nil, c.wrap("record", err)
	}
	return t, nil
}

// recordIDs exports the ids of the records an export with p's Events and FilterLogic holds,
// each once, in REDCap's order.
func (c *Client) recordIDs(ctx context.Context, idField string, p ExportParams) ([]string, error) {
	t, err := c.exportTable(ctx, ExportParams{Fields: []string{idField}, Events: p.Events, FilterLogic: p.FilterLogic})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, t.Len())
	seen := make(map[string]bool, t.Len())
	for i := range t.Len() {
		id, ok := t.Value(i, idField)
		if !ok || id == "" {
			return nil, c.wrap("record", fmt.Errorf("row %d of the list of record ids has no %s: the record-id field of the metadata does not match the export", i+1, idField))
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// confirmDeleted lists the record ids again and fails when REDCap still lists one of the
// records its export left out.
func (c *Client) confirmDeleted(ctx context.Context, idField string, p ExportParams, absent []string) error {
	now, err := c.recordIDs(ctx, idField, p)
	if err != nil {
		return err
	}
	listed := make(map[string]bool, len(now))
	for _, id := range now {
		listed[id] = true
	}
	var still []string
	for _, id := range absent {
		if listed[id] {
			still = append(still, id)
		}
	}
	if len(still) == 0 {
		return nil
	}
	return c.missingRecords(fmt.Sprintf("REDCap lists %d records that its export left out (%s)", len(still), sample(still)), still)
}

var hashed = regexp.MustCompile(`^[0-9a-f]{32}$`)

// missingRecords is an ErrMissingRecords error, with the likely cause when the record ids
// look hashed.
func (c *Client) missingRecords(what string, ids []string) error {
	hint := "; export again, and if it keeps happening check the project's record ids in REDCap"
	if len(ids) > 0 && !slices.ContainsFunc(ids, func(id string) bool { return !hashed.MatchString(id) }) {
		hint = "; the record ids look hashed (32 hex characters), which REDCap does for an API user with " +
			"\"De-Identified\" data export rights: in REDCap, open User Rights, edit the token's user and give " +
			"\"Full Data Set\" export rights"
	}
	return &callError{msg: c.redact(fmt.Sprintf("REDCap record export from %s: %s%s", c.host, what, hint)), err: ErrMissingRecords}
}

func presentIDs(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	return out
}

// sample lists up to five ids for a message.
func sample(ids []string) string {
	if len(ids) <= 5 {
		return strings.Join(ids, ", ")
	}
	return strings.Join(ids[:5], ", ") + fmt.Sprintf(" and %d more", len(ids)-5)
}

func unique(xs []string) []string {
	out := make([]string, 0, len(xs))
	seen := make(map[string]bool, len(xs))
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// checkColumns fails with a *MissingColumnsError when a column p asked for is not among the
// columns of REDCap's answer. Before failing it reads the metadata again, in case the
// dictionary changed since it was read.
func (c *Client) checkColumns(ctx context.Context, d *dict.Dictionary, p ExportParams, seen map[string]bool) error {
	e := missingColumns(d, p, seen)
	if e == nil {
		return nil
	}
	fresh, err := c.dictionary(ctx, true)
	if err != nil {
		return err
	}
	if e = missingColumns(fresh, p, seen); e == nil {
		return nil
	}
	return e
}

// missingColumns compares the columns an export of p should hold with those it holds.
func missingColumns(d *dict.Dictionary, p ExportParams, seen map[string]bool) *MissingColumnsError {
	fields := make(map[string]bool, len(p.Fields))
	for _, f := range p.Fields {
		fields[f] = true
	}
	forms := make(map[string]bool, len(p.Forms))
	for _, f := range p.Forms {
		forms[f] = true
	}
	all := len(p.Fields) == 0 && len(p.Forms) == 0
	e := &MissingColumnsError{}
	for _, col := range d.ExportColumns() {
		name := col.Field
		if col.Complete {
			name = col.Name
		}
		if !all && !forms[col.Form] && !fields[name] || seen[col.Name] {
			continue
		}
		if !slices.Contains(e.Fields, name) {
			e.Fields = append(e.Fields, name)
		}
		if !slices.Contains(e.Forms, col.Form) {
			e.Forms = append(e.Forms, col.Form)
		}
	}
	if len(e.Fields) == 0 {
		return nil
	}
	return e
}
