package main

import (
	"context"
	"flag"
	"io"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/httpapi"
	"github.com/callcat/callcat/internal/memwatch"
	"github.com/callcat/callcat/internal/tracker"
)

// serviceFlags are the flags serve and demo share.
type serviceFlags struct {
	cfg       app.Config
	logLevel  string
	logFormat string
}

// register defines the service flags on fs with their defaults.
func (f *serviceFlags) register(fs *flag.FlagSet, defaultDataDir string) {
	c := &f.cfg
	fs.StringVar(&c.Addr, "addr", app.DefaultAddr, "listen `address` (host:port); only loopback addresses until API tokens exist")
	fs.StringVar(&c.DataDir, "data-dir", defaultDataDir, "`directory` for the SQLite database")

	t := &c.Tracker
	fs.DurationVar(&t.PollInterval, "poll-interval", tracker.DefaultPollInterval, "get-call period of a live call while no push webhook arrived within it")
	fs.DurationVar(&t.ReconcileInterval, "reconcile-interval", tracker.DefaultReconcileInterval, "get-call period of a live call while push webhooks flow")
	fs.IntVar(&t.MaxTracked, "max-tracked", tracker.DefaultMaxTracked, "maximum live calls tracked in memory")
	fs.DurationVar(&t.MaxTrackingDuration, "max-tracking-duration", tracker.DefaultMaxTrackingDuration, "stop polling a call this long after tracking started")

	p := &c.Client
	fs.IntVar(&p.MaxInFlight, "provider-max-in-flight", 16, "maximum concurrent provider requests (also the HTTP connection pool size)")
	fs.Float64Var(&p.RequestsPerSecond, "provider-rps", 50, "maximum provider requests per second")
	fs.DurationVar(&p.RequestTimeout, "provider-timeout", 0, "timeout of one provider request (0: 10s)")
	fs.Int64Var(&p.MaxResponseBytes, "provider-max-response-bytes", 8<<20, "maximum provider response body in `bytes`")

	s := &c.Stream
	fs.IntVar(&s.BufferSize, "sse-buffer", 64, "events buffered per SSE client before a slow client is disconnected")
	fs.IntVar(&s.MaxSubscribers, "max-sse-clients", 10000, "maximum open SSE streams")

	fs.Int64Var(&c.MaxWebhookBytes, "max-webhook-bytes", httpapi.DefaultMaxWebhookBytes, "maximum webhook body in `bytes`; larger bodies get 413")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", app.DefaultShutdownTimeout, "time allowed for a graceful shutdown")
	fs.DurationVar(&c.Memory.Interval, "memwatch-interval", memwatch.DefaultInterval, "period of memory samples")
	fs.IntVar(&c.Memory.Capacity, "memwatch-samples", memwatch.DefaultCapacity, "memory samples kept in the ring (2160 at 10s is 6h)")
	fs.DurationVar(&c.Memory.Window, "memwatch-window", memwatch.DefaultWindow, "window over which memory growth is fitted")

	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log `format`: text or json")
}

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)

	var f serviceFlags
	f.register(fs, "data")
	fs.StringVar(&f.cfg.RetellBaseURL, "retell-base-url", app.DefaultRetellBaseURL, "provider API base `URL`")
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}

	logger, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	f.cfg.Logger = logger
	f.cfg.RetellAPIKey = getenv("RETELL_API_KEY")
	memwatch.ConfigureMemoryLimit(logger, memwatch.DefaultMemoryLimitRatio)
	return app.Serve(ctx, f.cfg, nil)
}
