package httpapi

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"slices"

	"github.com/callcat/callcat/internal/openapi"
)

// routePatterns lists every pattern addRoutes may register, the
// conditional ones included. addRoutes panics on a pattern missing here, and
// a test checks that each one is registered when every option is on, so
// Routes stays the complete list the OpenAPI document is checked against.
var routePatterns = []string{
	"POST /webhooks/retell",
	"GET /v1/calls",
	"POST /v1/calls",
	"GET /v1/calls/{id}",
	"POST /v1/calls/{id}/stop",
	"GET /v1/calls/{id}/transcript",
	"GET /v1/calls/{id}/stream",
	"GET /v1/stream",
	"POST /v1/stream-tickets",
	"GET /v1/health",
	"GET /healthz",
	"GET /readyz",
	"GET /openapi.json",
	"GET /openapi.yaml",
	"GET /metrics",
	"GET /debug/memory",
	"/debug/pprof/",
	"/debug/pprof/profile",
	"/debug/pprof/symbol",
	"/debug/pprof/trace",
	"GET /{$}",
	"GET /assets/{name...}",
}

// Routes returns every ServeMux pattern the server may register, including
// those that depend on Config (metrics, memory, pprof, dashboard).
func Routes() []string {
	return slices.Clone(routePatterns)
}

// handle registers h at pattern, which must be listed in routePatterns.
func (s *server) handle(mux *http.ServeMux, pattern string, h http.Handler) {
	if !slices.Contains(routePatterns, pattern) {
		panic(fmt.Sprintf("httpapi: route %q is missing from routePatterns", pattern))
	}
	s.registered = append(s.registered, pattern)
	mux.Handle(pattern, h)
}

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
//   - /healthz, /readyz, /openapi.*, the dashboard files: public.
func (s *server) addRoutes(mux *http.ServeMux) {
	s.handle(mux, "POST /webhooks/retell", s.allowWebhookSource(s.handleWebhook()))

	s.handle(mux, "GET /v1/calls", s.requireAPI(s.handleListCalls()))
	s.handle(mux, "POST /v1/calls", s.requireAPI(s.handlePlaceCall()))
	s.handle(mux, "POST /v1/calls/{id}/stop", s.requireAPI(s.handleStopCall()))
	s.handle(mux, "GET /v1/calls/{id}", s.requireAPI(s.handleGetCall()))
	s.handle(mux, "GET /v1/calls/{id}/transcript", s.requireAPI(s.handleTranscript()))
	s.handle(mux, "GET /v1/calls/{id}/stream", s.requireStream(callStreamScope, s.handleCallStream()))
	s.handle(mux, "GET /v1/stream", s.requireStream(lifecycleStreamScope, s.handleLifecycleStream()))
	s.handle(mux, "POST /v1/stream-tickets", s.requireAPI(s.handleStreamTicket()))
	s.handle(mux, "GET /v1/health", s.requireAPI(s.handleHealth()))

	s.handle(mux, "GET /openapi.json", s.handleOpenAPI("application/json"))
	s.handle(mux, "GET /openapi.yaml", s.handleOpenAPI("application/yaml"))

	s.handle(mux, "GET /healthz", s.handleHealthz())
	s.handle(mux, "GET /readyz", s.handleReadyz())

	if s.cfg.Metrics != nil {
		if s.cfg.Security.PublicMetrics {
			s.handle(mux, "GET /metrics", s.cfg.Metrics)
		} else {
			s.handle(mux, "GET /metrics", s.requireAdmin(s.cfg.Metrics))
		}
	}
	if s.cfg.Memory != nil {
		s.handle(mux, "GET /debug/memory", s.requireAdmin(s.cfg.Memory))
	}
	if s.cfg.Security.Pprof {
		// pprof.Index also serves the named profiles under /debug/pprof/.
		// The cmdline endpoint is left out because the command line may
		// carry tokens. Index responds 404 to it as an unknown profile.
		s.handle(mux, "/debug/pprof/", s.requireAdmin(http.HandlerFunc(pprof.Index)))
		s.handle(mux, "/debug/pprof/profile", s.requireAdmin(http.HandlerFunc(pprof.Profile)))
		s.handle(mux, "/debug/pprof/symbol", s.requireAdmin(http.HandlerFunc(pprof.Symbol)))
		s.handle(mux, "/debug/pprof/trace", s.requireAdmin(http.HandlerFunc(pprof.Trace)))
	}

	if s.assets != nil {
		s.handle(mux, "GET /{$}", s.handleDashboard())
		s.handle(mux, "GET /assets/{name...}", s.handleAsset())
	}
}

// handleOpenAPI serves the OpenAPI document. The JSON text is valid YAML 1.2,
// so both routes send the same bytes.
func (s *server) handleOpenAPI(contentType string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		if _, err := w.Write(openapi.Document); err != nil {
			s.logger.Debug("write openapi document failed", "err", err)
		}
	})
}
