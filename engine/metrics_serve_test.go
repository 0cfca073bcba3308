package engine_test

import (
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/metrics"
	"github.com/nudge-study/nudge/storage"
)

// serveMetrics starts `nudge serve` as cmdServe does, with the engine's
// metrics and database gauges.
func serveMetrics(t *testing.T) *served {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.env.Study.Config.Server.PublicURL = publicURL
	f.env.Study.Config.Server.RunEvery = 0
	f.e.Instrument(metrics.New(f.e.Stats))
	runServe(t, f.ctx, f.e, l, engine.ServeOptions{Owner: "web1:4242:77.x:random", AuthToken: demo.AuthToken, TriggerSecret: triggerSecret})
	s := &served{fixture: f, base: "http://" + l.Addr().String()}
	s.eventually(t, "the server has caught up with REDCap", func() bool {
		h, status := s.health()
		return status == http.StatusOK && h.REDCap == "ok"
	})
	return s
}

// scrape reads base+"/metrics" as Prometheus does.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	return fams
}

// value returns the value of the series of family name with the given
// labels, and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// TestServeMetricsMonitoring scrapes a real /metrics and checks the figures
// an admin alerts on against what the database holds.
func TestServeMetricsMonitoring(t *testing.T) {
	s := serveMetrics(t)
	start := s.clk.Now()
	id, err := s.e.Store.StartRun(s.ctx, "run", start)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.e.Store.FinishRun(s.ctx, id, start.Add(time.Second), "ok", nil); err != nil {
		t.Fatal(err)
	}
	s.enqueue(t, "welcome-sms")
	if err := s.e.Store.PauseSender(s.ctx, storage.SenderPause{Sender: storage.AccountSender, Reason: "Twilio error 20003", Code: 20003, At: start, RetryAt: start.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// A send Twilio refuses: an invalid number.
	if _, err := s.e.SMS.Send(s.ctx, "+14155550100", "+1555", "hello", 0); err == nil {
		t.Fatal("a send to +1555 succeeded")
	}
	s.clk.Advance(10 * time.Minute)
	if ok, err := s.e.Store.TryLock(s.ctx, "pass", "web1:4242:77.x:random", time.Minute, s.clk.Now()); err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}

	fams := scrape(t, s.base)
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"nudge_build_info", map[string]string{"goversion": runtime.Version()}, 1},
		{"nudge_last_success_timestamp_seconds", nil, float64(start.Add(time.Second).UnixNano()) / 1e9},
		{"nudge_oldest_due_seconds", nil, 600},
		{"nudge_retry_backlog", nil, 0},
		{"nudge_writeback_failures", map[string]string{"state": "failed"}, 0},
		{"nudge_paused", map[string]string{"kind": "sender"}, 1},
		{"nudge_paused", map[string]string{"kind": "kill_switch"}, 0},
		{"nudge_lease_held", map[string]string{"lease": "pass", "holder": "web1:4242"}, 1},
		{"nudge_healthy", nil, 0},
		{"nudge_stats_up", nil, 1},
		{"nudge_call_errors_total", map[string]string{"system": "twilio", "op": "create", "kind": "21xxx"}, 1},
	} {
		got, ok := value(fams, tt.name, tt.labels)
		if !ok || got != tt.want {
			t.Errorf("%s%v = %v (found %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	if _, ok := value(fams, "nudge_lease_held", map[string]string{"holder": "web1:4242:77.x:random"}); ok {
		t.Error("nudge_lease_held publishes the owner's random part")
	}
	if err := s.e.Store.ResumeSender(s.ctx, storage.AccountSender); err != nil {
		t.Fatal(err)
	}
	if _, err := s.e.Dispatch(s.ctx); err != nil {
		t.Fatal(err)
	}
	fams = scrape(t, s.base)
	if got, _ := value(fams, "nudge_oldest_due_seconds", nil); got != 0 {
		t.Errorf("after sending, nudge_oldest_due_seconds = %v, want 0", got)
	}
	if got, _ := value(fams, "nudge_healthy", nil); got != 1 {
		t.Errorf("after resume and send, nudge_healthy = %v, want 1", got)
	}
}
