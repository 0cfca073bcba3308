package webhook

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/sirupsen/logrus"
)

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
		s.log.WithFields(logrus.Fields{"project_id": t.ProjectID, "remote": remoteHost(r.RemoteAddr)}).
			Warn("webhook: refused a Data Entry Trigger from a REDCap project that is not configured")
		http.Error(w, "this REDCap project is not configured in nudge", http.StatusForbidden)
	case err != nil:
		s.log.WithError(err).WithField("project_id", t.ProjectID).Error("webhook: Data Entry Trigger not queued; REDCap will not resend it")
		http.Error(w, "the trigger could not be queued", http.StatusInternalServerError)
	default:
		w.WriteHeader(http.StatusOK)
	}
}
