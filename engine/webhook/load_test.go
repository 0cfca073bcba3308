package webhook_test

// Load and abuse tests against a real server on 127.0.0.1.
//
//	go test -run '^$' -bench BenchmarkInboundSigned -benchtime 20000x ./engine/webhook/
//
// reports req/s and the p50/p99 latency seen by 32 keep-alive clients.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/nudge-study/nudge/engine/metrics"
	"github.com/nudge-study/nudge/engine/webhook"
	"github.com/nudge-study/nudge/engine/webhook/webhooktest"
)

// loadTarget is what the load tests drive: the Handler behind the server
// and a count of the inbound messages it has stored.
type loadTarget struct {
	Handler webhook.Handler
	Stored  func(ctx context.Context) (int, error)
}

// newLoadTarget is the hook for the engine: it returns the in-memory fake
// today. To measure nudge itself, return the engine's Handler on a real
// SQLite store (storage.InboundWriter behind it) and storage's InboundCount
// as Stored; the benchmark and TestLoadInbound need nothing else changed.
var newLoadTarget = func(tb testing.TB) loadTarget {
	f := newFake()
	f.reply = "Thanks! Reply STOP to opt out."
	return loadTarget{Handler: f, Stored: func(context.Context) (int, error) { return f.Stored(), nil }}
}

// startServer runs Serve on 127.0.0.1:0 until the test ends. Access lines
// are formatted and discarded, as a production logger would format them.
func startServer(tb testing.TB, h webhook.Handler, m *metrics.Metrics) string {
	tb.Helper()
	log := logrus.New()
	log.Out = io.Discard
	log.Formatter = &logrus.JSONFormatter{}
	srv, err := webhook.New(webhook.Config{PublicURL: publicURL, AuthToken: authToken, Log: log, Metrics: m,
		TriggerSecret: triggerSecret, TriggerRate: rate.Inf}, h)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return "http://" + l.Addr().String()
}

var loadRun atomic.Int64 // keeps MessageSids unique across benchmark rounds

func runLoad(tb testing.TB, requests, clients int) webhooktest.Result {
	tb.Helper()
	target := newLoadTarget(tb)
	addr := startServer(tb, target.Handler, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := target.Stored(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	round := loadRun.Add(1)
	load := webhooktest.Load{
		ServerURL: addr, PublicURL: publicURL, AuthToken: authToken,
		Requests: requests, Clients: clients,
		Message: func(i int) url.Values {
			return webhooktest.InboundParams(fmt.Sprintf("SM%016x%016x", round, i),
				fmt.Sprintf("+1415555%04d", i%1000), "+14155550100", "YES")
		},
	}
	res, err := load.Run(ctx)
	if err != nil {
		tb.Fatalf("load run stopped after %s: %v", res.Elapsed, err)
	}
	if res.Failures > 0 {
		tb.Fatalf("%d of %d requests failed; first: %v", res.Failures, requests, res.FirstErr)
	}
	after, err := target.Stored(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if got := after - before; got != requests {
		tb.Fatalf("%d inbound messages stored, want all %d", got, requests)
	}
	return res
}

// BenchmarkInboundSigned measures signed inbound messages end to end: one
// request per b.N, 32 parallel keep-alive clients, every message stored.
func BenchmarkInboundSigned(b *testing.B) {
	res := runLoad(b, b.N, 32)
	b.ReportMetric(res.PerSecond(), "req/s")
	b.ReportMetric(float64(res.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(res.P99.Microseconds())/1000, "p99-ms")
}

// TestLoadInbound is the benchmark's path at a small, fixed size, so a
// broken load path fails ordinary test runs too.
func TestLoadInbound(t *testing.T) {
	res := runLoad(t, 1000, 16)
	t.Logf("1000 signed inbound requests, 16 clients: %.0f req/s, p50 %s, p99 %s", res.PerSecond(), res.P50, res.P99)
}

// TestAbuse sends 1,000 bad requests of many kinds: each must be refused
// with the right status, none may reach the handler, and the server must
// stay healthy.
func TestAbuse(t *testing.T) {
	fake := newFake()
	m := metrics.New(nil)
	addr := startServer(t, fake, m)

	valid := func(i int) url.Values { return inboundParams(fmt.Sprintf("SM%032d", i), "STOP") }
	signed := func(path string, p url.Values) string { return webhooktest.Sign(authToken, publicURL+path, p) }
	huge := "Body=" + strings.Repeat("x", 64<<10)

	type attack struct {
		name        string
		method      string
		path        string
		contentType string
		body        func(i int) io.Reader
		header      func(i int) map[string]string
		want        int
	}
	text := func(s string) func(int) io.Reader { return func(int) io.Reader { return strings.NewReader(s) } }
	form := func(i int) io.Reader { return strings.NewReader(valid(i).Encode()) }
	noHeader := func(int) map[string]string { return nil }
	sig := func(s string) func(int) map[string]string {
		return func(int) map[string]string { return map[string]string{"X-Twilio-Signature": s} }
	}
	attacks := []attack{
		{"malformed form", "POST", "/twilio/inbound", formType, text("Body=%zz&From=%"), sig("x"), 400},
		{"semicolon form", "POST", "/twilio/status", formType, text("MessageSid=SM1;MessageStatus=sent"), sig("x"), 400},
		{"malformed trigger", "POST", triggerPath, formType, text("record=%zz&project_id=1"), noHeader, 400},
		{"oversized inbound", "POST", "/twilio/inbound", formType, text(huge), sig("x"), 413},
		{"oversized trigger, chunked", "POST", triggerPath, formType,
			func(int) io.Reader { return io.MultiReader(strings.NewReader(huge)) }, noHeader, 413},
		{"unsigned inbound", "POST", "/twilio/inbound", formType, form, noHeader, 403},
		{"wrongly signed inbound", "POST", "/twilio/inbound", formType, form, sig("bm90IGEgc2lnbmF0dXJl"), 403},
		{"signed with another token", "POST", "/twilio/status", formType, form, func(i int) map[string]string {
			return map[string]string{"X-Twilio-Signature": webhooktest.Sign("othertoken", publicURL+"/twilio/status", valid(i))}
		}, 403},
		{"signed for the internal URL", "POST", "/twilio/inbound", formType, form, func(i int) map[string]string {
			return map[string]string{"X-Twilio-Signature": webhooktest.Sign(authToken, addr+"/twilio/inbound", valid(i))}
		}, 403},
		{"signed but no MessageSid", "POST", "/twilio/inbound", formType, func(i int) io.Reader {
			p := valid(i)
			p.Del("MessageSid")
			p.Del("SmsSid")
			return strings.NewReader(p.Encode())
		}, func(i int) map[string]string {
			p := valid(i)
			p.Del("MessageSid")
			p.Del("SmsSid")
			return map[string]string{"X-Twilio-Signature": signed("/twilio/inbound", p)}
		}, 400},
		{"GET inbound", "GET", "/twilio/inbound", "", text(""), noHeader, 405},
		{"PUT trigger", "PUT", triggerPath, formType, text("record=1&project_id=1"), noHeader, 405},
		{"JSON inbound", "POST", "/twilio/inbound", "application/json", text(`{"Body":"STOP"}`), noHeader, 415},
		{"trigger without record", "POST", triggerPath, formType, text("project_id=1001&instrument=bp"), noHeader, 400},
		{"trigger with a bad project id", "POST", triggerPath, formType, text("record=1&project_id=-4"), noHeader, 400},
		{"huge header", "POST", "/twilio/inbound", formType, form, func(int) map[string]string {
			return map[string]string{"X-Twilio-Signature": strings.Repeat("A", 64<<10)}
		}, 431},
	}

	const total = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second}
	var (
		next   atomic.Int64
		mu     sync.Mutex
		wrong  []string
		routed int // requests that reached the router (not refused by net/http itself)
		wg     sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				a := attacks[i%len(attacks)]
				req, err := http.NewRequestWithContext(ctx, a.method, addr+a.path, a.body(i))
				if err != nil {
					t.Error(err)
					return
				}
				if a.contentType != "" {
					req.Header.Set("Content-Type", a.contentType)
				}
				for k, v := range a.header(i) {
					req.Header.Set(k, v)
				}
				status, err := statusOf(client, req)
				mu.Lock()
				if a.want != http.StatusRequestHeaderFieldsTooLarge {
					routed++
				}
				if err != nil || status != a.want {
					wrong = append(wrong, fmt.Sprintf("%s: status %d, error %v; want %d", a.name, status, err, a.want))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("abuse run did not finish in time: %d of %d sent", next.Load(), total)
	}
	for i, w := range wrong {
		if i == 10 {
			t.Errorf("... and %d more", len(wrong)-10)
			break
		}
		t.Error(w)
	}
	if n := fake.Calls(); n != 0 {
		t.Errorf("the handler was called %d times by bad requests", n)
	}
	if got := sumCounter(t, m, "nudge_webhook_requests_total"); got != float64(routed) {
		t.Errorf("nudge_webhook_requests_total = %v, want %d", got, routed)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/healthz", nil)
	if status, err := statusOf(client, req); err != nil || status != http.StatusOK {
		t.Errorf("healthz after the abuse: status %d, error %v", status, err)
	}
	p := valid(total + 1)
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, addr+"/twilio/inbound", strings.NewReader(p.Encode()))
	req.Header.Set("Content-Type", formType)
	req.Header.Set("X-Twilio-Signature", signed("/twilio/inbound", p))
	if status, err := statusOf(client, req); err != nil || status != http.StatusOK {
		t.Errorf("a genuine message after the abuse: status %d, error %v", status, err)
	}
}

func statusOf(c *http.Client, req *http.Request) (int, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// sumCounter adds up every series of a counter in m's registry.
func sumCounter(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, s := range mf.GetMetric() {
			sum += s.GetCounter().GetValue()
		}
		return sum
	}
	t.Fatal(errors.New("no metric " + name))
	return 0
}
