package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/httpapi"
	"github.com/callcat/callcat/internal/memwatch"
	"github.com/callcat/callcat/internal/tracker"
)

// maxTokenFileBytes bounds a token file.
const maxTokenFileBytes = 1 << 20

// serviceFlags are the flags serve and demo share.
type serviceFlags struct {
	cfg       app.Config
	logLevel  string
	logFormat string
	retention string

	// Raw values that resolve turns into cfg.Security.
	apiTokens         string
	apiTokensFile     string
	adminToken        string
	adminTokenFile    string
	corsOrigins       string
	webhookAllowCIDRs string
	trustedProxies    string
	maskPhoneNumbers  bool
	dashboard         bool
}

// register defines the service flags on fs with their defaults.
func (f *serviceFlags) register(fs *flag.FlagSet, defaultDataDir string) {
	c := &f.cfg
	fs.StringVar(&c.Addr, "addr", app.DefaultAddr, "listen `address` (host:port); an address other than loopback requires API tokens")
	fs.StringVar(&c.DataDir, "data-dir", defaultDataDir, "`directory` for the SQLite database")
	fs.StringVar(&f.retention, "retention", "0", "delete ended calls with their transcripts and events this long after their last change, e.g. 90d or 36h; 0 keeps them")
	fs.StringVar(&c.Store, "store", "", "PostgreSQL `URL` (postgres://user@host:5432/db) shared by several replicas; empty uses SQLite in --data-dir")
	fs.StringVar(&c.ReplicaID, "replica-id", "", "unique `name` of this replica in leases (default: host name, process id and random bits)")
	fs.DurationVar(&c.Tracker.LeaseTTL, "lease-ttl", tracker.DefaultLeaseTTL, "how long a replica's lease of a live call lasts without renewal (PostgreSQL only)")
	fs.DurationVar(&c.Tracker.LeaseRenewInterval, "lease-renew-interval", tracker.DefaultLeaseRenewInterval, "how often a replica renews its leases and adopts calls of dead replicas (PostgreSQL only)")

	t := &c.Tracker
	fs.DurationVar(&t.PollInterval, "poll-interval", tracker.DefaultPollInterval, "get-call period of a live call while no push webhook arrived within it")
	fs.DurationVar(&t.ReconcileInterval, "reconcile-interval", tracker.DefaultReconcileInterval, "get-call period of a live call while push webhooks flow")
	fs.IntVar(&t.MaxTracked, "max-tracked", tracker.DefaultMaxTracked, "maximum live calls tracked in memory")
	fs.DurationVar(&t.MaxTrackingDuration, "max-tracking-duration", tracker.DefaultMaxTrackingDuration, "stop polling a call this long after tracking started")
	fs.IntVar(&t.FinalFetchAttempts, "final-fetch-attempts", tracker.DefaultFinalFetchAttempts, "get-call attempts for an ended call's final transcript before it keeps what its webhooks stored")

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

	sec := &c.Security
	fs.StringVar(&f.apiTokens, "api-tokens", "", "comma-separated bearer `tokens` accepted on /v1/*; prefer --api-tokens-file or CALLCAT_API_TOKENS, because other users can read command lines")
	fs.StringVar(&f.apiTokensFile, "api-tokens-file", "", "`file` with one API token per line; blank lines and lines starting with # are skipped")
	fs.StringVar(&f.adminToken, "admin-token", "", "bearer `token` for /metrics and /debug/*; without it those routes are closed once API tokens are set")
	fs.StringVar(&f.adminTokenFile, "admin-token-file", "", "`file` holding the admin token on its one line that is not blank or a # comment")
	fs.BoolVar(&sec.PublicMetrics, "public-metrics", false, "serve /metrics without the admin token")
	fs.BoolVar(&sec.Pprof, "pprof", false, "serve /debug/pprof/ to the admin token (requires --admin-token)")
	fs.StringVar(&f.corsOrigins, "cors-origins", "", "comma-separated `origins` (scheme://host[:port]) whose pages may call /v1/*; empty sends no CORS headers")
	fs.StringVar(&f.webhookAllowCIDRs, "webhook-allow-cidrs", "", "comma-separated `networks` (CIDR or address) allowed to send webhooks; empty allows any")
	fs.StringVar(&f.trustedProxies, "trusted-proxies", "", "comma-separated `networks` of reverse proxies whose X-Forwarded-For is believed by --webhook-allow-cidrs")
	fs.BoolVar(&f.maskPhoneNumbers, "mask-phone-numbers", true, "mask phone numbers in logs, for example +1555•••2310")
	fs.BoolVar(&f.dashboard, "dashboard", true, "serve the dashboard at /")

	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log `format`: text or json")
}

// resolve reads the token files and parses the lists into cfg.Security.
// Its errors never contain a token.
func (f *serviceFlags) resolve() error {
	retention, err := app.ParseRetention(f.retention)
	if err != nil {
		return fmt.Errorf("invalid --retention: %w", err)
	}
	f.cfg.Retention.Calls = retention

	sec := &f.cfg.Security
	sec.APITokens = splitList(f.apiTokens)
	if f.apiTokensFile != "" {
		tokens, err := readTokenFile(f.apiTokensFile)
		if err != nil {
			return fmt.Errorf("read --api-tokens-file: %w", err)
		}
		if len(tokens) == 0 {
			return fmt.Errorf("--api-tokens-file %q contains no token: write one token per line", f.apiTokensFile)
		}
		sec.APITokens = append(sec.APITokens, tokens...)
	}

	sec.AdminToken = strings.TrimSpace(f.adminToken)
	if f.adminTokenFile != "" {
		if sec.AdminToken != "" {
			return errors.New("set --admin-token or --admin-token-file, not both")
		}
		tokens, err := readTokenFile(f.adminTokenFile)
		if err != nil {
			return fmt.Errorf("read --admin-token-file: %w", err)
		}
		if len(tokens) != 1 {
			return fmt.Errorf("--admin-token-file %q contains %d tokens; it must contain exactly 1", f.adminTokenFile, len(tokens))
		}
		sec.AdminToken = tokens[0]
	}

	sec.CORSOrigins = splitList(f.corsOrigins)
	if sec.WebhookAllowCIDRs, err = parsePrefixes("webhook-allow-cidrs", f.webhookAllowCIDRs); err != nil {
		return err
	}
	if sec.TrustedProxies, err = parsePrefixes("trusted-proxies", f.trustedProxies); err != nil {
		return err
	}
	sec.LogPhoneNumbers = !f.maskPhoneNumbers
	f.cfg.DisableDashboard = !f.dashboard
	return nil
}

// splitList splits a comma-separated flag value, dropping blank items.
func splitList(v string) []string {
	var items []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// readTokenFile returns the tokens of a file: one per line, without blank
// lines and lines starting with #.
func readTokenFile(path string) ([]string, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, maxTokenFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxTokenFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxTokenFileBytes)
	}

	var tokens []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxTokenFileBytes)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		tokens = append(tokens, line)
	}
	return tokens, sc.Err()
}

// parsePrefixes parses a comma-separated list of CIDRs; a bare address
// stands for itself alone.
func parsePrefixes(flagName, v string) ([]netip.Prefix, error) {
	var prefixes []netip.Prefix
	for _, item := range splitList(v) {
		if p, err := netip.ParsePrefix(item); err == nil {
			prefixes = append(prefixes, p.Masked())
			continue
		}
		addr, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("invalid --%s entry %q: use a CIDR such as 203.0.113.0/24 or an address", flagName, item)
		}
		addr = addr.Unmap()
		prefixes = append(prefixes, netip.PrefixFrom(addr, addr.BitLen()))
	}
	return prefixes, nil
}

// dashboardURL returns the URL a browser on this machine opens for the
// dashboard of a service bound to addr.
func dashboardURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/"
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
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
	if err := f.resolve(); err != nil {
		return err
	}

	logger, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	f.cfg.Logger = logger
	f.cfg.RetellAPIKey = getenv("RETELL_API_KEY")
	memwatch.ConfigureMemoryLimit(logger, memwatch.DefaultMemoryLimitRatio)

	ready := func(svc *app.Service) {
		if !f.cfg.DisableDashboard {
			fmt.Fprintf(stdout, "callcat: dashboard at %s\n", dashboardURL(svc.Addr))
		}
	}
	return app.Serve(ctx, f.cfg, ready)
}
