package httpapi

import (
	"net/http"
	"net/http/pprof"
)

// addRoutes registers every route of the service with the rule that guards
// it. Method-qualified patterns make the mux respond 405 with an Allow header
// for other methods, and 404 for unknown paths. The dashboard is served at
// "GET /{$}", not at a catch-all "/", which would turn every 405 into a 404.
//
// Access rules:
//   - webhook: the provider's signature, and the source allowlist if set;
//   - /v1/*: an API token (none needed while none is configured);
//   - the two SSE streams: an API token or a stream ticket;
//   - /metrics, /debug/*: the admin token (see requireAdmin), except
//     /metrics with PublicMetrics;
//   - /healthz, /readyz, the dashboard files: public.
func (s *server) addRoutes(mux *http.ServeMux) {
	mux.Handle("POST /webhooks/retell", s.allowWebhookSource(s.handleWebhook()))

	mux.Handle("GET /v1/calls", s.requireAPI(s.handleListCalls()))
	mux.Handle("GET /v1/calls/{id}", s.requireAPI(s.handleGetCall()))
	mux.Handle("GET /v1/calls/{id}/transcript", s.requireAPI(s.handleTranscript()))
	mux.Handle("GET /v1/calls/{id}/stream", s.requireStream(callStreamScope, s.handleCallStream()))
	mux.Handle("GET /v1/stream", s.requireStream(lifecycleStreamScope, s.handleLifecycleStream()))
	mux.Handle("POST /v1/stream-tickets", s.requireAPI(s.handleStreamTicket()))
	mux.Handle("GET /v1/health", s.requireAPI(s.handleHealth()))

	mux.Handle("GET /healthz", s.handleHealthz())
	mux.Handle("GET /readyz", s.handleReadyz())

	if s.cfg.Metrics != nil {
		if s.cfg.Security.PublicMetrics {
			mux.Handle("GET /metrics", s.cfg.Metrics)
		} else {
			mux.Handle("GET /metrics", s.requireAdmin(s.cfg.Metrics))
		}
	}
	if s.cfg.Memory != nil {
		mux.Handle("GET /debug/memory", s.requireAdmin(s.cfg.Memory))
	}
	if s.cfg.Security.Pprof {
		// pprof.Index also serves the named profiles under /debug/pprof/.
		// The cmdline endpoint is left out because the command line may
		// carry tokens. Index responds 404 to it as an unknown profile.
		mux.Handle("/debug/pprof/", s.requireAdmin(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", s.requireAdmin(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", s.requireAdmin(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", s.requireAdmin(http.HandlerFunc(pprof.Trace)))
	}

	if s.assets != nil {
		mux.Handle("GET /{$}", s.handleDashboard())
		mux.Handle("GET /assets/{name...}", s.handleAsset())
	}
}
