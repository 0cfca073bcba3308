package webhook

import (
	"context"
	"encoding/json"
	"net/http"
)

// healthz reports Handler.Health as JSON: 200 while nudge can do its work
// (healthy or degraded), 503 otherwise. When the check itself fails, its
// error goes to the log and the answer says only that it failed.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), DefaultHealthTimeout)
	defer cancel()
	h, err := s.h.Health(ctx)
	if err != nil {
		s.log.WithError(err).Warn("webhook: health check failed")
		h = Health{OK: false, Status: StatusUnhealthy, Database: "unknown",
			Problems: []string{"the health check failed; nudge's log says why"}}
	}
	if h.Status == "" {
		h.Status = StatusHealthy
		if !h.OK {
			h.Status = StatusUnhealthy
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if h.OK {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(h)
}
