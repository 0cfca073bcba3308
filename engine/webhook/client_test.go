package webhook_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/engine/webhook"
)

// remotes returns the "remote" field of every access-log line.
func (e *env) remotes() []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(e.log.String()), "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) == nil && entry["remote"] != nil && entry["msg"] == "webhook: request" {
			out = append(out, entry["remote"].(string))
		}
	}
	return out
}

// TestSafetyClientAddressFromTrustedProxiesOnly: X-Forwarded-For names the
// client only when the request comes from a trusted proxy, and then only
// the hops the proxies added: a client cannot put another address in the
// log by sending the header itself.
func TestSafetyClientAddressFromTrustedProxiesOnly(t *testing.T) {
	tests := []struct {
		name    string
		proxies []string
		xff     []string
		want    string
	}{
		{"no proxies: the TCP peer", nil, []string{"203.0.113.9"}, "127.0.0.1"},
		{"untrusted peer: the TCP peer", []string{"10.0.0.0/8"}, []string{"203.0.113.9"}, "127.0.0.1"},
		{"trusted peer: the client it names", []string{"127.0.0.0/8"}, []string{"203.0.113.9"}, "203.0.113.9"},
		{"spoofed hop left of the real one", []string{"127.0.0.0/8"}, []string{"198.51.100.1, 203.0.113.9"}, "203.0.113.9"},
		{"chain of trusted proxies", []string{"127.0.0.0/8", "10.0.0.0/8"}, []string{"203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"several headers", []string{"127.0.0.0/8", "10.0.0.0/8"}, []string{"198.51.100.1", "203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"garbage hop", []string{"127.0.0.0/8"}, []string{"<script>, 10.9.9.9"}, "10.9.9.9"},
		{"trusted peer, no header", []string{"127.0.0.0/8"}, nil, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *webhook.Config) {
				for _, p := range tt.proxies {
					c.TrustedProxies = append(c.TrustedProxies, netip.MustParsePrefix(p))
				}
			})
			req, err := http.NewRequest(http.MethodGet, e.ts.URL+"/healthz", nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range tt.xff {
				req.Header.Add("X-Forwarded-For", h)
			}
			resp, err := e.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := e.remotes(); len(got) != 1 || got[0] != tt.want {
				t.Errorf("logged remote %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSafetyAdminEndpointsOffThePublicPort: with SeparateAdmin the public
// port answers 404 for /healthz and /metrics, and the admin address serves
// them (and nothing else).
func TestSafetyAdminEndpointsOffThePublicPort(t *testing.T) {
	e := newEnv(t, func(c *webhook.Config) { c.SeparateAdmin = true })
	for _, path := range []string{"/healthz", "/metrics"} {
		if r := e.do(http.MethodGet, path, "", nil, nil); r.status != http.StatusNotFound {
			t.Errorf("public %s: %d, want 404", path, r.status)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.ServeAdmin(ctx, l) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeAdmin: %v", err)
		}
	}()
	base := "http://" + l.Addr().String()
	for path, want := range map[string]int{"/healthz": 200, "/metrics": 200, "/twilio/inbound": 404, "/redcap/trigger": 404} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("admin %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	// Without SeparateAdmin the public port serves them, as before.
	e = newEnv(t)
	if r := e.do(http.MethodGet, "/healthz", "", nil, nil); r.status != http.StatusOK {
		t.Errorf("public /healthz without an admin address: %d, want 200", r.status)
	}
}
