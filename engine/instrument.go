package engine

import (
	"context"
	"time"

	"github.com/nudge-study/nudge/engine/email"
	"github.com/nudge-study/nudge/engine/metrics"
	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/rules/dict"
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

// Stats reads the figures /metrics exports as gauges from the store.
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
	st.OptOuts, err = e.Store.OptOutCount(ctx)
	return st, err
}

type timedREDCap struct {
	REDCap
	m *metrics.Metrics
}

func since(m *metrics.Metrics, system, op string, start time.Time) {
	m.ObserveCall(system, op, time.Since(start))
}

func (t timedREDCap) ExportRecords(ctx context.Context, p redcap.ExportParams) ([]redcap.Row, error) {
	defer since(t.m, "redcap", "export_records", time.Now())
	return t.REDCap.ExportRecords(ctx, p)
}

func (t timedREDCap) ImportRecords(ctx context.Context, rows []redcap.Row) (redcap.ImportResult, error) {
	defer since(t.m, "redcap", "import_records", time.Now())
	return t.REDCap.ImportRecords(ctx, rows)
}

func (t timedREDCap) Metadata(ctx context.Context) (*dict.Dictionary, error) {
	defer since(t.m, "redcap", "metadata", time.Now())
	return t.REDCap.Metadata(ctx)
}

type timedSMS struct {
	SMSSender
	m *metrics.Metrics
}

func (t timedSMS) Send(ctx context.Context, from, to, body string, validity time.Duration) (sms.Message, error) {
	defer since(t.m, "twilio", "create", time.Now())
	return t.SMSSender.Send(ctx, from, to, body, validity)
}

func (t timedSMS) Fetch(ctx context.Context, sid string) (sms.Message, error) {
	defer since(t.m, "twilio", "fetch", time.Now())
	return t.SMSSender.Fetch(ctx, sid)
}

func (t timedSMS) Find(ctx context.Context, from, to string, after time.Time) ([]sms.Message, error) {
	defer since(t.m, "twilio", "list", time.Now())
	return t.SMSSender.Find(ctx, from, to, after)
}

type timedEmail struct {
	EmailSender
	m *metrics.Metrics
}

func (t timedEmail) Send(ctx context.Context, msg email.Message) (string, error) {
	defer since(t.m, "smtp", "send", time.Now())
	return t.EmailSender.Send(ctx, msg)
}
