// Package webhook is nudge's HTTP face: the endpoints Twilio calls for
// inbound messages and status callbacks, the endpoint REDCap's Data Entry
// Trigger calls, and /healthz and /metrics for operators.
//
// It deals in HTTP only: signatures, body limits, form parsing, TwiML and
// status codes. What an inbound message or a trigger means is decided behind
// the Handler interface, which the engine implements.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/twilio/twilio-go/client"

	"github.com/nudge-study/nudge/engine/metrics"
)

// Handler is what the webhook needs from the engine.
type Handler interface {
	// Inbound handles a participant's message; reply "" answers with an
	// empty <Response/>.
	Inbound(ctx context.Context, in Inbound) (reply string, err error)
	// StatusCallback records a delivery status reported by Twilio.
	StatusCallback(ctx context.Context, cb StatusCallback) error
	// Trigger durably enqueues a Data Entry Trigger; it must be fast.
	// An error wrapping ErrUnknownProject refuses the trigger (403).
	Trigger(ctx context.Context, t Trigger) error
	// Health reports whether nudge can do its work.
	Health(ctx context.Context) (Health, error)
}

// ErrUnknownProject is returned (wrapped) by Handler.Trigger for a trigger
// from a REDCap project nudge is not configured for; the answer is 403.
var ErrUnknownProject = errors.New("webhook: unknown project")

// Inbound is a message a participant sent to one of the study's numbers.
type Inbound struct {
	MessageSID, AccountSID, From, To, Body string
	NumMedia                               int
	// Params are all the parameters Twilio signed (the first value of
	// each), including those nudge does not know yet.
	Params url.Values
}

// StatusCallback is a delivery status Twilio reports for a sent message.
type StatusCallback struct {
	MessageSID, Status string
	ErrorCode          int // 0 when Twilio sent none
	Params             url.Values
}

// Trigger is one Data Entry Trigger: a record was saved in REDCap. Its
// values are not trusted data; the engine re-reads the record.
type Trigger struct {
	RedcapURL        string
	ProjectID        int
	Record           string
	Instrument       string
	Event            string
	RepeatInstrument string
	RepeatInstance   int // 0 when not repeating
	Params           url.Values
}

// Health is what /healthz reports.
type Health struct {
	OK       bool           `json:"ok"`
	Database string         `json:"database"`
	LastRun  map[string]any `json:"last_run,omitempty"`
	Queues   map[string]int `json:"queues,omitempty"`
}

// Defaults used when the Config leaves a field zero.
const (
	DefaultMaxBody           = 64 << 10
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 20 * time.Second // Twilio gives up after 15 s
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultHealthTimeout     = 5 * time.Second
)

// Config configures a Server. PublicURL and AuthToken are required.
type Config struct {
	// PublicURL is the base URL Twilio calls, as Twilio sees it (scheme,
	// host, port and any path prefix a proxy strips), e.g.
	// "https://nudge.example.edu/hooks". Signatures are checked against it
	// plus the request's path and query, never against the Host header.
	PublicURL string
	// AuthToken is the Twilio auth token that signs webhook requests.
	AuthToken string
	// MaxBody limits request bodies (0 = DefaultMaxBody); larger → 413.
	MaxBody int64
	// Log receives the access log and rejections (nil = discard).
	Log logrus.FieldLogger
	// Metrics receives the webhook's counters and latencies. When nil, a
	// new metrics.Metrics is made: on Registry if that is set, otherwise on
	// a fresh registry.
	Metrics *metrics.Metrics
	// Registry is used only when Metrics is nil (see there).
	Registry *prometheus.Registry
	// Gatherer is what /metrics serves (nil = the Metrics' registry).
	Gatherer prometheus.Gatherer

	// Timeouts of the http.Server made by Serve (0 = the defaults above).
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ShutdownTimeout bounds how long Serve waits for in-flight requests
	// once its context ends (0 = DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
}

// Server answers nudge's webhooks.
type Server struct {
	cfg       Config
	h         Handler
	log       logrus.FieldLogger
	metrics   *metrics.Metrics
	gatherer  prometheus.Gatherer
	publicURL string // without a trailing slash
	validator client.RequestValidator
	mux       http.Handler

	onShutdown func() // tests: called when a graceful shutdown begins
}

// New checks cfg and returns a Server that passes requests to h.
func New(cfg Config, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("webhook: no handler given")
	}
	public, err := checkPublicURL(cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	if cfg.AuthToken == "" {
		return nil, errors.New("webhook: the Twilio auth token is empty: set it so webhook signatures can be checked")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	setDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&cfg.ReadTimeout, DefaultReadTimeout)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.ShutdownTimeout, DefaultShutdownTimeout)

	s := &Server{cfg: cfg, h: h, log: cfg.Log, metrics: cfg.Metrics, publicURL: public}
	if s.log == nil {
		l := logrus.New()
		l.Out = discard{}
		s.log = l
	}
	if s.metrics == nil {
		if cfg.Registry != nil {
			if s.metrics, err = metrics.NewOn(cfg.Registry, nil); err != nil {
				return nil, fmt.Errorf("webhook: registering metrics: %w", err)
			}
		} else {
			s.metrics = metrics.New(nil)
		}
	}
	s.gatherer = cfg.Gatherer
	if s.gatherer == nil {
		s.gatherer = s.metrics.Registry
	}
	s.validator = client.NewRequestValidator(cfg.AuthToken)
	s.mux = s.routes()
	return s, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// checkPublicURL validates the configured public URL and returns it
// without a trailing slash, ready to have a request URI appended.
func checkPublicURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("webhook: public_url is empty: set it to the URL Twilio calls, e.g. https://nudge.example.edu")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("webhook: public_url %q is not a URL: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("webhook: public_url %q must be an http:// or https:// URL with a host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("webhook: public_url %q must not carry a query, fragment or user: give the base URL only", raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// Handler returns the routes with their middleware.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/twilio/inbound", s.route("inbound", http.MethodPost, s.twilio(s.inbound)))
	mux.Handle("/twilio/status", s.route("status", http.MethodPost, s.twilio(s.status)))
	mux.Handle("/redcap/trigger", s.route("trigger", http.MethodPost, s.form(s.trigger)))
	mux.Handle("/healthz", s.route("healthz", http.MethodGet, http.HandlerFunc(s.healthz)))
	mux.Handle("/metrics", s.route("metrics", http.MethodGet, promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promLogger{s.log},
	})))
	mux.Handle("/", s.route("other", "", http.NotFoundHandler()))
	return mux
}

// Serve answers requests on l until ctx ends, then shuts down gracefully:
// it stops accepting connections and waits up to ShutdownTimeout for
// in-flight requests, which keep a context that is not cancelled by ctx.
// It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          newErrorLog(s.log),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if s.onShutdown != nil {
		srv.RegisterOnShutdown(s.onShutdown)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()

	select {
	case err := <-errc:
		return fmt.Errorf("webhook: serving on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	s.log.WithField("timeout", s.cfg.ShutdownTimeout).Info("webhook: shutting down, finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed once Shutdown has begun
	if err != nil {
		srv.Close()
		return fmt.Errorf("webhook: requests still running after %s were cut off: %w", s.cfg.ShutdownTimeout, err)
	}
	return nil
}
