package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/httpapi"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/sim"
)

// Distinctive secrets for TestSecretsNeverLeak; the provider key is
// fixtureKey.
const (
	leakAPIToken   = "apitok-LEAKCHECK-7Qm2Vx9Lc4"
	leakAPIToken2  = "apitok-LEAKCHECK-second-3Rf8"
	leakAdminToken = "admintok-LEAKCHECK-5Wd1Kp6Zs"
	leakWrongToken = "wrongtok-LEAKCHECK-8Tn4Hb2Yg"
)

// syncBuffer is an unbounded log sink for a test that reads it whole.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// leakProbe sends requests and keeps every response header and body, to be
// searched for secrets afterwards.
type leakProbe struct {
	t          *testing.T
	base       string
	responses  bytes.Buffer
	signatures []string // X-Retell-Signature values sent
	tickets    []string // issued stream tickets
}

func (p *leakProbe) send(method, path, token string, body []byte, header http.Header) int {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, bytes.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if sig := req.Header.Get(retell.SignatureHeader); sig != "" {
		p.signatures = append(p.signatures, sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()

	// Streams that stay open are read for a moment, then cut.
	var data []byte
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		data = readFor(resp.Body, 300*time.Millisecond)
	} else {
		data, _ = io.ReadAll(resp.Body)
	}
	resp.Header.Write(&p.responses)
	p.responses.Write(data)
	p.responses.WriteString("\n")
	return resp.StatusCode
}

// readFor reads r until it ends or d passes.
func readFor(r io.ReadCloser, d time.Duration) []byte {
	var buf syncBuffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(&buf, r)
	}()
	select {
	case <-done:
	case <-time.After(d):
		r.Close()
		<-done
	}
	return []byte(buf.String())
}

// issueTicket requests a stream ticket. Its response is kept apart, because
// the ticket itself is the point of that response.
func (p *leakProbe) issueTicket(callID string) string {
	p.t.Helper()
	body := `{"call_id":"` + callID + `"}`
	req, _ := http.NewRequest(http.MethodPost, p.base+"/v1/stream-tickets", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+leakAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tk); err != nil || tk.Ticket == "" {
		p.t.Fatalf("issue ticket: status %d, err %v", resp.StatusCode, err)
	}
	p.tickets = append(p.tickets, tk.Ticket)
	return tk.Ticket
}

// TestSecretsNeverLeak configures distinctive secrets, drives every route
// with every kind of credential and with failing input, and then searches
// all logs and responses for the secrets, the signatures sent and the
// tickets issued.
func TestSecretsNeverLeak(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	security := httpapi.Security{
		APITokens:         []string{leakAPIToken, leakAPIToken2},
		AdminToken:        leakAdminToken,
		Pprof:             true,
		CORSOrigins:       []string{"https://ops.example.com"},
		WebhookAllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		TrustedProxies:    []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	}
	sm := startSimulation(t, sim.Config{
		Calls: 2, TotalCalls: 2, CallLength: 20 * time.Second, Speed: 20,
		PushTranscripts: true, AnalysisDelay: time.Second, Seed: 11,
	}, app.Config{Logger: logger, Security: security})
	sm.run(t, time.Minute)
	waitFor(t, 15*time.Second, "calls to leave tracking", func() bool { return sm.svc.Tracker.Tracked() == 0 })
	callID := sm.sim.Calls()[0].ID

	p := &leakProbe{t: t, base: sm.svc.URL()}
	tokens := []string{"", leakWrongToken, leakAPIToken, leakAdminToken}
	routes := []struct{ method, path string }{
		{"GET", "/v1/calls?status=all"},
		{"GET", "/v1/calls/" + callID},
		{"GET", "/v1/calls/" + callID + "/transcript?format=text"},
		{"GET", "/v1/calls/" + callID + "/transcript"},
		{"GET", "/v1/calls/" + callID + "/stream"},
		{"GET", "/v1/calls/no_such_call"},
		{"GET", "/v1/calls?status=bogus"},
		{"GET", "/v1/stream"},
		{"GET", "/v1/health"},
		{"GET", "/metrics"},
		{"GET", "/debug/memory"},
		{"GET", "/debug/pprof/"},
		{"GET", "/debug/pprof/cmdline"},
		{"GET", "/debug/pprof/goroutine?debug=2"},
		{"GET", "/healthz"},
		{"GET", "/readyz"},
		{"GET", "/"},
		{"GET", "/assets/app.js"},
		{"DELETE", "/v1/calls"},
		{"GET", "/nowhere"},
	}
	for _, tok := range tokens {
		for _, r := range routes {
			p.send(r.method, r.path, tok, nil, nil)
		}
		p.send("POST", "/v1/stream-tickets", tok, []byte("not json"), nil)
	}
	p.send("GET", "/v1/calls", "", nil, http.Header{"Authorization": {"Basic " + leakAPIToken}})
	p.send("OPTIONS", "/v1/calls", "", nil, http.Header{"Origin": {"https://ops.example.com"}, "Access-Control-Request-Method": {"GET"}})

	// The cmdline profile would show the command line, which may hold
	// tokens, so it must not exist.
	if got := p.send("GET", "/debug/pprof/cmdline", leakAdminToken, nil, nil); got != http.StatusNotFound {
		t.Errorf("/debug/pprof/cmdline status=%d, want 404", got)
	}

	// Stream tickets: valid, tampered, on the wrong stream, in the query of
	// other routes.
	ticket := p.issueTicket(callID)
	lifecycleTicket := p.issueTicket("")
	tampered := ticket[:len(ticket)-2] + "xx"
	for _, tk := range []string{ticket, tampered, lifecycleTicket} {
		q := "?ticket=" + url.QueryEscape(tk)
		p.send("GET", "/v1/calls/"+callID+"/stream"+q, "", nil, nil)
		p.send("GET", "/v1/stream"+q, "", nil, nil)
		p.send("GET", "/v1/calls"+q, "", nil, nil)
		p.send("GET", "/debug/memory"+q, "", nil, nil)
	}

	// Webhooks: accepted, bad signatures, a forbidden source, bad bodies.
	body := readFixture(t, "outbound/webhook_1_call_started.json")
	now := time.Now()
	sigHeader := func(sig string) http.Header { return http.Header{retell.SignatureHeader: {sig}} }
	p.send("POST", "/webhooks/retell", "", body, sigHeader(retell.Sign(body, fixtureKey, now)))
	p.send("POST", "/webhooks/retell", "", body, sigHeader(retell.Sign(body, "key_wrong_LEAKCHECK", now)))
	p.send("POST", "/webhooks/retell", "", body, sigHeader(retell.Sign(body, fixtureKey, now.Add(-time.Hour))))
	p.send("POST", "/webhooks/retell", "", append([]byte(" "), body...), sigHeader(retell.Sign(body, fixtureKey, now)))
	p.send("POST", "/webhooks/retell", leakAPIToken, body, sigHeader("v=1,d="+strings.Repeat("ab", 32)))
	p.send("POST", "/webhooks/retell", "", []byte(`{"event":`), sigHeader(retell.Sign([]byte(`{"event":`), fixtureKey, now)))
	forbidden := sigHeader(retell.Sign(body, fixtureKey, now))
	forbidden.Set("X-Forwarded-For", "198.51.100.9")
	if got := p.send("POST", "/webhooks/retell", "", body, forbidden); got != http.StatusForbidden {
		t.Errorf("webhook from outside the allowlist: status %d, want 403", got)
	}

	// A provider that rejects the key makes the tracker log its failure.
	rejecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write(readFixture(t, "http_errors/401.json"))
	}))
	defer rejecting.Close()
	other := startService(t, app.Config{RetellBaseURL: rejecting.URL, Logger: logger, Security: security})
	po := &leakProbe{t: t, base: other.URL()}
	po.send("POST", "/webhooks/retell", "", body, sigHeader(retell.Sign(body, fixtureKey, time.Now())))
	waitFor(t, 10*time.Second, "the provider's rejection in the log", func() bool {
		return strings.Contains(logs.String(), "provider rejected the API key")
	})
	p.signatures = append(p.signatures, po.signatures...)
	p.responses.Write(po.responses.Bytes())

	// The search.
	logText := logs.String()
	respText := p.responses.String()
	secrets := map[string]string{
		"provider key":     fixtureKey,
		"API token":        leakAPIToken,
		"second API token": leakAPIToken2,
		"admin token":      leakAdminToken,
		"wrong token":      leakWrongToken,
	}
	for i, sig := range p.signatures {
		secrets["signature "+string(rune('A'+i))] = sig
	}
	for name, secret := range secrets {
		if strings.Contains(logText, secret) {
			t.Errorf("logs contain the %s", name)
		}
		if strings.Contains(respText, secret) {
			t.Errorf("responses contain the %s", name)
		}
	}
	for _, tk := range append(p.tickets, tampered) {
		if strings.Contains(logText, tk) {
			t.Errorf("logs contain a stream ticket")
		}
	}
	if strings.Contains(logText, "ticket=") {
		t.Errorf("logs contain a query string with a ticket")
	}

	// Phone numbers are masked by default.
	if m := regexp.MustCompile(`\+1555\d{7}`).FindString(logText); m != "" {
		t.Errorf("logs contain the full phone number %s", m)
	}
	if !strings.Contains(logText, "•••") {
		t.Errorf("logs show no masked phone number; the check above proves nothing")
	}

	if t.Failed() {
		t.Logf("log:\n%s", logText)
	}
}

func TestServeNonLoopbackNeedsTokens(t *testing.T) {
	err := app.Serve(t.Context(), app.Config{Addr: "0.0.0.0:0", DataDir: t.TempDir(), RetellAPIKey: fixtureKey}, nil)
	if err == nil || !strings.Contains(err.Error(), "without API tokens") || !strings.Contains(err.Error(), "--api-tokens") {
		t.Fatalf("err=%v, want a refusal that names the missing API tokens", err)
	}
}
