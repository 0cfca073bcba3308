package redcap

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// MaxImportRows is the largest number of rows sent in one import request.
const MaxImportRows = 500

// ImportResult reports an import: how many records REDCap took and which rows it refused.
type ImportResult struct {
	Imported int         // distinct records REDCap reported as imported, summed over batches
	Rejected []Rejection // rows left out because REDCap refused them
}

// Rejection is a row REDCap refused, with REDCap's reason.
type Rejection struct {
	Row    Row
	Reason string
}

// ImportRecords imports flat rows (each with the record id and, where the project needs them,
// redcap_event_name, redcap_repeat_instrument and redcap_repeat_instance) in batches of at most
// MaxImportRows, with overwriteBehavior=normal: a blank never erases a stored value.
//
// REDCap refuses a whole request when one value is bad. When its answer names the bad rows (a
// value error, an unknown field, an invalid event name), those rows are set aside as
// Rejections and the rest of the batch is sent again. Any other failure stops the import: the
// error is returned with the result so far.
//
// A request that fails without an answer from REDCap itself (HTTP 5xx, a proxy's page, a
// timeout, a broken connection) or is rate-limited (HTTP 429) is tried again like any other
// call, although REDCap may have applied it: REDCap applies an import whole or not at all,
// and sending the same rows again with overwriteBehavior=normal stores the same values, so a
// repeat cannot leave REDCap with an older value than the one sent, as long as one writer at
// a time imports these fields (nudge's write-back). A refusal (HTTP 4xx, or {"error": …}
// with HTTP 200) is never retried.
func (c *Client) ImportRecords(ctx context.Context, rows []Row) (ImportResult, error) {
	var res ImportResult
	if len(rows) == 0 {
		return res, nil
	}
	idField, err := c.recordIDField(ctx)
	if err != nil {
		return res, err
	}
	for i, r := range rows {
		if r[idField] == "" {
			return res, fmt.Errorf("redcap: import row %d has no record id (field %q); every row must name its record", i+1, idField)
		}
	}
	for start := 0; start < len(rows); start += MaxImportRows {
		batch := rows[start:min(start+MaxImportRows, len(rows))]
		n, rejected, err := c.importBatch(ctx, idField, batch)
		res.Imported += n
		res.Rejected = append(res.Rejected, rejected...)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// recordIDField returns the record-id field name, from the WithRecordIDField option or else
// the project's metadata (read once).
func (c *Client) recordIDField(ctx context.Context) (string, error) {
	if c.recordID != "" {
		return c.recordID, nil
	}
	d, err := c.dictionary(ctx, false)
	if err != nil {
		return "", fmt.Errorf("finding the record-id field: %w", err)
	}
	return d.RecordID(), nil
}

// importBatch imports one batch, setting aside the rows REDCap names as bad and trying the
// rest again, until REDCap takes what is left or refuses it for a reason that names no rows.
func (c *Client) importBatch(ctx context.Context, idField string, batch []Row) (int, []Rejection, error) {
	var rejected []Rejection
	pending := batch
	for len(pending) > 0 {
		n, err := c.postImport(ctx, idField, pending)
		if err == nil {
			return n, rejected, nil
		}
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			return n, rejected, err
		}
		bad := badRows(idField, pending, ae.Message)
		if len(bad) == 0 {
			return 0, rejected, fmt.Errorf("importing %d rows: %w", len(pending), err)
		}
		var keep []Row
		for i, r := range pending {
			if reason, ok := bad[i]; ok {
				rejected = append(rejected, Rejection{Row: r, Reason: reason})
			} else {
				keep = append(keep, r)
			}
		}
		pending = keep
	}
	return 0, rejected, nil
}

// postImport sends one import request and checks REDCap's count against the records sent.
func (c *Client) postImport(ctx context.Context, idField string, rows []Row) (int, error) {
	data, err := json.Marshal(rows)
	if err != nil {
		return 0, fmt.Errorf("redcap: encoding import rows: %w", err)
	}
	v := url.Values{}
	v.Set("action", "import")
	v.Set("type", "flat")
	v.Set("overwriteBehavior", "normal")
	v.Set("returnContent", "count")
	v.Set("data", string(data))
	body, err := c.call(ctx, "record", v, jsonBody)
	if err != nil {
		return 0, err
	}
	var answer struct {
		Count json.Number `json:"count"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return 0, c.wrap("record import", fmt.Errorf("unexpected answer %s", snippet(body)))
	}
	n, err := strconv.Atoi(answer.Count.String())
	if err != nil {
		return 0, c.wrap("record import", fmt.Errorf("the answer has no record count: %s", snippet(body)))
	}
	ids := map[string]bool{}
	for _, r := range rows {
		ids[r[idField]] = true
	}
	if n != len(ids) {
		return n, fmt.Errorf("redcap: REDCap reported importing %d records but the batch held %d distinct records; check those records in REDCap before retrying", n, len(ids))
	}
	return n, nil
}

// badRows maps the rows an import error names (index in rows) to the reason. It understands
// REDCap's value errors (one CSV line per bad value: record, field, value, message), unknown
// fields and invalid event names. An empty result means the message names no row.
func badRows(idField string, rows []Row, msg string) map[int]string {
	if bad := valueErrorRows(idField, rows, msg); len(bad) > 0 {
		return bad
	}
	bad := map[int]string{}
	if list, ok := strings.CutPrefix(msg, "The following fields were not found in the project as real data fields:"); ok {
		for _, f := range splitList(list) {
			for i, r := range rows {
				if _, has := r[f]; has {
					bad[i] = appendReason(bad[i], fmt.Sprintf("field %q is not in the project", f))
				}
			}
		}
		return bad
	}
	if list, ok := strings.CutPrefix(msg, "The following values of redcap_event_name are invalid:"); ok {
		for _, e := range splitList(list) {
			for i, r := range rows {
				if r["redcap_event_name"] == e {
					bad[i] = appendReason(bad[i], fmt.Sprintf("event %q is not in the project", e))
				}
			}
		}
	}
	return bad
}

func valueErrorRows(idField string, rows []Row, msg string) map[int]string {
	cr := csv.NewReader(strings.NewReader(msg))
	cr.FieldsPerRecord = 4
	lines, err := cr.ReadAll()
	if err != nil || len(lines) == 0 {
		return nil
	}
	bad := map[int]string{}
	for _, l := range lines {
		record, field, value, why := l[0], l[1], l[2], l[3]
		reason := fmt.Sprintf("%s = %q: %s", field, value, why)
		var exact, ofRecord []int
		for i, r := range rows {
			if r[idField] != record {
				continue
			}
			ofRecord = append(ofRecord, i)
			if v, ok := r[field]; ok && v == value {
				exact = append(exact, i)
			}
		}
		hit := exact
		if len(hit) == 0 {
			hit = ofRecord
		}
		for _, i := range hit {
			bad[i] = appendReason(bad[i], reason)
		}
	}
	return bad
}

func appendReason(have, add string) string {
	if have == "" {
		return add
	}
	return have + "; " + add
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
