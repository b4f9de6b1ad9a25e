// Package app assembles callcat's parts (store, hub, provider client,
// tracker, HTTP server) into the running service, and runs the demo. The
// command in cmd/callcat only parses flags and calls into it, so tests run the
// real service in-process on a free loopback port.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/httpapi"
	"github.com/callcat/callcat/internal/memwatch"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/stream"
	"github.com/callcat/callcat/internal/tracker"
	"github.com/callcat/callcat/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults for Config.
const (
	DefaultAddr            = "127.0.0.1:8080"
	DefaultRetellBaseURL   = "https://api.retellai.com"
	DefaultShutdownTimeout = 10 * time.Second
	DefaultDatabaseFile    = "callcat.db"
)

// Config holds every setting of `callcat serve`.
type Config struct {
	Addr    string // listen address; port 0 picks a free one
	DataDir string // holds the SQLite database file

	// Store is a PostgreSQL URL (postgres://…) shared by several replicas;
	// empty means SQLite in DataDir. ReplicaID names this replica in leases
	// and notifications; empty picks host name, process id and random bits.
	Store     string
	ReplicaID string

	RetellBaseURL string
	RetellAPIKey  string // verifies webhooks and authenticates polls; never logged

	// Security holds the API and admin tokens, CORS origins and webhook
	// source rules. Without API tokens, Serve listens only on loopback.
	Security httpapi.Security

	// DisableDashboard stops serving the dashboard at /.
	DisableDashboard bool

	Tracker tracker.Config
	Client  retell.ClientConfig
	Stream  stream.Config
	Memory  memwatch.Config

	// Retention sets how long ended calls and dedup records are kept.
	Retention RetentionConfig

	MaxWebhookBytes int64
	ShutdownTimeout time.Duration

	// Listener, when set, is used instead of listening on Addr. The demo
	// binds it first so it can give the simulator the webhook URL.
	Listener net.Listener

	Logger *slog.Logger
}

// Service is a running callcat.
type Service struct {
	Addr     string // the bound address, e.g. 127.0.0.1:8080
	Tracker  *tracker.Tracker
	Store    callcat.Store
	Hub      *stream.Hub
	Memory   *memwatch.Watcher
	Registry *prometheus.Registry

	// Streams ends the SSE responses open at the moment of the call, as a
	// restart would. Tests use it to cut streams from the server side.
	Streams *httpapi.StreamCloser
}

// URL returns the service's base URL.
func (s *Service) URL() string {
	return "http://" + s.Addr
}

// IsLoopback reports whether addr (host:port) only listens on a loopback
// interface. An empty host means every interface and is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Serve runs the service until ctx is done, then shuts down within
// cfg.ShutdownTimeout. ready, when not nil, is called once the listener is
// bound and the tracker runs.
func Serve(ctx context.Context, cfg Config, ready func(*Service)) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.RetellAPIKey == "" {
		return errors.New("the provider API key is missing: set RETELL_API_KEY (callcat needs it to verify webhooks and poll calls)")
	}
	if cfg.Listener != nil {
		cfg.Addr = cfg.Listener.Addr().String()
	}
	if !IsLoopback(cfg.Addr) && len(cfg.Security.APITokens) == 0 {
		return fmt.Errorf("refusing to listen on %q without API tokens: set --api-tokens or --api-tokens-file, or listen on a loopback address such as 127.0.0.1:8080", cfg.Addr)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Store.
	if cfg.ReplicaID == "" {
		cfg.ReplicaID = newReplicaID()
	}
	opened, err := openStore(ctx, &cfg, logger, reg)
	if err != nil {
		return err
	}
	db := opened.store
	defer func() {
		if err := db.Close(); err != nil {
			logger.Error("close store failed", "store", opened.desc, "err", err)
		}
	}()

	// Provider client, hub, tracker.
	clientCfg := cfg.Client
	clientCfg.BaseURL = cfg.RetellBaseURL
	clientCfg.APIKey = cfg.RetellAPIKey
	clientCfg.Logger = logger
	clientCfg.Observe = providerObserver(reg)
	clientCfg.Registerer = reg
	client, err := retell.NewClient(clientCfg)
	if err != nil {
		return fmt.Errorf("create provider client: %w", err)
	}
	defer client.Close()

	streamCfg := cfg.Stream
	streamCfg.Registerer = reg
	streamCfg.Logger = logger
	hub, err := stream.NewHub(streamCfg)
	if err != nil {
		return fmt.Errorf("create stream hub: %w", err)
	}
	defer hub.Close()

	trackerCfg := cfg.Tracker
	trackerCfg.Logger = logger
	trackerCfg.Registerer = reg
	if trackerCfg.Workers <= 0 {
		trackerCfg.Workers = clientCfg.MaxInFlight
	}
	if opened.leaser != nil {
		trackerCfg.Leaser = opened.leaser
		trackerCfg.Owner = cfg.ReplicaID
	}
	tr, err := tracker.New(db, hub, client, trackerCfg)
	if err != nil {
		return err
	}

	memCfg := cfg.Memory
	memCfg.Registerer = reg
	memCfg.Logger = logger
	mem, err := memwatch.New(memCfg)
	if err != nil {
		return fmt.Errorf("create memory watcher: %w", err)
	}

	// HTTP.
	streams := &httpapi.StreamCloser{}
	apiCfg := httpapi.Config{
		Store:           db,
		Tracker:         tr,
		Provider:        client,
		Hub:             hub,
		WebhookKey:      cfg.RetellAPIKey,
		Security:        cfg.Security,
		MaxWebhookBytes: cfg.MaxWebhookBytes,
		Metrics:         promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		Memory:          mem,
		MemoryReport:    mem.Report,
		Gatherer:        reg,
		StreamCloser:    streams,
		Logger:          logger,
		Registerer:      reg,
	}
	if !cfg.DisableDashboard {
		apiCfg.Assets = web.FS
	}
	handler, err := httpapi.NewServer(apiCfg)
	if err != nil {
		return err
	}

	ln := cfg.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.Addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
		}
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second, // SSE streams move their own deadline forward
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	// Open SSE streams end when the hub closes, so Shutdown need not wait
	// for them until its timeout.
	srv.RegisterOnShutdown(hub.Close)

	trackerCtx, stopTracker := context.WithCancel(context.Background())
	defer stopTracker()

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(4)
	go func() {
		defer wg.Done()
		opened.relay(trackerCtx, hub, cfg.ReplicaID, logger)
	}()
	go func() {
		defer wg.Done()
		if err := mem.Run(trackerCtx); err != nil {
			logger.Error("memory watcher stopped", "err", err)
		}
	}()
	if p, ok := db.(callcat.Pruner); ok {
		retention := newPruner(p, cfg.Retention, logger, reg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			retention.run(trackerCtx)
		}()
	}
	go func() {
		defer wg.Done()
		if err := tr.Run(trackerCtx); err != nil {
			errc <- fmt.Errorf("tracker: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http server: %w", err)
		}
	}()

	svc := &Service{Addr: ln.Addr().String(), Tracker: tr, Store: db, Hub: hub, Memory: mem, Registry: reg, Streams: streams}
	logger.Info("callcat serving", "addr", svc.Addr, "store", opened.desc, "replica", cfg.ReplicaID, "provider", cfg.RetellBaseURL,
		"dashboard", !cfg.DisableDashboard)
	if ready != nil {
		ready(svc)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}

	logger.Info("callcat shutting down", "timeout", cfg.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("http shutdown incomplete; closing connections", "err", err)
		if err := srv.Close(); err != nil {
			logger.Debug("http close failed", "err", err)
		}
	}
	// SSE streams on HTTP/1.x take over their connections, so neither
	// Shutdown nor Close waits for them. They end with the hub; this waits
	// until they have, and closes their connections at the timeout.
	if err := streams.Shutdown(shutdownCtx); err != nil {
		logger.Warn("SSE streams still open at the shutdown timeout; closed their connections", "err", err)
	}
	stopTracker()
	wg.Wait()
	logger.Info("callcat stopped")
	return runErr
}

// providerObserver counts provider requests by endpoint and status class.
func providerObserver(reg prometheus.Registerer) func(string, int, error, time.Duration) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callcat_provider_requests_total",
		Help: "Requests to the provider API by endpoint and status class (2xx, 4xx, 5xx, error).",
	}, []string{"endpoint", "class"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "callcat_provider_request_duration_seconds",
		Help:    "Duration of provider API requests.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 9),
	}, []string{"endpoint"})
	reg.MustRegister(requests, duration)

	return func(endpoint string, status int, err error, elapsed time.Duration) {
		class := "error"
		if err == nil || status > 0 {
			class = fmt.Sprintf("%dxx", status/100)
		}
		requests.WithLabelValues(endpoint, class).Inc()
		duration.WithLabelValues(endpoint).Observe(elapsed.Seconds())
	}
}
