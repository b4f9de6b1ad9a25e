package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/httpapi"
	"github.com/callcat/callcat/internal/memwatch"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/store/sqlite"
	"github.com/callcat/callcat/internal/stream"
	"github.com/callcat/callcat/internal/tracker"
	"github.com/callcat/callcat/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Secrets of the test server. Each is distinctive so that a test can search
// logs and responses for it.
const (
	webhookKey = "key_test_httpapi_9d41c07be2a5f3168e0b"
	apiToken   = "apitok-7Hq2LxW9vR4mZc8N"
	apiToken2  = "apitok-second-0Pk3Yt6Ue1Ds"
	adminToken = "admintok-Bv5Qn8Rw2Zx7Lp4J"
	wrongToken = "wrongtok-Gh6Jk9Mn3Pq1Rs5T"
)

const fixtureDir = "../../testdata/retell"

// outboundCallID is the call of the fixtures in testdata/retell/outbound.
const outboundCallID = "call_f0b26536b5a0b2b5c0ec60985f1"

// testServer is the real API on a loopback port with a SQLite store in a
// temporary directory, a hub and a tracker that never polls.
type testServer struct {
	URL     string
	Addr    string       // host:port of the listener
	Client  *http.Client // http.DefaultClient, or with http2 a client that trusts the test certificate
	Store   *sqlite.DB
	Hub     *stream.Hub
	Reg     *prometheus.Registry
	Memory  *memwatch.Watcher
	Streams *httpapi.StreamCloser
	Logs    *logBuffer
}

// serverOptions adjust a test server before it starts.
type serverOptions struct {
	config   func(*httpapi.Config)
	hub      stream.Config
	listener func(net.Listener) net.Listener
	http2    bool // serve HTTPS with HTTP/2, whose responses cannot be hijacked
}

func startServer(t *testing.T, configure func(*httpapi.Config)) *testServer {
	t.Helper()
	return startServerWith(t, serverOptions{config: configure})
}

func startServerWith(t *testing.T, opts serverOptions) *testServer {
	t.Helper()

	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()

	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "callcat.db"), sqlite.Options{Logger: logger, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	hubCfg := opts.hub
	hubCfg.Registerer = reg
	hubCfg.Logger = logger
	hub, err := stream.NewHub(hubCfg)
	if err != nil {
		t.Fatal(err)
	}
	// The tracker never runs, so it stores webhooks and never polls.
	tr, err := tracker.New(db, hub, nil, tracker.Config{Logger: logger, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := memwatch.New(memwatch.Config{Registerer: reg, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}

	streams := &httpapi.StreamCloser{}
	cfg := httpapi.Config{
		Store:              db,
		Tracker:            tr,
		Hub:                hub,
		WebhookKey:         webhookKey,
		HeartbeatInterval:  time.Second,
		StreamWriteTimeout: 5 * time.Second,
		Metrics:            promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		Memory:             mem,
		MemoryReport:       mem.Report,
		Gatherer:           reg,
		Assets:             web.FS,
		StreamCloser:       streams,
		Logger:             logger,
		Registerer:         reg,
	}
	if opts.config != nil {
		opts.config(&cfg)
	}
	handler, err := httpapi.NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}

	srv := httptest.NewUnstartedServer(handler)
	if opts.listener != nil {
		srv.Listener = opts.listener(srv.Listener)
	}
	if opts.http2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(func() {
		hub.Close() // ends open streams, so Close does not wait for them
		srv.Close()
		// Close does not wait for the streams that took over their
		// connection.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := streams.Shutdown(ctx); err != nil {
			t.Errorf("streams still open after 10 s: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})

	client := http.DefaultClient
	if opts.http2 {
		client = srv.Client()
	}
	return &testServer{URL: srv.URL, Addr: srv.Listener.Addr().String(), Client: client, Store: db, Hub: hub, Reg: reg, Memory: mem, Streams: streams, Logs: logs}
}

// withTokens configures both kinds of token.
func withTokens(cfg *httpapi.Config) {
	cfg.Security.APITokens = []string{apiToken, apiToken2}
	cfg.Security.AdminToken = adminToken
}

// logBuffer collects log output for inspection.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// postFixture posts a fixture webhook signed with the server's key now and
// returns the status.
func postFixture(t *testing.T, baseURL, name string) int {
	t.Helper()
	return postWebhook(t, baseURL, readFixture(t, name), retell.Sign(readFixture(t, name), webhookKey, time.Now()), nil)
}

func postWebhook(t *testing.T, baseURL string, body []byte, signature string, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, baseURL+"/webhooks/retell", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	if signature != "" {
		req.Header.Set(retell.SignatureHeader, signature)
	}
	resp := do(t, req)
	return resp.StatusCode
}

// response is a finished HTTP exchange.
type response struct {
	StatusCode int
	Header     http.Header
	Body       string
}

// do sends req and reads the whole response.
func do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return response{StatusCode: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

// get sends GET path with an optional bearer token.
func get(t *testing.T, url, token string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	ID    string
	Event string
	Data  string
}

// sseClient reads one SSE response in a goroutine.
type sseClient struct {
	resp   *http.Response
	events chan sseEvent // closed when the response ends
	cancel context.CancelFunc
	done   chan struct{}
}

// openSSE sends req and, on 200, reads its events until the response ends or
// the test ends. Other statuses fail the test.
func openSSE(t *testing.T, req *http.Request) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(req.Context())
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		cancel()
		t.Fatalf("open stream %s: %v", req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("open stream %s: status %d, body %s", req.URL.Path, resp.StatusCode, body)
	}

	c := &sseClient{resp: resp, events: make(chan sseEvent, 1024), cancel: cancel, done: make(chan struct{})}
	go c.read()
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) read() {
	defer close(c.done)
	defer close(c.events)
	sc := bufio.NewScanner(c.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Event != "" {
				c.events <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.Event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.Data = line[6:]
		}
	}
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
	<-c.done
}

// next returns the next event, or false when the stream ended. It fails the
// test after timeout.
func (c *sseClient) next(t *testing.T, timeout time.Duration) (sseEvent, bool) {
	t.Helper()
	select {
	case ev, ok := <-c.events:
		return ev, ok
	case <-time.After(timeout):
		t.Fatalf("no event within %v", timeout)
		return sseEvent{}, false
	}
}

// nextOf skips events until one named name arrives and returns it.
func (c *sseClient) nextOf(t *testing.T, name string, timeout time.Duration) sseEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev, ok := c.next(t, time.Until(deadline))
		if !ok {
			t.Fatalf("stream ended while waiting for a %s event", name)
		}
		if ev.Event == name {
			return ev
		}
	}
}

// waitEnd waits until the server ends the response.
func (c *sseClient) waitEnd(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-c.events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("stream still open after %v", timeout)
		}
	}
}

func streamRequest(t *testing.T, url, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}
