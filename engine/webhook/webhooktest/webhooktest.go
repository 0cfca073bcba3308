// Package webhooktest helps test nudge's webhook from the outside: it signs
// requests the way Twilio does and drives a running server with many
// signed inbound messages to measure its throughput and latency.
package webhooktest

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sign returns the X-Twilio-Signature Twilio would send for a form POST of
// params to fullURL: base64(HMAC-SHA1(authToken, fullURL followed by each
// parameter's name and value, sorted by name)).
func Sign(authToken, fullURL string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	mac := hmac.New(sha1.New, []byte(authToken))
	io.WriteString(mac, fullURL)
	for _, k := range keys {
		vs := append([]string(nil), params[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			io.WriteString(mac, k)
			io.WriteString(mac, v)
		}
	}
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// NewSignedRequest builds a form POST of params to serverURL+path, signed
// for publicURL+path (the URL Twilio would have called through a proxy).
func NewSignedRequest(ctx context.Context, authToken, serverURL, publicURL, path string, params url.Values) (*http.Request, error) {
	body := params.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, serverURL+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", Sign(authToken, publicURL+path, params))
	return req, nil
}

// InboundParams are the parameters of a typical inbound SMS with the given
// MessageSid, sender and text.
func InboundParams(sid, from, to, body string) url.Values {
	return url.Values{
		"MessageSid": {sid}, "SmsSid": {sid}, "SmsMessageSid": {sid},
		"AccountSid": {"ACtest"}, "From": {from}, "To": {to}, "Body": {body},
		"NumMedia": {"0"}, "NumSegments": {"1"}, "ApiVersion": {"2010-04-01"},
		"FromCountry": {"US"}, "FromState": {"CA"}, "FromCity": {"SAN FRANCISCO"}, "FromZip": {"94105"},
		"ToCountry": {"US"}, "ToState": {"CA"}, "ToCity": {""}, "ToZip": {""},
		"SmsStatus": {"received"},
	}
}

// Load describes a load run of signed inbound messages.
type Load struct {
	ServerURL string // where the server listens, e.g. http://127.0.0.1:41234
	PublicURL string // what signatures are computed for (the configured public_url)
	AuthToken string
	Requests  int // total requests
	Clients   int // parallel clients, each on its own keep-alive connection
	// Message returns the i-th request's parameters (nil = InboundParams
	// with a unique MessageSid and a sender cycling over 1,000 numbers).
	Message func(i int) url.Values
}

// Result is what a load run measured.
type Result struct {
	Requests int           // answered 200 with text/xml
	Failures int           // anything else
	FirstErr error         // the first failure
	Elapsed  time.Duration // wall time of the run
	P50, P99 time.Duration // request latency as seen by the clients
	Max      time.Duration
}

// PerSecond is the throughput of the run.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests+r.Failures) / r.Elapsed.Seconds()
}

// Run sends l.Requests signed POSTs to /twilio/inbound from l.Clients
// goroutines and measures them. Requests are signed before the clock
// starts. It stops early when ctx ends.
func (l Load) Run(ctx context.Context) (Result, error) {
	if l.Requests <= 0 || l.Clients <= 0 {
		return Result{}, errors.New("webhooktest: Requests and Clients must be positive")
	}
	msg := l.Message
	if msg == nil {
		msg = func(i int) url.Values {
			return InboundParams(fmt.Sprintf("SM%032x", i), fmt.Sprintf("+1415555%04d", i%1000), "+14155550100", "yes")
		}
	}
	const path = "/twilio/inbound"
	type signed struct{ body, sig string }
	reqs := make([]signed, l.Requests)
	for i := range reqs {
		p := msg(i)
		reqs[i] = signed{p.Encode(), Sign(l.AuthToken, l.PublicURL+path, p)}
	}

	tr := &http.Transport{MaxIdleConnsPerHost: l.Clients, MaxConnsPerHost: l.Clients, IdleConnTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	lat := make([]time.Duration, l.Requests)
	var next atomic.Int64
	var failures atomic.Int64
	var firstErr error
	var once sync.Once
	fail := func(err error) {
		failures.Add(1)
		once.Do(func() { firstErr = err })
	}

	start := time.Now()
	var wg sync.WaitGroup
	for range l.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(reqs) {
					return
				}
				t0 := time.Now()
				err := post(ctx, c, l.ServerURL+path, reqs[i].body, reqs[i].sig)
				lat[i] = time.Since(t0)
				if err != nil {
					fail(fmt.Errorf("request %d: %w", i, err))
				}
			}
		}()
	}
	wg.Wait()
	res := Result{Elapsed: time.Since(start), Failures: int(failures.Load()), FirstErr: firstErr}
	sent := min(int(next.Load()), len(reqs))
	res.Requests = sent - res.Failures
	done := append([]time.Duration(nil), lat[:sent]...)
	sort.Slice(done, func(a, b int) bool { return done[a] < done[b] })
	res.P50, res.P99, res.Max = percentile(done, 50), percentile(done, 99), percentile(done, 100)
	return res, ctx.Err()
}

// percentile returns the nearest-rank p-th percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (len(sorted)*p + 99) / 100 // ceil(n·p/100)
	return sorted[max(rank, 1)-1]
}

func post(ctx context.Context, c *http.Client, u, body, sig string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", sig)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/xml" {
		return fmt.Errorf("content type %q, want text/xml", ct)
	}
	return err
}
