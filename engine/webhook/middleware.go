package webhook

import (
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Outcomes recorded in nudge_webhook_requests_total beyond the ones derived
// from the status code (see outcomeFor).
const (
	outcomeOK              = "ok"
	outcomeBadSignature    = "bad_signature"
	outcomeNoSignature     = "no_signature"
	outcomeUnknownProject  = "unknown_project"
	outcomeBadSecret       = "bad_secret"
	outcomeNoTriggerSecret = "no_trigger_secret"
	outcomeRateLimited     = "rate_limited"
	outcomePanic           = "panic"
)

// recorder remembers what a handler answered, for the log and the metrics.
type recorder struct {
	http.ResponseWriter
	status  int
	bytes   int64
	outcome string // set by a handler to say more than the status does
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// setOutcome labels the request's outcome more precisely than its status.
func setOutcome(w http.ResponseWriter, outcome string) {
	if r, ok := w.(*recorder); ok {
		r.outcome = outcome
	}
}

// outcomeFor names an answer by its status code.
func outcomeFor(status int) string {
	switch {
	case status < 400:
		return outcomeOK
	case status == http.StatusBadRequest:
		return "bad_request"
	case status == http.StatusForbidden:
		return "forbidden"
	case status == http.StatusNotFound:
		return "not_found"
	case status == http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case status == http.StatusRequestEntityTooLarge:
		return "too_large"
	case status == http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case status == http.StatusTooManyRequests:
		return outcomeRateLimited
	case status >= 500:
		return "error"
	default:
		return "rejected"
	}
}

// route wraps a handler with, from the outside in: the access log and
// metrics, panic recovery, and the method check (method "" allows any).
func (s *Server) route(endpoint, method string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		defer func() {
			d := time.Since(start)
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			outcome := rec.outcome
			if outcome == "" {
				outcome = outcomeFor(rec.status)
			}
			s.metrics.ObserveWebhook(endpoint, outcome, d)
			s.accessLog(r, endpoint, outcome, rec, d)
		}()
		defer s.recoverPanic(rec, r, endpoint)

		if method != "" && r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			rec.Header().Set("Allow", method)
			http.Error(rec, fmt.Sprintf("%s only accepts %s", endpointPath(endpoint, r), method), http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(rec, r)
	})
}

// recoverPanic turns a panic in a handler into a 500 (when nothing has been
// written yet) and an error in the log, so one bad request cannot take the
// server down.
func (s *Server) recoverPanic(rec *recorder, r *http.Request, endpoint string) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	rec.outcome = outcomePanic
	s.log.WithFields(logrus.Fields{
		"endpoint": endpoint,
		"panic":    fmt.Sprint(v),
	}).Error("webhook: handler panicked; answered 500")
	if rec.status == 0 {
		http.Error(rec, "internal error", http.StatusInternalServerError)
	} else {
		rec.status = http.StatusInternalServerError
	}
}

// accessLog writes one line per request. It records the method, the path
// (never the query), the status, the time taken and the sizes; form values,
// phone numbers and message bodies are never logged.
func (s *Server) accessLog(r *http.Request, endpoint, outcome string, rec *recorder, d time.Duration) {
	l := s.log.WithFields(logrus.Fields{
		"method":      r.Method,
		"path":        endpointPath(endpoint, r),
		"endpoint":    endpoint,
		"status":      rec.status,
		"outcome":     outcome,
		"duration_ms": float64(d.Microseconds()) / 1000,
		"bytes":       rec.bytes,
		"remote":      s.clientAddr(r),
	})
	if r.ContentLength >= 0 {
		l = l.WithField("request_bytes", r.ContentLength)
	}
	switch {
	case rec.status >= 500:
		l.Error("webhook: request")
	case endpoint == "healthz" || endpoint == "metrics":
		l.Debug("webhook: request")
	default:
		l.Info("webhook: request")
	}
}

// endpointPath is the path to log: the route's own path for known routes,
// and for unknown ones the request path with its digits masked (a stray
// request may carry a phone number in its path).
func endpointPath(endpoint string, r *http.Request) string {
	if endpoint != "other" {
		return r.URL.Path
	}
	return maskDigits(r.URL.Path)
}

// maskDigits replaces every digit with '#'.
func maskDigits(s string) string {
	return strings.Map(func(c rune) rune {
		if c >= '0' && c <= '9' {
			return '#'
		}
		return c
	}, s)
}

// form limits the body, parses an application/x-www-form-urlencoded POST
// and answers 415, 413 or 400 when that fails; next sees r.PostForm filled.
func (s *Server) form(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/x-www-form-urlencoded" {
			http.Error(w, "the body must be application/x-www-form-urlencoded", http.StatusUnsupportedMediaType)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
		if err := r.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, fmt.Sprintf("the body is larger than %d bytes", s.cfg.MaxBody), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "the body is not a valid form", http.StatusBadRequest)
			return
		}
		next(w, r)
	})
}

// discard is an io.Writer that drops everything (a silent default logger).
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// newErrorLog routes net/http's own messages (bad TLS handshakes, broken
// connections) into logrus at warning level.
func newErrorLog(l logrus.FieldLogger) *log.Logger {
	return log.New(logWriter{l}, "", 0)
}

type logWriter struct{ l logrus.FieldLogger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.Warn("webhook: http server: " + strings.TrimSpace(string(p)))
	return len(p), nil
}

// promLogger lets promhttp report gathering errors through logrus.
type promLogger struct{ l logrus.FieldLogger }

func (p promLogger) Println(v ...any) { p.l.Warn("webhook: /metrics: " + fmt.Sprint(v...)) }

var _ io.Writer = logWriter{}
