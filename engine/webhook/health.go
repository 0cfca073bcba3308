package webhook

import (
	"context"
	"encoding/json"
	"net/http"
)

// healthz reports Handler.Health as JSON: 200 when OK, 503 otherwise.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), DefaultHealthTimeout)
	defer cancel()
	h, err := s.h.Health(ctx)
	if err != nil {
		s.log.WithError(err).Warn("webhook: health check failed")
		h.OK = false
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
