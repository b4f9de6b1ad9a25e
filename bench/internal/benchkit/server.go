package benchkit

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ServeFlags are the settings of the `callcat serve` child that every
// benchmark program accepts.
type ServeFlags struct {
	Binary      string
	AdminToken  string
	ExtraArgs   string
	MaxInFlight int
	RPS         float64
}

// Register defines the flags on fs.
func (f *ServeFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Binary, "callcat", "./callcat", "path of the callcat `binary` to benchmark (go build -o callcat ./cmd/callcat)")
	fs.StringVar(&f.AdminToken, "admin-token", "", "admin `token` to pass to serve and to send to /metrics and /debug/pprof (empty: none)")
	fs.StringVar(&f.ExtraArgs, "serve-args", "", "extra `flags` for callcat serve, space-separated, e.g. \"--pprof --store postgres://...\"")
	fs.IntVar(&f.MaxInFlight, "provider-max-in-flight", 32, "serve's --provider-max-in-flight")
	fs.Float64Var(&f.RPS, "provider-rps", 5000, "serve's --provider-rps")
}

// Serve is a running `callcat serve` child.
type Serve struct {
	*Process
	Addr  string
	token string
}

// URL returns the base URL of the server.
func (s *Serve) URL() string { return "http://" + s.Addr }

// Metrics scrapes the server's /metrics.
func (s *Serve) Metrics(ctx context.Context) (Metrics, error) {
	return Scrape(ctx, s.URL()+"/metrics", s.token)
}

// StartServe runs callcat serve on a free loopback port with its data in
// dir, polling providerURL, and waits until /healthz answers. maxTracked and
// maxSSE set --max-tracked and --max-sse-clients.
func StartServe(ctx context.Context, f ServeFlags, dir, apiKey, providerURL string, maxTracked, maxSSE int) (*Serve, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"serve",
		"--addr", addr,
		"--data-dir", filepath.Join(dir, "data"),
		"--retell-base-url", providerURL,
		"--provider-rps", strconv.FormatFloat(f.RPS, 'f', -1, 64),
		"--provider-max-in-flight", strconv.Itoa(f.MaxInFlight),
		"--max-tracked", strconv.Itoa(maxTracked),
		"--max-sse-clients", strconv.Itoa(maxSSE),
		"--log-level", "warn",
	}
	if f.AdminToken != "" {
		args = append(args, "--admin-token", f.AdminToken)
	}
	args = append(args, strings.Fields(f.ExtraArgs)...)

	p, err := Start("callcat serve", f.Binary, args, []string{"RETELL_API_KEY=" + apiKey}, filepath.Join(dir, "serve.log"))
	if err != nil {
		return nil, err
	}
	s := &Serve{Process: p, Addr: addr, token: f.AdminToken}
	if err := WaitHTTP(ctx, s.URL()+"/healthz", p, 30*time.Second); err != nil {
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("start callcat serve: %w", err)
	}
	return s, nil
}
