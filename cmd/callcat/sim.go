package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/sim"
)

// simFlags are the simulator flags sim and demo share.
type simFlags struct {
	cfg sim.Config
}

func (f *simFlags) register(fs *flag.FlagSet, defaultCalls int, defaultSpeed float64) {
	c := &f.cfg
	fs.IntVar(&c.Calls, "calls", defaultCalls, "concurrent simulated calls to keep going")
	fs.IntVar(&c.TotalCalls, "total-calls", 0, "stop after this many calls have been started (0: run until stopped)")
	fs.DurationVar(&c.CallLength, "call-length", 45*time.Second, "simulated length of a connected call")
	fs.Float64Var(&c.Speed, "speed", defaultSpeed, "time compression: 10 plays a 45s call in 4.5s")
	fs.BoolVar(&c.PushTranscripts, "push-transcripts", true, "send transcript_updated webhooks at each turn")
	fs.BoolVar(&c.LiveTranscript, "live-transcript", false, "let get-call carry the live transcript of an ongoing call")
	fs.Float64Var(&c.NotConnectedRatio, "not-connected-ratio", 0.1, "share of calls that never connect (0 to 1)")
	fs.Int64Var(&c.Seed, "seed", 1, "seed of the simulated conversations and of the injected faults")
	f.registerFaults(fs)
}

// registerFaults defines one flag per simulated provider fault. Ratios are
// shares from 0 to 1; all default to 0, which injects nothing.
func (f *simFlags) registerFaults(fs *flag.FlagSet) {
	x := &f.cfg.Faults
	fs.DurationVar(&x.Latency, "fault-latency", 0, "delay added to every API response")
	fs.Float64Var(&x.LatencyTailRatio, "fault-latency-tail", 0, "share of API responses delayed by --fault-latency-tail-factor times --fault-latency")
	fs.Float64Var(&x.LatencyTailFactor, "fault-latency-tail-factor", sim.DefaultLatencyTailFactor, "multiple of --fault-latency for the long tail")
	fs.Float64Var(&x.RateLimitRatio, "fault-429", 0, "share of API requests answered 429 with Retry-After")
	fs.DurationVar(&x.RetryAfter, "fault-retry-after", sim.DefaultRetryAfter, "delay a 429 asks for, rounded up to whole seconds")
	fs.Float64Var(&x.RetryAfterDateRatio, "fault-retry-after-date", 0, "share of 429 responses whose Retry-After is an HTTP-date instead of seconds")
	fs.Float64Var(&x.ServerErrorRatio, "fault-5xx", 0, "share of API requests answered 500, 502, 503 or 504")
	fs.Float64Var(&x.ResetRatio, "fault-reset", 0, "share of API responses cut by a connection reset after part of the body")
	fs.Float64Var(&x.TruncateRatio, "fault-truncate", 0, "share of API responses whose body is cut short (invalid JSON)")
	fs.Float64Var(&x.SlowBodyRatio, "fault-slow-body", 0, "share of API responses whose body trickles over --fault-slow-body-duration")
	fs.DurationVar(&x.SlowBodyDuration, "fault-slow-body-duration", sim.DefaultSlowBodyDuration, "time a slow body takes to send")
	fs.Float64Var(&x.OversizeRatio, "fault-oversize", 0, "share of API responses padded past --fault-oversize-bytes")
	fs.IntVar(&x.OversizeBytes, "fault-oversize-bytes", sim.DefaultOversizeBytes, "size in `bytes` an oversized response exceeds")
	fs.Float64Var(&x.UnknownFieldRatio, "fault-unknown-fields", 0, "share of API responses and webhooks carrying undocumented fields")
	fs.Float64Var(&x.TranscriptRewriteRatio, "fault-rewrite-transcript", 0, "share of live transcript snapshots whose last word is cut shorter")
	fs.Float64Var(&x.DuplicateWebhookRatio, "fault-duplicate-webhook", 0, "share of webhooks delivered twice")
	fs.Float64Var(&x.ReorderWebhookRatio, "fault-reorder-webhook", 0, "share of webhooks sent after the call's next webhook")
	fs.Float64Var(&x.LateWebhookRatio, "fault-late-webhook", 0, "share of webhooks signed --fault-late-webhook-age in the past")
	fs.DurationVar(&x.LateWebhookAge, "fault-late-webhook-age", sim.DefaultLateWebhookAge, "age of the signature of a late webhook")
	fs.Float64Var(&x.UnknownEventRatio, "fault-unknown-event", 0, "share of call_started and transcript_updated webhooks followed by a transfer_started or future_event webhook")
	fs.Func("fault-webhook-events", "comma-separated `events` the webhook faults apply to (default: all)", func(v string) error {
		x.WebhookFaultEvents = nil
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				x.WebhookFaultEvents = append(x.WebhookFaultEvents, e)
			}
		}
		return nil
	})
}

func runSim(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)

	var f simFlags
	f.register(fs, 5, 1)
	addr := fs.String("addr", "127.0.0.1:9090", "listen `address` of the simulated provider API")
	fs.StringVar(&f.cfg.WebhookURL, "webhook-url", "", "`URL` that receives the signed webhooks, e.g. http://127.0.0.1:8080/webhooks/retell")
	fs.StringVar(&f.cfg.APIKey, "api-key", "", "API `key` the simulator accepts and signs webhooks with (default: RETELL_API_KEY)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	fs.IntVar(&f.cfg.RequestLog, "request-log", 0, "get-call and stop-call requests kept per call for the debug routes (0: none)")
	fs.BoolVar(&f.cfg.DebugRoutes, "debug-routes", false, "serve the simulator-only debugging routes /_sim/calls, /_sim/delivered and /_sim/stats")
	keepServing := fs.Bool("keep-serving", false, "keep serving the API after the last of --total-calls finished, until interrupted")
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}
	if f.cfg.APIKey == "" {
		f.cfg.APIKey = getenv("RETELL_API_KEY")
	}
	if f.cfg.APIKey == "" {
		return errors.New("the simulator needs an API key: pass --api-key or set RETELL_API_KEY")
	}
	if !app.IsLoopback(*addr) {
		return fmt.Errorf("refusing to listen on %q: the simulator serves only on a loopback address", *addr)
	}

	logger, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		return err
	}
	f.cfg.Logger = logger

	s, err := sim.New(f.cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}

	fmt.Fprintf(stdout, "simulated provider API at http://%s (webhooks to %q)\n", ln.Addr(), f.cfg.WebhookURL)
	return serveSimAPI(ctx, s, ln, *keepServing)
}

// serveSim serves the simulator's API on ln and runs its calls until ctx is
// done or the simulator finishes its TotalCalls.
func serveSim(ctx context.Context, s *sim.Sim, ln net.Listener) error {
	return serveSimAPI(ctx, s, ln, false)
}

// serveSimAPI is serveSim. With keepServing, the API stays up after the
// simulator finished its calls, until ctx is done, so that a test can still
// read the finished calls.
func serveSimAPI(ctx context.Context, s *sim.Sim, ln net.Listener, keepServing bool) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}

	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	}()

	runErr := s.Run(ctx)
	if keepServing && runErr == nil {
		<-ctx.Done()
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	wg.Wait()

	select {
	case err := <-serveErr:
		return fmt.Errorf("simulator http server: %w", err)
	default:
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return nil
}
