package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/storage"
)

const (
	// reportBatch bounds the write-back targets one import handles.
	reportBatch = 500
	// maxWriteBackAttempts is how many times REDCap may refuse a row on
	// its own (a locked record, a refusal that names no row) before its
	// values fail for good.
	maxWriteBackAttempts = 5
	// maxImportCalls bounds the import requests one batch may take while
	// bisecting refusals, so a project-wide refusal never hammers REDCap;
	// rows left over go in on a later pass.
	maxImportCalls = 40
)

// ReportStats counts what one report stage did. Imported, Rejected and
// Dropped count REDCap rows (a record, event and repeat instance).
type ReportStats struct {
	Queued, Imported, Rejected int
	Dropped                    int                `json:",omitempty"`
	Problems                   []WriteBackProblem `json:",omitempty"`
}

// WriteBackProblem is a REDCap row nudge gave up writing in this pass:
// REDCap refused it (State failed, with REDCap's text) or its record no
// longer exists (State dropped).
type WriteBackProblem struct {
	Project  string   `json:"project"`
	Record   string   `json:"record"`
	Event    string   `json:"event,omitempty"`
	Instance int      `json:"instance,omitempty"`
	Fields   []string `json:"fields"`
	State    string   `json:"state"`
	Reason   string   `json:"reason"`
}

// Report writes message statuses back into the REDCap fields each rule's
// write_back names. It works in two durable steps: first every status not
// yet reported becomes a write-back value (in the same transaction that
// marks it reported), then the queue is imported project by project in
// batches. The store keeps one value per REDCap field, the newest, so
// REDCap never receives an older value after a newer one. Before an import
// the batch's records are looked up: a record deleted from REDCap is not
// created again. Rows REDCap refuses are set aside (bisecting a batch whose
// refusal names no row) and fail for good with REDCap's text after a few
// attempts; rows it could not take (network, 5xx) are retried on a later
// pass.
func (e *Engine) Report(ctx context.Context) (ReportStats, error) {
	var st ReportStats
	for {
		msgs, err := e.Store.Unreported(ctx, reportBatch)
		if err != nil {
			return st, err
		}
		if len(msgs) == 0 {
			break
		}
		items := make([]storage.WriteBack, 0, len(msgs))
		reported := make(map[int64]string, len(msgs))
		for _, m := range msgs {
			reported[m.ID] = m.Status
			if wb, ok := e.writeBackFor(m); ok {
				items = append(items, wb)
			}
		}
		if err := e.Store.EnqueueWriteBacks(ctx, items, reported); err != nil {
			return st, err
		}
		st.Queued += len(items)
		if len(msgs) < reportBatch {
			break
		}
	}
	for _, p := range e.study().Config.Projects {
		for {
			more, err := e.flushWriteBacks(ctx, p.Name, &st)
			if err != nil {
				return st, err
			}
			if !more {
				break
			}
		}
	}
	return st, nil
}

// writeBackFor builds the REDCap fields for one message's current status.
func (e *Engine) writeBackFor(m storage.Message) (storage.WriteBack, bool) {
	r := e.study().Rule(m.Rule)
	if r == nil || rules.IsFallbackKey(m.Key) {
		// A fallback email's outcome is not written back: the rule's fields
		// keep its text's.
		return storage.WriteBack{}, false
	}
	wb := r.WriteBack
	fields := make(map[string]string)
	set := func(field, value string) {
		if field != "" {
			fields[field] = value
		}
	}
	set(wb.Status, m.Status)
	set(wb.SID, m.SID)
	if !m.SentAt.IsZero() && wb.SentAt != "" {
		layout := sentAtLayout(e.Dicts[m.Project], wb.SentAt)
		set(wb.SentAt, m.SentAt.In(e.study().Config.Location).Format(layout))
	}
	if m.ErrorCode != 0 {
		set(wb.Error, strconv.Itoa(m.ErrorCode))
	}
	if len(fields) == 0 {
		return storage.WriteBack{}, false
	}
	return storage.WriteBack{Project: m.Project, Record: m.Record, Event: m.Event,
		RepeatInstrument: m.Instrument, Instance: m.Instance, Fields: fields,
		Origin: storage.OriginStatus, CreatedAt: e.now()}, true
}

// sentAtLayout is the time layout a sent_at field's validation accepts
// (REDCap's API takes dates and times in YMD order whatever the display
// format); a plain text field gets the time to the second.
func sentAtLayout(d *dict.Dictionary, field string) string {
	if d != nil {
		if f, ok := d.Field(field); ok {
			if layout, ok := timeLayouts[f.Validation]; ok {
				return layout
			}
		}
	}
	return "2006-01-02 15:04:05"
}

// timeLayouts maps REDCap's date and time validations to the layout the
// API accepts for them.
var timeLayouts = map[string]string{
	"date_ymd": "2006-01-02", "date_mdy": "2006-01-02", "date_dmy": "2006-01-02",
	"datetime_ymd": "2006-01-02 15:04", "datetime_mdy": "2006-01-02 15:04", "datetime_dmy": "2006-01-02 15:04",
	"datetime_seconds_ymd": "2006-01-02 15:04:05", "datetime_seconds_mdy": "2006-01-02 15:04:05",
	"datetime_seconds_dmy": "2006-01-02 15:04:05",
}

// wbRow is one REDCap row of a batch: the pending values of its fields.
type wbRow struct {
	record, event, instrument string
	instance                  int
	row                       redcap.Row
	targets                   []storage.WriteBackTarget
	settled                   bool
}

func (r *wbRow) refs() []storage.WriteBackRef {
	out := make([]storage.WriteBackRef, len(r.targets))
	for i, t := range r.targets {
		out[i] = t.Ref()
	}
	return out
}

func (r *wbRow) fields() []string {
	out := make([]string, len(r.targets))
	for i, t := range r.targets {
		out[i] = t.Field
	}
	sort.Strings(out)
	return out
}

func (r *wbRow) attempts() int {
	n := 0
	for _, t := range r.targets {
		n = max(n, t.Attempts)
	}
	return n
}

func (r *wbRow) refusals() int {
	n := 0
	for _, t := range r.targets {
		n = max(n, t.Refusals)
	}
	return n
}

// flush is one batch of one project's write-backs on its way to REDCap.
type flush struct {
	e       *Engine
	project string
	idField string
	now     time.Time
	st      *ReportStats
	calls   int
}

// flushWriteBacks imports one batch of a project's due write-backs. more
// says that a full batch was handled and the next may be due too.
func (e *Engine) flushWriteBacks(ctx context.Context, project string, st *ReportStats) (more bool, err error) {
	now := e.now()
	pending, err := e.Store.PendingWriteBacks(ctx, project, now, reportBatch)
	if err != nil || len(pending) == 0 {
		return false, err
	}
	d := e.Dicts[project]
	if d == nil {
		return false, fmt.Errorf("project %s: data dictionary not loaded", project)
	}
	f := &flush{e: e, project: project, idField: d.RecordID(), now: now, st: st}
	rows := f.group(pending, e.infos[project].Longitudinal)
	log := e.log().WithField("project", project)

	rows, err = f.dropMissing(ctx, rows)
	if err != nil {
		log.WithError(err).Warn("could not check which records exist in REDCap; write-back will retry")
		return false, f.retry(ctx, rows, err)
	}
	if err := f.importRows(ctx, rows); err != nil {
		if errors.Is(err, errImportBudget) {
			log.Warn("REDCap refused many write-back rows; the rest will be tried on a later pass")
		} else {
			log.WithError(err).Warn("write-back to REDCap failed; will retry")
		}
		var left []*wbRow
		for _, r := range rows {
			if !r.settled {
				left = append(left, r)
			}
		}
		return false, f.retry(ctx, left, err)
	}
	return len(pending) == reportBatch, nil
}

// group merges the pending values into REDCap rows, in the order of their
// oldest value.
func (f *flush) group(pending []storage.WriteBackTarget, longitudinal bool) []*wbRow {
	type key struct {
		record, event, instrument string
		instance                  int
	}
	idx := map[key]*wbRow{}
	var out []*wbRow
	for _, t := range pending {
		k := key{t.Record, t.Event, t.RepeatInstrument, t.Instance}
		r := idx[k]
		if r == nil {
			r = &wbRow{record: t.Record, event: t.Event, instrument: t.RepeatInstrument, instance: t.Instance,
				row: redcap.Row{f.idField: t.Record}}
			if longitudinal {
				r.row["redcap_event_name"] = t.Event
			}
			if t.Instance > 0 {
				r.row["redcap_repeat_instrument"] = t.RepeatInstrument
				r.row["redcap_repeat_instance"] = strconv.Itoa(t.Instance)
			}
			idx[k] = r
			out = append(out, r)
		}
		r.row[t.Field] = t.Value
		r.targets = append(r.targets, t)
	}
	return out
}

// errExistence says REDCap's answer about which records exist cannot be
// trusted.
var errExistence = errors.New("the export of record ids named none of the records asked for")

// dropMissing asks REDCap which of the rows' records exist (one export of
// the record-id field) and drops the rows of records that do not: REDCap's
// import would create them again as empty records. It returns the rest.
func (f *flush) dropMissing(ctx context.Context, rows []*wbRow) ([]*wbRow, error) {
	var ids []string
	seen := map[string]bool{}
	for _, r := range rows {
		if !seen[r.record] {
			seen[r.record] = true
			ids = append(ids, r.record)
		}
	}
	got, err := f.e.REDCap[f.project].ExportRecords(ctx, redcap.ExportParams{Records: ids, Fields: []string{f.idField}})
	if err != nil {
		return rows, err
	}
	exists := map[string]bool{}
	for _, row := range got {
		if seen[row[f.idField]] {
			exists[row[f.idField]] = true
		}
	}
	if len(exists) == 0 && len(got) > 0 {
		// Rows came back but none is ours: e.g. hashed record ids of a
		// de-identified export. Never take that as "deleted".
		return rows, fmt.Errorf("%w (%d rows came back): check the API user's export rights", errExistence, len(got))
	}
	var keep []*wbRow
	for _, r := range rows {
		if exists[r.record] {
			keep = append(keep, r)
			continue
		}
		reason := fmt.Sprintf("record %s no longer exists in REDCap; not written, as an import would create it again", r.record)
		if err := f.e.Store.DropWriteBacks(ctx, r.refs(), reason, f.now); err != nil {
			return rows, err
		}
		r.settled = true
		f.problem(r, storage.WriteBackDropped, reason)
		f.st.Dropped++
		f.e.log().WithFields(map[string]any{"project": f.project, "record": r.record, "event": r.event}).
			Warn("write-back dropped: the record no longer exists in REDCap")
	}
	return keep, nil
}

// errImportBudget stops a batch that has used its import requests.
var errImportBudget = errors.New("import request budget of the batch used up")

// importRows imports rows, setting aside what REDCap refuses. A refusal
// that names no row is bisected until the refused rows stand alone. It
// returns an error REDCap did not refuse a row for (network, 5xx, …), or
// errImportBudget; rows not yet settled are then to be retried.
func (f *flush) importRows(ctx context.Context, rows []*wbRow) error {
	if len(rows) == 0 {
		return nil
	}
	if f.calls >= maxImportCalls {
		return errImportBudget
	}
	f.calls++
	batch := make([]redcap.Row, len(rows))
	for i, r := range rows {
		batch[i] = r.row
	}
	res, err := f.e.REDCap[f.project].ImportRecords(ctx, batch)
	if err == nil {
		return f.imported(ctx, rows, res)
	}
	var ae *redcap.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		return err
	}
	if len(rows) == 1 {
		return f.refused(ctx, rows[0], ae.Message)
	}
	mid := len(rows) / 2
	if err := f.importRows(ctx, rows[:mid]); err != nil {
		return err
	}
	return f.importRows(ctx, rows[mid:])
}

// imported settles an import REDCap took: the rows it named as bad fail
// with its reason, the others are done.
func (f *flush) imported(ctx context.Context, rows []*wbRow, res redcap.ImportResult) error {
	bad := map[*wbRow]string{}
	for _, rj := range res.Rejected {
		for _, r := range rows {
			if sameRow(r.row, rj.Row) {
				bad[r] = rj.Reason
			}
		}
	}
	var done []storage.WriteBackRef
	for _, r := range rows {
		r.settled = true
		if reason, ok := bad[r]; ok {
			// REDCap's reason may quote the value: it goes to the report, not the log.
			if err := f.fail(ctx, r, reason, false); err != nil {
				return err
			}
			continue
		}
		done = append(done, r.refs()...)
		f.st.Imported++
	}
	if err := f.e.Store.CompleteWriteBacks(ctx, done, f.now); err != nil {
		return err
	}
	f.e.log().WithFields(map[string]any{"project": f.project, "rows": len(rows) - len(bad), "rejected": len(bad)}).
		Info("statuses written back to REDCap")
	return nil
}

// sameRow reports whether two import rows are the same map.
func sameRow(a, b redcap.Row) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// refused handles a row REDCap refused on its own with a text that names
// no row: it is tried again later, up to maxWriteBackAttempts, then fails
// with REDCap's text.
func (f *flush) refused(ctx context.Context, r *wbRow, msg string) error {
	r.settled = true
	reason := "REDCap refused the import: " + msg
	if r.refusals()+1 >= maxWriteBackAttempts {
		return f.fail(ctx, r, reason, true)
	}
	f.e.log().WithFields(map[string]any{"project": f.project, "record": r.record, "event": r.event, "reason": msg}).
		Warn("REDCap refused a write-back; will retry")
	return f.e.Store.RefuseWriteBacks(ctx, r.refs(), reason, f.now.Add(writeBackDelay(r.refusals()+1)))
}

// fail records that REDCap refused a row for good. logReason says the
// reason quotes no value and may be logged.
func (f *flush) fail(ctx context.Context, r *wbRow, reason string, logReason bool) error {
	fields := map[string]any{"project": f.project, "record": r.record, "event": r.event, "fields": r.fields()}
	if logReason {
		fields["reason"] = reason
	}
	f.e.log().WithFields(fields).Error("REDCap refused a write-back for good; see the run's report")
	if err := f.e.Store.FailWriteBacks(ctx, r.refs(), reason, f.now); err != nil {
		return err
	}
	f.st.Rejected++
	f.problem(r, storage.WriteBackFailed, reason)
	return nil
}

func (f *flush) problem(r *wbRow, state storage.WriteBackState, reason string) {
	f.st.Problems = append(f.st.Problems, WriteBackProblem{Project: f.project, Record: r.record, Event: r.event,
		Instance: r.instance, Fields: r.fields(), State: string(state), Reason: reason})
}

// retry makes rows due again after a delay, keeping why.
func (f *flush) retry(ctx context.Context, rows []*wbRow, cause error) error {
	var refs []storage.WriteBackRef
	n := 0
	for _, r := range rows {
		refs = append(refs, r.refs()...)
		n = max(n, r.attempts())
	}
	if errors.Is(cause, errImportBudget) {
		// Not these rows' fault: try them soon.
		n = 0
	}
	return f.e.Store.RetryWriteBacks(ctx, refs, cause.Error(), f.now.Add(writeBackDelay(n+1)))
}

// writeBackDelay is the wait before the n-th retry: 30s doubling, at most
// an hour.
func writeBackDelay(n int) time.Duration {
	d := 30 * time.Second << max(n-1, 0)
	if d > time.Hour || d <= 0 {
		d = time.Hour
	}
	return d
}
