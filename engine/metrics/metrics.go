// Package metrics holds nudge's Prometheus metrics: the webhook's request
// counters and latencies, the latency of every call to REDCap, Twilio and
// SMTP, and gauges read from the database each time /metrics is scraped.
//
// All names start with "nudge_". A nil *Metrics is valid and records
// nothing, so code that may run without metrics needs no checks.
package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Label values of CallSeconds' "system" label.
const (
	SystemREDCap = "redcap"
	SystemTwilio = "twilio"
	SystemSMTP   = "smtp"
)

// DefaultStatsTimeout bounds one call of the stats function during a scrape.
const DefaultStatsTimeout = 5 * time.Second

// MessageCount is the number of messages of one channel in one status.
type MessageCount struct {
	Channel string
	Status  string
	N       int
}

// Stats are the database-derived figures exported as gauges.
type Stats struct {
	Messages []MessageCount
	Queues   map[string]int // queue name → depth
	OptOuts  int
}

// StatsFunc reads Stats, usually from the store; it is called at scrape time.
type StatsFunc func(ctx context.Context) (Stats, error)

// Metrics owns nudge's registry and the metrics other packages record into.
type Metrics struct {
	// Registry holds every nudge metric plus the Go runtime and process
	// collectors; serve it with promhttp.HandlerFor.
	Registry *prometheus.Registry

	// Webhook counts webhook requests by endpoint and outcome
	// (nudge_webhook_requests_total).
	Webhook *prometheus.CounterVec
	// WebhookSeconds is the webhook's request latency by endpoint
	// (nudge_webhook_request_seconds).
	WebhookSeconds *prometheus.HistogramVec
	// CallSeconds is the latency of calls to outside systems by system
	// (redcap, twilio, smtp) and operation (nudge_call_seconds).
	CallSeconds *prometheus.HistogramVec
}

// New returns Metrics on a fresh registry that also holds the Go runtime and
// process collectors. When stats is not nil, every scrape calls it (bounded
// by DefaultStatsTimeout) for nudge_messages, nudge_queue_depth,
// nudge_optouts and nudge_stats_up.
func New(stats StatsFunc) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m, err := NewOn(reg, stats)
	if err != nil {
		// A fresh registry holds only the two collectors above, whose
		// names cannot clash with nudge_ names.
		panic(err)
	}
	return m
}

// NewOn registers nudge's metrics on a registry the caller owns (and does
// not add the Go or process collectors). It fails when a metric of the same
// name is already registered there.
func NewOn(reg *prometheus.Registry, stats StatsFunc) (*Metrics, error) {
	m := &Metrics{
		Registry: reg,
		Webhook: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nudge_webhook_requests_total",
			Help: "Webhook requests by endpoint and outcome.",
		}, []string{"endpoint", "outcome"}),
		WebhookSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nudge_webhook_request_seconds",
			Help:    "Time to answer a webhook request, by endpoint.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 15},
		}, []string{"endpoint"}),
		CallSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nudge_call_seconds",
			Help:    "Latency of calls to REDCap, Twilio and SMTP, by system and operation.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"system", "op"}),
	}
	cs := []prometheus.Collector{m.Webhook, m.WebhookSeconds, m.CallSeconds}
	if stats != nil {
		cs = append(cs, newStatsCollector(stats, DefaultStatsTimeout))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ObserveWebhook records one webhook request.
func (m *Metrics) ObserveWebhook(endpoint, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.Webhook.WithLabelValues(endpoint, outcome).Inc()
	m.WebhookSeconds.WithLabelValues(endpoint).Observe(d.Seconds())
}

// ObserveCall records the latency of one call to an outside system, e.g.
// ObserveCall(SystemTwilio, "create", time.Since(start)).
func (m *Metrics) ObserveCall(system, op string, d time.Duration) {
	if m == nil {
		return
	}
	m.CallSeconds.WithLabelValues(system, op).Observe(d.Seconds())
}

// statsCollector turns a StatsFunc into gauges at scrape time.
type statsCollector struct {
	stats   StatsFunc
	timeout time.Duration

	messages, queues, optouts, up *prometheus.Desc
}

func newStatsCollector(stats StatsFunc, timeout time.Duration) *statsCollector {
	return &statsCollector{
		stats:   stats,
		timeout: timeout,
		messages: prometheus.NewDesc("nudge_messages",
			"Messages in the outbox by channel and status.", []string{"channel", "status"}, nil),
		queues: prometheus.NewDesc("nudge_queue_depth",
			"Rows waiting in each of nudge's work queues.", []string{"queue"}, nil),
		optouts: prometheus.NewDesc("nudge_optouts",
			"Recorded opt-outs.", nil, nil),
		up: prometheus.NewDesc("nudge_stats_up",
			"1 when the database figures of this scrape could be read, 0 when not.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.queues
	ch <- c.optouts
	ch <- c.up
}

// Collect implements prometheus.Collector. When the stats cannot be read,
// only nudge_stats_up 0 is reported, so the rest of the scrape still works.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	st, err := c.stats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)

	// The same channel and status may be listed twice (e.g. an empty status
	// mapped to a state name); a metric may be reported only once.
	type key struct{ channel, status string }
	sums := make(map[key]int)
	var keys []key
	for _, mc := range st.Messages {
		k := key{mc.Channel, mc.Status}
		if _, seen := sums[k]; !seen {
			keys = append(keys, k)
		}
		sums[k] += mc.N
	}
	for _, k := range keys {
		ch <- prometheus.MustNewConstMetric(c.messages, prometheus.GaugeValue, float64(sums[k]), k.channel, k.status)
	}

	for q, n := range st.Queues {
		ch <- prometheus.MustNewConstMetric(c.queues, prometheus.GaugeValue, float64(n), q)
	}
	ch <- prometheus.MustNewConstMetric(c.optouts, prometheus.GaugeValue, float64(st.OptOuts))
}
