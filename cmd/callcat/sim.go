package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
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
	fs.Int64Var(&c.Seed, "seed", 1, "seed of the simulated conversations")
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
	return serveSim(ctx, s, ln)
}

// serveSim serves the simulator's API on ln and runs its calls until ctx is
// done or the simulator finishes its TotalCalls.
func serveSim(ctx context.Context, s *sim.Sim, ln net.Listener) error {
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
