package engine

import (
	"context"
	"time"

	"github.com/nudge-study/nudge/engine/email"
	"github.com/nudge-study/nudge/engine/metrics"
	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/storage"
)

// Instrument records the latency of every call to REDCap, Twilio and the
// SMTP server in m and makes m the engine's metrics.
func (e *Engine) Instrument(m *metrics.Metrics) {
	e.Metrics = m
	for name, rc := range e.REDCap {
		e.REDCap[name] = timedREDCap{rc, m}
	}
	if e.SMS != nil {
		e.SMS = timedSMS{e.SMS, m}
	}
	if e.Email != nil {
		e.Email = timedEmail{e.Email, m}
	}
}

// Stats reads the figures /metrics exports as gauges from the store; every
// read is indexed (storage.Watch), so a scrape costs the same at any size
// of outbox.
func (e *Engine) Stats(ctx context.Context) (metrics.Stats, error) {
	var st metrics.Stats
	counts, err := e.Store.StatusCounts(ctx)
	if err != nil {
		return st, err
	}
	for _, c := range counts {
		st.Messages = append(st.Messages, metrics.MessageCount{Channel: c.Channel, Status: c.Status, N: c.N})
	}
	d, err := e.Store.Depths(ctx)
	if err != nil {
		return st, err
	}
	st.Queues = map[string]int{"planned": d.Planned, "sending": d.Sending, "tracking": d.Tracking,
		"writebacks": d.WriteBacks, "failed_writebacks": d.FailedWriteBacks, "triggers": d.Triggers}
	if st.OptOuts, err = e.Store.OptOutCount(ctx); err != nil {
		return st, err
	}
	now := e.now()
	w, err := e.Store.Watch(ctx, now)
	if err != nil {
		return st, err
	}
	st.LastSuccess, st.Retrying = w.LastOK, w.Retrying
	if !w.OldestDue.IsZero() {
		st.OldestDue = now.Sub(w.OldestDue)
	}
	st.WriteBackFailures = map[string]int{"failed": d.FailedWriteBacks, "retrying": w.WriteBacksRetrying}
	pauses, err := e.Store.Pauses(ctx)
	if err != nil {
		return st, err
	}
	senders, err := e.Store.PausedSenders(ctx)
	if err != nil {
		return st, err
	}
	st.Paused = map[string]int{"sender": len(senders), "kill_switch": len(pauses)}
	leases, err := e.Store.Leases(ctx, now)
	if err != nil {
		return st, err
	}
	for _, l := range leases {
		st.Leases = append(st.Leases, metrics.Lease{Name: l.Name, Holder: storage.OwnerHost(l.Owner), Mine: l.Owner == e.owner()})
	}
	h, err := hooks{e, e.serving.Load()}.Health(ctx)
	st.Healthy = err == nil && h.OK
	return st, nil
}

type timedREDCap struct {
	REDCap
	m *metrics.Metrics
}

// since records a call's latency and, when it failed, the kind of its
// error; call it deferred with a pointer to the call's error.
func since(m *metrics.Metrics, system, op string, start time.Time, err *error) {
	m.ObserveCall(system, op, time.Since(start))
	if kind := errorKind(system, *err); kind != "" {
		m.CountError(system, op, kind)
	}
}

func (t timedREDCap) ExportRecords(ctx context.Context, p redcap.ExportParams) (out []redcap.Row, err error) {
	defer since(t.m, metrics.SystemREDCap, "export_records", time.Now(), &err)
	out, err = t.REDCap.ExportRecords(ctx, p)
	return out, err
}

func (t timedREDCap) ExportTable(ctx context.Context, p redcap.ExportParams) (out *redcap.Table, err error) {
	defer since(t.m, metrics.SystemREDCap, "export_records", time.Now(), &err)
	out, err = exportTable(ctx, t.REDCap, p)
	return out, err
}

func (t timedREDCap) ImportRecords(ctx context.Context, rows []redcap.Row) (out redcap.ImportResult, err error) {
	defer since(t.m, metrics.SystemREDCap, "import_records", time.Now(), &err)
	out, err = t.REDCap.ImportRecords(ctx, rows)
	return out, err
}

func (t timedREDCap) Metadata(ctx context.Context) (out *dict.Dictionary, err error) {
	defer since(t.m, metrics.SystemREDCap, "metadata", time.Now(), &err)
	out, err = t.REDCap.Metadata(ctx)
	return out, err
}

type timedSMS struct {
	SMSSender
	m *metrics.Metrics
}

func (t timedSMS) Send(ctx context.Context, from, to, body string, validity time.Duration) (out sms.Message, err error) {
	defer since(t.m, metrics.SystemTwilio, "create", time.Now(), &err)
	out, err = t.SMSSender.Send(ctx, from, to, body, validity)
	return out, err
}

func (t timedSMS) Fetch(ctx context.Context, sid string) (out sms.Message, err error) {
	defer since(t.m, metrics.SystemTwilio, "fetch", time.Now(), &err)
	out, err = t.SMSSender.Fetch(ctx, sid)
	return out, err
}

func (t timedSMS) Find(ctx context.Context, from, to string, after time.Time) (out []sms.Message, err error) {
	defer since(t.m, metrics.SystemTwilio, "list", time.Now(), &err)
	out, err = t.SMSSender.Find(ctx, from, to, after)
	return out, err
}

type timedEmail struct {
	EmailSender
	m *metrics.Metrics
}

func (t timedEmail) Send(ctx context.Context, msg email.Message) (out string, err error) {
	defer since(t.m, metrics.SystemSMTP, "send", time.Now(), &err)
	out, err = t.EmailSender.Send(ctx, msg)
	return out, err
}
