package engine

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/storage"
)

const reportBatch = 500

// ReportStats counts what one report stage did.
type ReportStats struct {
	Queued, Imported, Rejected int
}

// Report writes message statuses back into the REDCap fields each rule's
// write_back names. It works in two durable steps: first every status not
// yet reported becomes a write-back queue row (in the same transaction that
// marks it reported), then the queue is imported project by project in
// batches; rows REDCap refuses are kept with REDCap's reason, rows it could
// not take (network, 5xx) are retried on the next pass.
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
	for _, p := range e.Study.Config.Projects {
		for {
			n, rejected, err := e.flushWriteBacks(ctx, p.Name)
			st.Imported += n
			st.Rejected += rejected
			if err != nil {
				return st, err
			}
			if n+rejected < reportBatch {
				break
			}
		}
	}
	return st, nil
}

// writeBackFor builds the REDCap fields for one message's current status.
func (e *Engine) writeBackFor(m storage.Message) (storage.WriteBack, bool) {
	r := e.Study.Rule(m.Rule)
	if r == nil {
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
	if !m.SentAt.IsZero() {
		set(wb.SentAt, m.SentAt.In(e.Study.Config.Location).Format("2006-01-02 15:04:05"))
	}
	if m.ErrorCode != 0 {
		set(wb.Error, strconv.Itoa(m.ErrorCode))
	}
	if len(fields) == 0 {
		return storage.WriteBack{}, false
	}
	return storage.WriteBack{Project: m.Project, Record: m.Record, Event: m.Event,
		RepeatInstrument: m.Instrument, Instance: m.Instance, Fields: fields, CreatedAt: e.now()}, true
}

// flushWriteBacks imports one batch of a project's pending write-backs.
// Queue rows for the same record row are merged, oldest first, so the
// newest status wins.
func (e *Engine) flushWriteBacks(ctx context.Context, project string) (imported, rejected int, err error) {
	now := e.now()
	pending, err := e.Store.PendingWriteBacks(ctx, project, now, reportBatch)
	if err != nil || len(pending) == 0 {
		return 0, 0, err
	}
	d := e.Dicts[project]
	if d == nil {
		return 0, 0, fmt.Errorf("project %s: data dictionary not loaded", project)
	}
	longitudinal := e.infos[project].Longitudinal

	type target struct{ record, event, instrument, instance string }
	var order []target
	rows := make(map[target]redcap.Row)
	ids := make(map[target][]int64)
	for _, wb := range pending {
		t := target{wb.Record, wb.Event, wb.RepeatInstrument, ""}
		if wb.Instance > 0 {
			t.instance = strconv.Itoa(wb.Instance)
		}
		row, ok := rows[t]
		if !ok {
			row = redcap.Row{d.RecordID(): wb.Record}
			if longitudinal {
				row["redcap_event_name"] = wb.Event
			}
			if t.instance != "" {
				row["redcap_repeat_instrument"] = wb.RepeatInstrument
				row["redcap_repeat_instance"] = t.instance
			}
			rows[t] = row
			order = append(order, t)
		}
		for k, v := range wb.Fields {
			row[k] = v
		}
		ids[t] = append(ids[t], wb.ID)
	}
	batch := make([]redcap.Row, len(order))
	for i, t := range order {
		batch[i] = rows[t]
	}
	res, err := e.REDCap[project].ImportRecords(ctx, batch)
	if err != nil {
		e.log().WithError(err).WithField("project", project).Warn("write-back to REDCap failed; will retry")
		retryAt := now.Add(backoff(pending[0].Attempts + 1))
		for _, wb := range pending {
			if rerr := e.Store.RetryWriteBack(ctx, wb.ID, err.Error(), retryAt); rerr != nil {
				return 0, 0, rerr
			}
		}
		return 0, 0, nil
	}
	bad := make(map[target]string)
	for _, rj := range res.Rejected {
		t := target{rj.Row[d.RecordID()], rj.Row["redcap_event_name"], rj.Row["redcap_repeat_instrument"], rj.Row["redcap_repeat_instance"]}
		if !longitudinal {
			t.event = ""
		}
		bad[t] = rj.Reason
	}
	var done []int64
	for _, t := range order {
		if reason, ok := bad[t]; ok {
			e.log().WithFields(map[string]any{"project": project, "record": t.record, "reason": reason}).Error("REDCap refused a write-back")
			for _, id := range ids[t] {
				if err := e.Store.FailWriteBack(ctx, id, reason); err != nil {
					return imported, rejected, err
				}
				rejected++
			}
			continue
		}
		done = append(done, ids[t]...)
	}
	if err := e.Store.CompleteWriteBacks(ctx, done, now); err != nil {
		return imported, rejected, err
	}
	imported += len(done)
	e.log().WithFields(map[string]any{"project": project, "rows": len(batch) - len(bad), "rejected": len(bad)}).Info("statuses written back to REDCap")
	return imported, rejected, nil
}
