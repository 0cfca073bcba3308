package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"

	"github.com/sirupsen/logrus"
)

// triggerGate lets a Data Entry Trigger through only within the rate limit
// (429 otherwise) and only when its URL carries the configured secret
// (403 otherwise, and always when no secret is configured). The secret is
// compared in constant time and never logged; the body of a refused
// request is not read.
func (s *Server) triggerGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fields := logrus.Fields{"path": r.URL.Path, "remote": s.clientAddr(r)}
		if !s.triggers.Allow() {
			setOutcome(w, outcomeRateLimited)
			s.log.WithFields(fields).Warn("webhook: refused a Data Entry Trigger: too many triggers at once")
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many Data Entry Triggers; slow down", http.StatusTooManyRequests)
			return
		}
		if !s.triggerOpen {
			setOutcome(w, outcomeNoTriggerSecret)
			s.log.WithFields(fields).Warn("webhook: refused a Data Entry Trigger: no trigger secret is configured (server.trigger_secret_env), so every trigger is refused")
			http.Error(w, "Data Entry Triggers are not enabled on this nudge", http.StatusForbidden)
			return
		}
		given, ok := r.URL.Query()["secret"]
		if !ok || len(given) != 1 || given[0] == "" {
			setOutcome(w, outcomeBadSecret)
			s.log.WithFields(fields).Warn("webhook: refused a Data Entry Trigger without the secret parameter in its URL")
			http.Error(w, "the trigger URL lacks the secret", http.StatusForbidden)
			return
		}
		key := sha256.Sum256([]byte(given[0]))
		if subtle.ConstantTimeCompare(key[:], s.triggerKey[:]) != 1 {
			setOutcome(w, outcomeBadSecret)
			s.log.WithFields(fields).Warn("webhook: refused a Data Entry Trigger whose secret is wrong")
			http.Error(w, "the trigger secret is wrong", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// trigger accepts REDCap's Data Entry Trigger. REDCap does not sign it, does
// not retry it and ignores the answer: the handler only enqueues it, and the
// engine re-reads the record through the API before acting.
func (s *Server) trigger(w http.ResponseWriter, r *http.Request) {
	p := r.PostForm
	t := Trigger{
		RedcapURL:        p.Get("redcap_url"),
		Record:           p.Get("record"),
		Instrument:       p.Get("instrument"),
		Event:            p.Get("redcap_event_name"),
		RepeatInstrument: p.Get("redcap_repeat_instrument"),
		Params:           p,
	}
	if t.Record == "" {
		http.Error(w, "record is missing", http.StatusBadRequest)
		return
	}
	var err error
	if t.ProjectID, err = strconv.Atoi(p.Get("project_id")); err != nil || t.ProjectID <= 0 {
		http.Error(w, "project_id is missing or not a positive number", http.StatusBadRequest)
		return
	}
	if n := p.Get("redcap_repeat_instance"); n != "" {
		if t.RepeatInstance, err = strconv.Atoi(n); err != nil || t.RepeatInstance < 1 {
			http.Error(w, "redcap_repeat_instance is not a positive number", http.StatusBadRequest)
			return
		}
	}
	err = s.h.Trigger(r.Context(), t)
	switch {
	case errors.Is(err, ErrUnknownProject):
		setOutcome(w, outcomeUnknownProject)
		s.log.WithFields(logrus.Fields{"project_id": t.ProjectID, "remote": s.clientAddr(r)}).
			Warn("webhook: refused a Data Entry Trigger from a REDCap project that is not configured")
		http.Error(w, "this REDCap project is not configured in nudge", http.StatusForbidden)
	case err != nil:
		s.log.WithError(err).WithField("project_id", t.ProjectID).Error("webhook: Data Entry Trigger not queued; REDCap will not resend it")
		http.Error(w, "the trigger could not be queued", http.StatusInternalServerError)
	default:
		w.WriteHeader(http.StatusOK)
	}
}
