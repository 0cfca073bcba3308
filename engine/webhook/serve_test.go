package webhook

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// blockingHandler holds every trigger until released.
type blockingHandler struct {
	entered chan struct{}
	release chan struct{}
	ctxErr  chan error // the request context's error once released
}

func newBlocking() *blockingHandler {
	return &blockingHandler{entered: make(chan struct{}), release: make(chan struct{}), ctxErr: make(chan error, 1)}
}

func (b *blockingHandler) Trigger(ctx context.Context, _ Trigger) error {
	close(b.entered)
	<-b.release
	b.ctxErr <- ctx.Err()
	return nil
}

func (b *blockingHandler) Inbound(context.Context, Inbound) (string, error)     { return "", nil }
func (b *blockingHandler) StatusCallback(context.Context, StatusCallback) error { return nil }
func (b *blockingHandler) Health(context.Context) (Health, error)               { return Health{OK: true}, nil }

type result struct {
	status int
	err    error
}

// startServe runs Serve on 127.0.0.1 and posts one trigger to it.
func startServe(t *testing.T, cfg Config, h Handler) (s *Server, cancel context.CancelFunc, served chan error, answer chan result, shutdown chan struct{}, addr string) {
	t.Helper()
	cfg.PublicURL, cfg.AuthToken, cfg.TriggerSecret = "https://nudge.example.edu", "token123", "0123456789abcdef"
	s, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	shutdown = make(chan struct{})
	s.onShutdown = func() { close(shutdown) }
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served = make(chan error, 1)
	go func() { served <- s.Serve(ctx, l) }()

	answer = make(chan result, 1)
	addr = l.Addr().String()
	go func() {
		form := url.Values{"record": {"1"}, "project_id": {"1001"}}
		resp, err := http.Post("http://"+addr+"/redcap/trigger?secret=0123456789abcdef", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			answer <- result{err: err}
			return
		}
		resp.Body.Close()
		answer <- result{status: resp.StatusCode}
	}()
	return s, cancel, served, answer, shutdown, addr
}

func TestServeFinishesInFlightRequests(t *testing.T) {
	h := newBlocking()
	_, cancel, served, answer, shutdown, addr := startServe(t, Config{}, h)
	defer cancel()

	<-h.entered
	cancel()
	<-shutdown
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the server still accepts connections while shutting down")
	}
	close(h.release)

	if err := <-h.ctxErr; err != nil {
		t.Errorf("the in-flight request's context ended with the server's: %v", err)
	}
	if r := <-answer; r.err != nil || r.status != http.StatusOK {
		t.Errorf("in-flight request: status %d, error %v; want 200", r.status, r.err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve returned %v after a clean shutdown, want nil", err)
	}
}

func TestServeShutdownIsBounded(t *testing.T) {
	h := newBlocking()
	_, cancel, served, answer, shutdown, _ := startServe(t, Config{ShutdownTimeout: 1}, h)
	defer cancel()

	<-h.entered
	cancel()
	<-shutdown
	err := <-served
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Serve returned %v, want a shutdown deadline error", err)
	}
	close(h.release)
	if r := <-answer; r.err == nil {
		t.Errorf("request cut off by the shutdown got status %d, want a broken connection", r.status)
	}
}

func TestServeListenerError(t *testing.T) {
	s, err := New(Config{PublicURL: "https://nudge.example.edu", AuthToken: "token123"}, newBlocking())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := s.Serve(context.Background(), l); err == nil {
		t.Error("Serve on a closed listener returned nil")
	}
}

func TestMaskDigits(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/twilio/inbound", "/twilio/inbound"},
		{"/call/14155550123", "/call/###########"},
		{"/call/+1-415-555-0123", "/call/+#-###-###-####"},
		{"/v2/x", "/v#/x"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := maskDigits(tt.in); got != tt.want {
			t.Errorf("maskDigits(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestOutcomeFor(t *testing.T) {
	tests := []struct {
		status int
		want   string
	}{
		{200, "ok"}, {204, "ok"}, {400, "bad_request"}, {403, "forbidden"}, {404, "not_found"},
		{405, "method_not_allowed"}, {413, "too_large"}, {415, "unsupported_media_type"},
		{429, "rate_limited"}, {418, "rejected"}, {500, "error"}, {503, "error"},
	}
	for _, tt := range tests {
		if got := outcomeFor(tt.status); got != tt.want {
			t.Errorf("outcomeFor(%d) = %q, want %q", tt.status, got, tt.want)
		}
	}
}
