package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStatsGauges(t *testing.T) {
	tests := []struct {
		name  string
		stats Stats
		err   error
		want  string
	}{
		{
			name: "figures",
			stats: Stats{
				Messages: []MessageCount{
					{Channel: "sms", Status: "delivered", N: 7},
					{Channel: "email", Status: "sent", N: 2},
					{Channel: "sms", Status: "planned", N: 1},
					{Channel: "sms", Status: "planned", N: 3}, // listed twice: summed
				},
				Queues:  map[string]int{"planned": 4, "writebacks": 0, "triggers": 2},
				OptOuts: 5,
			},
			want: `
# HELP nudge_messages Messages in the outbox by channel and status.
# TYPE nudge_messages gauge
nudge_messages{channel="email",status="sent"} 2
nudge_messages{channel="sms",status="delivered"} 7
nudge_messages{channel="sms",status="planned"} 4
# HELP nudge_optouts Recorded opt-outs.
# TYPE nudge_optouts gauge
nudge_optouts 5
# HELP nudge_queue_depth Rows waiting in each of nudge's work queues.
# TYPE nudge_queue_depth gauge
nudge_queue_depth{queue="planned"} 4
nudge_queue_depth{queue="triggers"} 2
nudge_queue_depth{queue="writebacks"} 0
# HELP nudge_stats_up 1 when the database figures of this scrape could be read, 0 when not.
# TYPE nudge_stats_up gauge
nudge_stats_up 1
`,
		},
		{
			name: "empty database",
			want: `
# HELP nudge_optouts Recorded opt-outs.
# TYPE nudge_optouts gauge
nudge_optouts 0
# HELP nudge_stats_up 1 when the database figures of this scrape could be read, 0 when not.
# TYPE nudge_stats_up gauge
nudge_stats_up 1
`,
		},
		{
			name: "database unreachable",
			err:  errors.New("database is locked"),
			want: `
# HELP nudge_stats_up 1 when the database figures of this scrape could be read, 0 when not.
# TYPE nudge_stats_up gauge
nudge_stats_up 0
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			m := New(func(ctx context.Context) (Stats, error) {
				calls++
				if _, ok := ctx.Deadline(); !ok {
					t.Error("stats called without a deadline")
				}
				return tt.stats, tt.err
			})
			names := []string{"nudge_messages", "nudge_queue_depth", "nudge_optouts", "nudge_stats_up"}
			if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(tt.want), names...); err != nil {
				t.Error(err)
			}
			if calls != 1 {
				t.Errorf("stats called %d times in one scrape, want 1", calls)
			}
		})
	}
}

func TestNoStatsFunc(t *testing.T) {
	m := New(nil)
	n, err := testutil.GatherAndCount(m.Registry, "nudge_stats_up", "nudge_messages")
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("without a stats function %d database series were exported, want 0", n)
	}
}

func TestObserve(t *testing.T) {
	m := New(nil)
	m.ObserveWebhook("inbound", "ok", 3*time.Millisecond)
	m.ObserveWebhook("inbound", "ok", 4*time.Millisecond)
	m.ObserveWebhook("inbound", "bad_signature", time.Millisecond)
	m.ObserveCall(SystemTwilio, "create", 120*time.Millisecond)
	m.ObserveCall(SystemREDCap, "export", 2*time.Second)

	if got := testutil.ToFloat64(m.Webhook.WithLabelValues("inbound", "ok")); got != 2 {
		t.Errorf("inbound ok = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.Webhook.WithLabelValues("inbound", "bad_signature")); got != 1 {
		t.Errorf("inbound bad_signature = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.WebhookSeconds, "nudge_webhook_request_seconds"); got != 1 {
		t.Errorf("webhook latency series = %d, want 1 (one endpoint)", got)
	}
	if got := testutil.CollectAndCount(m.CallSeconds, "nudge_call_seconds"); got != 2 {
		t.Errorf("call latency series = %d, want 2", got)
	}
	want := `
# HELP nudge_call_seconds Latency of calls to REDCap, Twilio and SMTP, by system and operation.
# TYPE nudge_call_seconds histogram
nudge_call_seconds_bucket{op="export",system="redcap",le="0.01"} 0
nudge_call_seconds_bucket{op="export",system="redcap",le="0.025"} 0
nudge_call_seconds_bucket{op="export",system="redcap",le="0.05"} 0
nudge_call_seconds_bucket{op="export",system="redcap",le="0.1"} 0
nudge_call_seconds_bucket{op="export",system="redcap",le="0.25"} 0
nudge_call_seconds_bucket{op="export",system="redcap",le="0.5"} 0
nudge_call_seconds_bucket{op="export",system="redcap",le="1"} 0
nudge_call_seconds_bucket{op="export",system="redcap",le="2.5"} 1
nudge_call_seconds_bucket{op="export",system="redcap",le="5"} 1
nudge_call_seconds_bucket{op="export",system="redcap",le="10"} 1
nudge_call_seconds_bucket{op="export",system="redcap",le="30"} 1
nudge_call_seconds_bucket{op="export",system="redcap",le="+Inf"} 1
nudge_call_seconds_sum{op="export",system="redcap"} 2
nudge_call_seconds_count{op="export",system="redcap"} 1
nudge_call_seconds_bucket{op="create",system="twilio",le="0.01"} 0
nudge_call_seconds_bucket{op="create",system="twilio",le="0.025"} 0
nudge_call_seconds_bucket{op="create",system="twilio",le="0.05"} 0
nudge_call_seconds_bucket{op="create",system="twilio",le="0.1"} 0
nudge_call_seconds_bucket{op="create",system="twilio",le="0.25"} 1
nudge_call_seconds_bucket{op="create",system="twilio",le="0.5"} 1
nudge_call_seconds_bucket{op="create",system="twilio",le="1"} 1
nudge_call_seconds_bucket{op="create",system="twilio",le="2.5"} 1
nudge_call_seconds_bucket{op="create",system="twilio",le="5"} 1
nudge_call_seconds_bucket{op="create",system="twilio",le="10"} 1
nudge_call_seconds_bucket{op="create",system="twilio",le="30"} 1
nudge_call_seconds_bucket{op="create",system="twilio",le="+Inf"} 1
nudge_call_seconds_sum{op="create",system="twilio"} 0.12
nudge_call_seconds_count{op="create",system="twilio"} 1
`
	if err := testutil.CollectAndCompare(m.CallSeconds, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestNilMetricsRecordsNothing(t *testing.T) {
	var m *Metrics
	m.ObserveWebhook("inbound", "ok", time.Millisecond)
	m.ObserveCall(SystemSMTP, "send", time.Millisecond)
	m.CountError(SystemSMTP, "send", "timeout")
}

func TestRegistryHasRuntimeCollectors(t *testing.T) {
	m := New(nil)
	n, err := testutil.GatherAndCount(m.Registry, "go_goroutines")
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("go_goroutines series = %d, want 1", n)
	}
}

func TestNewOnSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewOn(reg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := NewOn(reg, nil); err == nil {
		t.Error("registering nudge's metrics twice on one registry succeeded, want an error")
	}
	n, err := testutil.GatherAndCount(reg, "go_goroutines")
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("NewOn added the Go collector to a registry the caller owns")
	}
}

func TestLint(t *testing.T) {
	m := New(func(context.Context) (Stats, error) {
		return Stats{Messages: []MessageCount{{"sms", "sent", 1}}, Queues: map[string]int{"planned": 1}}, nil
	})
	m.ObserveWebhook("inbound", "ok", time.Millisecond)
	m.ObserveCall(SystemTwilio, "create", time.Millisecond)
	problems, err := testutil.GatherAndLint(m.Registry, "nudge_messages", "nudge_queue_depth", "nudge_optouts",
		"nudge_stats_up", "nudge_webhook_requests_total", "nudge_webhook_request_seconds", "nudge_call_seconds")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestMonitoringGauges(t *testing.T) {
	last := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	m := New(func(context.Context) (Stats, error) {
		return Stats{Healthy: true, LastSuccess: last, OldestDue: 90 * time.Second, Retrying: 3,
			WriteBackFailures: map[string]int{"failed": 2}, Paused: map[string]int{"kill_switch": 1},
			Leases: []Lease{{Name: "pass", Holder: "web1:42", Mine: true}, {Name: "pass", Holder: "web1:42", Mine: true}}}, nil
	})
	want := fmt.Sprintf(`
# HELP nudge_healthy 1 when /healthz answers 200 (healthy or degraded), 0 when it answers 503 unhealthy.
# TYPE nudge_healthy gauge
nudge_healthy 1
# HELP nudge_last_success_timestamp_seconds When the last successful pass finished (Unix time); 0 when none has.
# TYPE nudge_last_success_timestamp_seconds gauge
nudge_last_success_timestamp_seconds %d
# HELP nudge_lease_held Database leases in force by name and holder (host:pid): 1 when this process holds it, 0 when another does.
# TYPE nudge_lease_held gauge
nudge_lease_held{holder="web1:42",lease="pass"} 1
# HELP nudge_oldest_due_seconds How long the message due the longest has waited to be sent; 0 when none is due.
# TYPE nudge_oldest_due_seconds gauge
nudge_oldest_due_seconds 90
# HELP nudge_paused Pauses in force: senders paused after a provider refused them (kind=sender), and the kill switch of nudge pause (kind=kill_switch).
# TYPE nudge_paused gauge
nudge_paused{kind="kill_switch"} 1
nudge_paused{kind="sender"} 0
# HELP nudge_retry_backlog Messages waiting to be tried again after a temporary failure.
# TYPE nudge_retry_backlog gauge
nudge_retry_backlog 3
# HELP nudge_writeback_failures Write-backs to REDCap that failed for good (state=failed) or failed several times and are retried (state=retrying).
# TYPE nudge_writeback_failures gauge
nudge_writeback_failures{state="failed"} 2
nudge_writeback_failures{state="retrying"} 0
`, last.Unix())
	names := []string{"nudge_healthy", "nudge_last_success_timestamp_seconds", "nudge_lease_held", "nudge_oldest_due_seconds",
		"nudge_paused", "nudge_retry_backlog", "nudge_writeback_failures"}
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	m.CountError(SystemSMTP, "send", "smtp_5xx")
	if got := testutil.ToFloat64(m.CallErrors.WithLabelValues(SystemSMTP, "send", "smtp_5xx")); got != 1 {
		t.Errorf("nudge_call_errors_total = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(m.Registry, "nudge_build_info"); err != nil || n != 1 {
		t.Errorf("nudge_build_info series = %d, %v; want 1", n, err)
	}
}
