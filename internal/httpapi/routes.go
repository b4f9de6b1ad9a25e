package httpapi

import "net/http"

// addRoutes registers every route of the service. Method-qualified patterns
// make the mux answer 405 with an Allow header for other methods, and 404 for
// unknown paths. A catch-all "/" route would turn every 405 into a 404.
func (s *server) addRoutes(mux *http.ServeMux) {
	mux.Handle("POST /webhooks/retell", s.handleWebhook())

	mux.Handle("GET /v1/calls", s.handleListCalls())
	mux.Handle("GET /v1/calls/{id}", s.handleGetCall())
	mux.Handle("GET /v1/calls/{id}/transcript", s.handleTranscript())
	mux.Handle("GET /v1/calls/{id}/stream", s.handleCallStream())

	mux.Handle("GET /healthz", s.handleHealthz())
	mux.Handle("GET /readyz", s.handleReadyz())
	if s.cfg.Metrics != nil {
		mux.Handle("GET /metrics", s.cfg.Metrics)
	}
	if s.cfg.Memory != nil {
		mux.Handle("GET /debug/memory", s.cfg.Memory)
	}
}
