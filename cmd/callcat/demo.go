package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/memwatch"
	"github.com/callcat/callcat/internal/sim"
)

// tokenNote returns a line on how to reach an API that requires tokens, or "".
func tokenNote(cfg app.Config) string {
	if len(cfg.Security.APITokens) == 0 {
		return ""
	}
	return "  The API requires a token: send Authorization: Bearer <token>; the dashboard prompts for one.\n\n"
}

func runDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)

	var svc serviceFlags
	svc.register(fs, "callcat-demo-data")
	var sf simFlags
	// The demo plays calls at twice real time so a newcomer watches whole calls
	// start, grow and end within the first minute.
	sf.register(fs, 5, 2)
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}
	if err := svc.resolve(); err != nil {
		return err
	}

	logger, err := newLogger(stderr, svc.logLevel, svc.logFormat)
	if err != nil {
		return err
	}

	// The demo's provider and key exist only in this process.
	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generate demo key: %w", err)
	}
	apiKey := "key_demo_" + hex.EncodeToString(key)

	if !app.IsLoopback(svc.cfg.Addr) {
		return fmt.Errorf("refusing to listen on %q: the demo serves only on a loopback address such as 127.0.0.1:8080", svc.cfg.Addr)
	}
	serviceLn, err := net.Listen("tcp", svc.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", svc.cfg.Addr, err)
	}
	simLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		serviceLn.Close()
		return fmt.Errorf("listen for the simulated provider: %w", err)
	}
	serviceURL := "http://" + serviceLn.Addr().String()

	simCfg := sf.cfg
	simCfg.APIKey = apiKey
	simCfg.WebhookURL = serviceURL + "/webhooks/retell"
	simCfg.Logger = logger.With("component", "sim")
	s, err := sim.New(simCfg)
	if err != nil {
		serviceLn.Close()
		simLn.Close()
		return err
	}

	memwatch.ConfigureMemoryLimit(logger, memwatch.DefaultMemoryLimitRatio)
	cfg := svc.cfg
	cfg.Listener = serviceLn
	cfg.RetellAPIKey = apiKey
	cfg.RetellBaseURL = "http://" + simLn.Addr().String()
	cfg.Logger = logger

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	simErr := make(chan error, 1)
	simStarted := false
	ready := func(*app.Service) {
		simStarted = true
		fmt.Fprintf(stdout, `callcat demo: %d simulated calls at a time, speed %gx, store in %s

  dashboard:   %[4]s/
  API:         %[4]s/v1/calls?status=live
  one call:    %[4]s/v1/calls/{call_id}
  transcript:  %[4]s/v1/calls/{call_id}/transcript?format=text
  live stream: curl -N %[4]s/v1/calls/{call_id}/stream
  metrics:     %[4]s/metrics
  memory:      %[4]s/debug/memory

%[5]sPress Ctrl-C to stop.
`, simCfg.Calls, simCfg.Speed, cfg.DataDir, serviceURL, tokenNote(cfg))

		wg.Add(1)
		go func() {
			defer wg.Done()
			simErr <- serveSim(ctx, s, simLn)
		}()
	}

	err = app.Serve(ctx, cfg, ready)
	cancel()
	wg.Wait()
	if !simStarted {
		simLn.Close()
	}
	if err != nil {
		return err
	}
	select {
	case err := <-simErr:
		return err
	default:
		return nil
	}
}
