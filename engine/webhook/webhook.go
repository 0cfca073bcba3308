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
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/twilio/twilio-go/client"
	"golang.org/x/time/rate"

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
	// An error wrapping ErrUnknownProject refuses the trigger (403). It is
	// called only for requests that carry the trigger secret.
	Trigger(ctx context.Context, t Trigger) error
	// Health reports whether nudge can do its work. Everything in it is
	// published: plain words only, never an error's text, a host or a path.
	Health(ctx context.Context) (Health, error)
}

// ErrUnknownProject is returned (wrapped) by Handler.Trigger for a trigger
// from a REDCap project nudge is not configured for; the answer is 403.
var ErrUnknownProject = errors.New("webhook: unknown project")

// Inbound is a message a participant sent to one of the study's numbers.
type Inbound struct {
	MessageSID, AccountSID, From, To, Body string
	NumMedia                               int
	// OptOutType is Twilio's own reading of the message (STOP, START or
	// HELP, upper case) when the number's Messaging Service has Advanced
	// Opt-Out, so that a custom keyword such as "PARAR" counts; "" when
	// Twilio sent none.
	OptOutType string
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

// Health is what /healthz reports. It is public: every string in it is
// plain words chosen by nudge, never an error's text.
type Health struct {
	// OK is false when nudge is unhealthy (/healthz answers 503): it cannot
	// do its work, or some of it is stuck, failing or paused; a degraded
	// nudge (waiting for REDCap at the start) still records replies and
	// opt-outs and is OK.
	OK bool `json:"ok"`
	// Status is "healthy", "degraded" or "unhealthy" ("" = from OK).
	Status string `json:"status"`
	// Problems says in plain words what is wrong, if anything.
	Problems []string `json:"problems,omitempty"`
	// Database is "ok" or "unreachable".
	Database string `json:"database"`
	// REDCap is "ok", or "waiting" while nudge has not yet reached REDCap
	// since it started.
	REDCap  string         `json:"redcap,omitempty"`
	LastRun map[string]any `json:"last_run,omitempty"`
	// LastSuccess is when the last successful pass finished, if any.
	LastSuccess *time.Time `json:"last_success,omitempty"`
	// OldestDueSeconds is how long the message due the longest has
	// waited to be sent (0 = none due).
	OldestDueSeconds float64        `json:"oldest_due_seconds"`
	Queues           map[string]int `json:"queues,omitempty"`
}

// Health statuses.
const (
	StatusHealthy   = "healthy"
	StatusDegraded  = "degraded"
	StatusUnhealthy = "unhealthy"
)

// Defaults used when the Config leaves a field zero.
const (
	DefaultMaxBody           = 64 << 10
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 20 * time.Second // Twilio gives up after 15 s
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultHealthTimeout     = 5 * time.Second

	// DefaultTriggerRate and DefaultTriggerBurst limit Data Entry
	// Triggers: REDCap posts one per saved form, far fewer than this even
	// when many surveys are finished at once.
	DefaultTriggerRate  rate.Limit = 10
	DefaultTriggerBurst            = 100

	// MinTriggerSecret is the shortest trigger secret accepted.
	MinTriggerSecret = 16
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
	// TriggerSecret authenticates REDCap's Data Entry Trigger: the trigger
	// URL configured in REDCap ends in ?secret=<TriggerSecret>. Empty:
	// /redcap/trigger refuses every request (403).
	TriggerSecret string
	// TriggerRate and TriggerBurst limit /redcap/trigger (0 = the
	// defaults); requests beyond them get 429.
	TriggerRate  rate.Limit
	TriggerBurst int
	// TrustedProxies are the networks of the reverse proxies in front of
	// nudge: only a request from one of them has its X-Forwarded-For
	// header read for the client's address; nil = the TCP peer is the
	// client.
	TrustedProxies []netip.Prefix
	// SeparateAdmin takes /healthz and /metrics off Handler (the public
	// port answers 404 for them); they are served by AdminHandler and
	// ServeAdmin instead.
	SeparateAdmin bool

	// Registry is used only when Metrics is nil (see there).
	Registry *prometheus.Registry
	// Gatherer is what /metrics serves (nil = the Metrics' registry).
	Gatherer prometheus.Gatherer
	// UI, when set, is served under /ui/: the coordinator web page.
	UI http.Handler

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
	admin     http.Handler // /healthz and /metrics

	triggerKey  [sha256.Size]byte // SHA-256 of the trigger secret
	triggerOpen bool              // a trigger secret is configured
	triggers    *rate.Limiter

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
	if n := len(cfg.TriggerSecret); n > 0 && n < MinTriggerSecret {
		return nil, fmt.Errorf("webhook: the Data Entry Trigger secret is %d characters long: use at least %d random characters, e.g. the output of `openssl rand -hex 24`", n, MinTriggerSecret)
	}
	if cfg.TriggerRate <= 0 {
		cfg.TriggerRate = DefaultTriggerRate
	}
	if cfg.TriggerBurst <= 0 {
		cfg.TriggerBurst = DefaultTriggerBurst
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
	if cfg.TriggerSecret != "" {
		s.triggerKey, s.triggerOpen = sha256.Sum256([]byte(cfg.TriggerSecret)), true
	}
	s.triggers = rate.NewLimiter(cfg.TriggerRate, cfg.TriggerBurst)
	s.mux, s.admin = s.routes()
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

// AdminHandler returns /healthz and /metrics alone, for the admin address
// (Config.SeparateAdmin).
func (s *Server) AdminHandler() http.Handler { return s.admin }

func (s *Server) routes() (public, admin http.Handler) {
	mux := http.NewServeMux()
	mux.Handle("/twilio/inbound", s.route("inbound", http.MethodPost, s.twilio(s.inbound)))
	mux.Handle("/twilio/status", s.route("status", http.MethodPost, s.twilio(s.status)))
	mux.Handle("/redcap/trigger", s.route("trigger", http.MethodPost, s.triggerGate(s.form(s.trigger))))
	adm := http.NewServeMux()
	adm.Handle("/healthz", s.route("healthz", http.MethodGet, http.HandlerFunc(s.healthz)))
	adm.Handle("/metrics", s.route("metrics", http.MethodGet, promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promLogger{s.log},
	})))
	adm.Handle("/", s.route("other", "", http.NotFoundHandler()))
	if !s.cfg.SeparateAdmin {
		mux.Handle("/healthz", adm)
		mux.Handle("/metrics", adm)
	}
	if s.cfg.UI != nil {
		mux.Handle("/ui/", s.route("ui", "", s.cfg.UI))
	}
	mux.Handle("/", s.route("other", "", http.NotFoundHandler()))
	return mux, adm
}

// Serve answers requests on l until ctx ends, then shuts down gracefully:
// it stops accepting connections and waits up to ShutdownTimeout for
// in-flight requests, which keep a context that is not cancelled by ctx.
// It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	return s.serve(ctx, l, s.mux)
}

// ServeAdmin answers /healthz and /metrics on l (the admin address) until
// ctx ends, shutting down as Serve does.
func (s *Server) ServeAdmin(ctx context.Context, l net.Listener) error {
	return s.serve(ctx, l, s.admin)
}

func (s *Server) serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          newErrorLog(s.log),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if s.onShutdown != nil && l != nil && h == s.mux {
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
