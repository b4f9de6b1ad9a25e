// Package httpapi serves callcat's HTTP surface: the provider webhook, the
// calls API, the SSE streams, the health endpoints, the admin endpoints and
// the embedded dashboard. Every route and the access rule that guards it are
// registered in routes.go.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/memwatch"
	"github.com/callcat/callcat/internal/ratelog"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/stream"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config.
const (
	DefaultMaxWebhookBytes    = 16 << 20
	DefaultHeartbeatInterval  = 15 * time.Second
	DefaultStreamWriteTimeout = 30 * time.Second
	DefaultRetryHint          = 2 * time.Second
)

// Tracker is the part of the live-call engine the API uses.
type Tracker interface {
	HandleWebhook(ctx context.Context, wh *retell.Webhook, d callcat.Delivery) (callcat.ApplyResult, error)
	Ready() error

	// Track starts polling a call just placed through the API.
	Track(callID string) error

	// Apply stores an update and publishes its events in seq order with the
	// call's other events.
	Apply(ctx context.Context, u callcat.Update) (callcat.ApplyResult, error)
}

// Provider is the part of the provider's API that places and stops calls.
// *retell.Client implements it.
type Provider interface {
	CreatePhoneCall(ctx context.Context, req retell.CreatePhoneCallRequest) (*retell.Call, error)
	StopCall(ctx context.Context, callID string) error
}

// Config holds the server's dependencies and tunables.
type Config struct {
	Store   callcat.Store
	Tracker Tracker
	Hub     *stream.Hub

	// Provider places and stops calls for POST /v1/calls and
	// POST /v1/calls/{id}/stop. Nil answers both 503.
	Provider Provider

	// Idempotency keeps the Idempotency-Key records of POST /v1/calls. Nil
	// uses Store when it implements callcat.IdempotencyStore; without either
	// a request with the header is answered 400.
	Idempotency callcat.IdempotencyStore

	// WebhookKey is the provider API key that signs webhooks. Never logged.
	WebhookKey string

	// Security holds the tokens, CORS origins and address rules. Its zero
	// value leaves every route open; app.Serve allows that only on a
	// loopback address.
	Security Security

	// MaxWebhookBytes caps a webhook body; a larger one is answered 413.
	MaxWebhookBytes int64

	// HeartbeatInterval is the period of SSE comment lines that keep idle
	// streams open through proxies.
	HeartbeatInterval time.Duration

	// StreamWriteTimeout bounds each write to an SSE client; a client that
	// does not take a frame within it is disconnected.
	StreamWriteTimeout time.Duration

	// Metrics serves GET /metrics and Memory serves GET /debug/memory when
	// set. Both need the admin token (see Security).
	Metrics http.Handler
	Memory  http.Handler

	// MemoryReport and Gatherer feed GET /v1/health, the summary the
	// dashboard's health panel reads with an API token. Either may be nil;
	// the fields they feed are then null.
	MemoryReport func() memwatch.Report
	Gatherer     prometheus.Gatherer

	// Assets holds the dashboard: index.html and assets/*. Nil serves no
	// dashboard.
	Assets fs.FS

	// StreamCloser, when set, can end every open SSE response on demand,
	// and its Shutdown waits for the streams that took over their HTTP/1.x
	// connection, which http.Server.Shutdown does not wait for. When it is
	// nil, the server uses a private one: streams still end with the hub,
	// but no caller can wait for them.
	StreamCloser *StreamCloser

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

func (c *Config) setDefaults() {
	if c.MaxWebhookBytes <= 0 {
		c.MaxWebhookBytes = DefaultMaxWebhookBytes
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.StreamWriteTimeout <= 0 {
		c.StreamWriteTimeout = DefaultStreamWriteTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Idempotency == nil {
		c.Idempotency, _ = c.Store.(callcat.IdempotencyStore)
	}
}

// server carries what the handlers share.
type server struct {
	cfg     Config
	logger  *slog.Logger
	limited *ratelog.Limiter
	metrics *metrics
	streams *StreamCloser // Config.StreamCloser or the server's own

	apiTokens   tokenSet
	adminTokens tokenSet
	tickets     *ticketSigner
	assets      *assetSet // nil without Config.Assets

	registered []string // patterns addRoutes registered, for tests
}

// NewServer returns the HTTP handler for every route. It fails when a
// dependency is missing or Config.Security is invalid.
func NewServer(cfg Config) (http.Handler, error) {
	if cfg.Store == nil || cfg.Tracker == nil || cfg.Hub == nil {
		return nil, errors.New("httpapi: store, tracker and hub are required")
	}
	if cfg.WebhookKey == "" {
		return nil, errors.New("httpapi: webhook key is required")
	}
	if err := cfg.Security.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()

	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}

	var ticketKey [32]byte
	if _, err := rand.Read(ticketKey[:]); err != nil {
		return nil, err
	}

	s := &server{
		cfg:       cfg,
		logger:    cfg.Logger,
		limited:   ratelog.New(cfg.Logger, 0),
		metrics:   m,
		streams:   cfg.StreamCloser,
		apiTokens: newTokenSet(cfg.Security.APITokens),
		tickets:   &ticketSigner{key: ticketKey, now: cfg.Now},
	}
	if s.streams == nil {
		s.streams = &StreamCloser{}
	}
	if cfg.Security.AdminToken != "" {
		s.adminTokens = newTokenSet([]string{cfg.Security.AdminToken})
	}
	if cfg.Assets != nil {
		s.assets, err = loadAssets(cfg.Assets)
		if err != nil {
			return nil, err
		}
	}
	s.logAccessRules()

	mux := http.NewServeMux()
	s.addRoutes(mux)
	return securityHeaders(cors(cfg.Security.CORSOrigins, mux)), nil
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error string `json:"error"`
}

// writeJSON writes v with status. An encoding failure after the header was
// sent can only be logged.
func (s *server) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.logger.Debug("write response failed", "err", err)
	}
}

func (s *server) writeError(w http.ResponseWriter, status int, msg string) {
	s.writeJSON(w, status, errorBody{Error: msg})
}

// writeStoreError maps a store error to a status; unexpected ones are logged
// (rate-limited) and answered 500 without detail.
func (s *server) writeStoreError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, callcat.ErrNotFound):
		s.writeError(w, http.StatusNotFound, "call not found")
	case errors.Is(err, callcat.ErrInvalid):
		s.writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
	default:
		s.limited.Log(r.Context(), slog.LevelError, "store_read", "store read failed",
			"route", r.Pattern, "err", err)
		s.writeError(w, http.StatusInternalServerError, "internal error")
	}
}
