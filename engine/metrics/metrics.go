// Package metrics holds nudge's Prometheus metrics: the webhook's request
// counters and latencies, the latency of every call to REDCap, Twilio and
// SMTP, and gauges read from the database each time /metrics is scraped.
//
// All names start with "nudge_". A nil *Metrics is valid and records
// nothing, so code that may run without metrics needs no checks.
package metrics

import (
	"context"
	"runtime"
	"runtime/debug"
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

// Version is nudge's version in nudge_build_info; set it at build time
// with -ldflags "-X github.com/nudge-study/nudge/engine/metrics.Version=v1.2.3".
// "" = the module version Go recorded ("(devel)" for a build from a checkout).
var Version = ""

// Lease is a database lease in force, for nudge_lease_held.
type Lease struct {
	Name   string // the lease ("pass")
	Holder string // host:pid of the process holding it
	Mine   bool   // held by this process
}

// Stats are the database-derived figures exported as gauges.
type Stats struct {
	Messages []MessageCount
	Queues   map[string]int // queue name → depth
	OptOuts  int

	// Healthy is whether /healthz would answer 200 (nudge_healthy).
	Healthy bool
	// LastSuccess is when the last successful pass finished; zero = none.
	LastSuccess time.Time
	// OldestDue is how long the message due the longest has waited; 0 =
	// none due.
	OldestDue time.Duration
	// Retrying is how many messages wait to be tried again.
	Retrying int
	// WriteBackFailures counts failing write-backs by state ("failed",
	// "retrying").
	WriteBackFailures map[string]int
	// Paused counts pauses by kind ("sender", "kill_switch").
	Paused map[string]int
	// Leases are the database leases in force.
	Leases []Lease
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
	// CallErrors counts failed calls to outside systems by system,
	// operation and kind (nudge_call_errors_total); see CountError.
	CallErrors *prometheus.CounterVec
	// BuildInfo is nudge_build_info{version,revision,goversion} 1.
	BuildInfo *prometheus.GaugeVec
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
		CallErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nudge_call_errors_total",
			Help: "Failed calls to REDCap, Twilio and SMTP, by system, operation and kind of error (Twilio error code class such as 21xxx, http_NNN, smtp_5xx, timeout, network, other).",
		}, []string{"system", "op", "kind"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nudge_build_info",
			Help: "Always 1; its labels say which nudge runs.",
		}, []string{"version", "revision", "goversion"}),
	}
	version, revision := buildVersion()
	m.BuildInfo.WithLabelValues(version, revision, runtime.Version()).Set(1)
	cs := []prometheus.Collector{m.Webhook, m.WebhookSeconds, m.CallSeconds, m.CallErrors, m.BuildInfo}
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

// CountError records one failed call to an outside system; kind is a
// short class of the error, never its text (see nudge_call_errors_total).
func (m *Metrics) CountError(system, op, kind string) {
	if m == nil {
		return
	}
	m.CallErrors.WithLabelValues(system, op, kind).Inc()
}

// buildVersion returns the version and VCS revision nudge was built from.
func buildVersion() (version, revision string) {
	version, revision = Version, "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if version == "" {
			version = "unknown"
		}
		return version, revision
	}
	if version == "" {
		version = bi.Main.Version
	}
	if version == "" {
		version = "(devel)"
	}
	for _, st := range bi.Settings {
		if st.Key == "vcs.revision" {
			revision = st.Value
		}
	}
	return version, revision
}

// statsCollector turns a StatsFunc into gauges at scrape time.
type statsCollector struct {
	stats   StatsFunc
	timeout time.Duration

	messages, queues, optouts, up                      *prometheus.Desc
	healthy, lastSuccess, oldestDue, retrying, wbFails *prometheus.Desc
	paused, lease                                      *prometheus.Desc
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
		healthy: prometheus.NewDesc("nudge_healthy",
			"1 when /healthz answers 200 (healthy or degraded), 0 when it answers 503 unhealthy.", nil, nil),
		lastSuccess: prometheus.NewDesc("nudge_last_success_timestamp_seconds",
			"When the last successful pass finished (Unix time); 0 when none has.", nil, nil),
		oldestDue: prometheus.NewDesc("nudge_oldest_due_seconds",
			"How long the message due the longest has waited to be sent; 0 when none is due.", nil, nil),
		retrying: prometheus.NewDesc("nudge_retry_backlog",
			"Messages waiting to be tried again after a temporary failure.", nil, nil),
		wbFails: prometheus.NewDesc("nudge_writeback_failures",
			"Write-backs to REDCap that failed for good (state=failed) or failed several times and are retried (state=retrying).", []string{"state"}, nil),
		paused: prometheus.NewDesc("nudge_paused",
			"Pauses in force: senders paused after a provider refused them (kind=sender), and the kill switch of nudge pause (kind=kill_switch).", []string{"kind"}, nil),
		lease: prometheus.NewDesc("nudge_lease_held",
			"Database leases in force by name and holder (host:pid): 1 when this process holds it, 0 when another does.", []string{"lease", "holder"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.queues
	ch <- c.optouts
	ch <- c.up
	ch <- c.healthy
	ch <- c.lastSuccess
	ch <- c.oldestDue
	ch <- c.retrying
	ch <- c.wbFails
	ch <- c.paused
	ch <- c.lease
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

	ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, boolValue(st.Healthy))
	var last float64
	if !st.LastSuccess.IsZero() {
		last = float64(st.LastSuccess.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, last)
	ch <- prometheus.MustNewConstMetric(c.oldestDue, prometheus.GaugeValue, st.OldestDue.Seconds())
	ch <- prometheus.MustNewConstMetric(c.retrying, prometheus.GaugeValue, float64(st.Retrying))
	for _, state := range []string{"failed", "retrying"} {
		ch <- prometheus.MustNewConstMetric(c.wbFails, prometheus.GaugeValue, float64(st.WriteBackFailures[state]), state)
	}
	for _, kind := range []string{"sender", "kill_switch"} {
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, float64(st.Paused[kind]), kind)
	}
	seen := make(map[[2]string]bool)
	for _, l := range st.Leases {
		k := [2]string{l.Name, l.Holder}
		if seen[k] {
			continue
		}
		seen[k] = true
		ch <- prometheus.MustNewConstMetric(c.lease, prometheus.GaugeValue, boolValue(l.Mine), l.Name, l.Holder)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
