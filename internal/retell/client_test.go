package retell_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
)

// testAPIKey must never show up in an error string.
const testAPIKey = "key_test_secret_5e0c9a7b31d24f68"

// newServer starts a loopback server that counts the TCP connections it
// accepts.
func newServer(t *testing.T, handler http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// newClient builds a client for baseURL with no rate limit unless cfg sets
// one. The client is closed before the server when the test ends.
func newClient(t *testing.T, baseURL string, cfg retell.ClientConfig) *retell.Client {
	t.Helper()
	cfg.BaseURL = baseURL
	cfg.APIKey = testAPIKey
	if cfg.RequestsPerSecond == 0 {
		cfg.RequestsPerSecond = math.Inf(1)
	}
	c, err := retell.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// serveFixture responds to every request with a fixture body.
func serveFixture(t *testing.T, status int, name string) http.HandlerFunc {
	body := readFixture(t, name)
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}
}

// checkNoKey fails when err's text contains the API key.
func checkNoKey(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testAPIKey) {
		t.Fatalf("error contains the API key: %v", err)
	}
}

func TestClientGetCall(t *testing.T) {
	var got *http.Request
	handler := serveFixture(t, http.StatusOK, "outbound/get_call_5_ended.json")
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		handler(w, r)
	}))
	c := newClient(t, srv.URL, retell.ClientConfig{})

	call, err := c.GetCall(context.Background(), "call_f0b26536b5a0b2b5c0ec60985f1")
	if err != nil {
		t.Fatalf("GetCall: %v", err)
	}

	if got.Method != http.MethodGet {
		t.Fatalf("method=%s, want GET", got.Method)
	}
	if got.URL.Path != "/v2/get-call/call_f0b26536b5a0b2b5c0ec60985f1" {
		t.Fatalf("path=%s, want /v2/get-call/call_f0b26536b5a0b2b5c0ec60985f1", got.URL.Path)
	}
	if h := got.Header.Get("Authorization"); h != "Bearer "+testAPIKey {
		t.Fatalf("Authorization=%q, want the bearer key", h)
	}
	if h := got.Header.Get("User-Agent"); h != "callcat/dev" {
		t.Fatalf("User-Agent=%q, want callcat/dev", h)
	}
	if h := got.Header.Get("Accept"); h != "application/json" {
		t.Fatalf("Accept=%q, want application/json", h)
	}
	if h := got.Header.Get("Content-Type"); h != "" {
		t.Fatalf("Content-Type=%q, want none on a GET", h)
	}

	if call.CallID != "call_f0b26536b5a0b2b5c0ec60985f1" {
		t.Fatalf("call_id=%q", call.CallID)
	}
	if call.CallStatus != "ended" {
		t.Fatalf("call_status=%q, want ended", call.CallStatus)
	}
	if utterances, _ := call.Utterances(); len(utterances) != 10 {
		t.Fatalf("utterances=%d, want 10", len(utterances))
	}
}

func TestClientEscapesCallID(t *testing.T) {
	var paths []string
	var mu sync.Mutex
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.EscapedPath())
		mu.Unlock()
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		_, _ = io.WriteString(w, `{"call_id":"a/b c?d"}`)
	}))
	c := newClient(t, srv.URL+"/retell/", retell.ClientConfig{})

	call, err := c.GetCall(context.Background(), "a/b c?d")
	if err != nil {
		t.Fatalf("GetCall: %v", err)
	}
	if call.CallID != "a/b c?d" {
		t.Fatalf("call_id=%q, want a/b c?d", call.CallID)
	}
	if err := c.StopCall(context.Background(), "a/b c?d"); err != nil {
		t.Fatalf("StopCall: %v", err)
	}

	want := []string{"/retell/v2/get-call/a%2Fb%20c%3Fd", "/retell/v2/stop-call/a%2Fb%20c%3Fd"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Fatalf("paths (-want +got):\n%s", diff)
	}
}

func TestClientAPIErrors(t *testing.T) {
	retryAt := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	tests := []struct {
		name       string
		status     int
		retryAfter string
		wantRetry  func(time.Duration) bool
		retryable  bool
	}{
		{"401", http.StatusUnauthorized, "", isZero, false},
		{"422", http.StatusUnprocessableEntity, "", isZero, false},
		{"429", http.StatusTooManyRequests, "7", func(d time.Duration) bool { return d == 7*time.Second }, true},
		{"429", http.StatusTooManyRequests, retryAt, func(d time.Duration) bool { return d > 58*time.Minute && d <= time.Hour }, true},
		{"500", http.StatusInternalServerError, "", isZero, true},
	}
	for _, tt := range tests {
		t.Run(tt.name+"_"+tt.retryAfter, func(t *testing.T) {
			body := readFixture(t, "http_errors/"+tt.name+".json")
			var fixture struct {
				Message string `json:"message"`
			}
			if err := json.Unmarshal(body, &fixture); err != nil || fixture.Message == "" {
				t.Fatalf("fixture message=%q err=%v", fixture.Message, err)
			}

			srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write(body)
			}))
			c := newClient(t, srv.URL, retell.ClientConfig{})

			_, err := c.GetCall(context.Background(), "call_x")
			var apiErr *retell.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("err=%v (%T), want *APIError", err, err)
			}
			if apiErr.Endpoint != retell.EndpointGetCall {
				t.Fatalf("Endpoint=%q, want %q", apiErr.Endpoint, retell.EndpointGetCall)
			}
			if apiErr.StatusCode != tt.status {
				t.Fatalf("StatusCode=%d, want %d", apiErr.StatusCode, tt.status)
			}
			if apiErr.Message != fixture.Message {
				t.Fatalf("Message=%q, want %q", apiErr.Message, fixture.Message)
			}
			if !tt.wantRetry(apiErr.RetryAfter) {
				t.Fatalf("RetryAfter=%v for header %q", apiErr.RetryAfter, tt.retryAfter)
			}
			if got := retell.IsRetryable(err); got != tt.retryable {
				t.Fatalf("IsRetryable=%v, want %v", got, tt.retryable)
			}
			if msg := err.Error(); !strings.Contains(msg, "get_call") || !strings.Contains(msg, tt.name) {
				t.Fatalf("Error()=%q, want it to name get_call and %s", msg, tt.name)
			}
			checkNoKey(t, err)
		})
	}
}

func isZero(d time.Duration) bool { return d == 0 }

func TestClientAPIErrorBodies(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{"plain text", "upstream exploded\n", "upstream exploded"},
		{"JSON without message", `{"error":"x"}`, `{"error":"x"}`},
		{"empty", "", ""},
		{"long", strings.Repeat("é", 3000), strings.Repeat("é", 256)},
		{"echoed key", `{"status":"error","message":"key ` + testAPIKey + ` is not valid"}`, "key [redacted] is not valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, conns := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, tt.body)
			}))
			c := newClient(t, srv.URL, retell.ClientConfig{})

			for range 2 {
				_, err := c.GetCall(context.Background(), "call_x")
				var apiErr *retell.APIError
				if !errors.As(err, &apiErr) {
					t.Fatalf("err=%v, want *APIError", err)
				}
				if apiErr.Message != tt.want {
					t.Fatalf("Message=%q, want %q", apiErr.Message, tt.want)
				}
				checkNoKey(t, err)
			}
			if n := conns.Load(); n != 1 {
				t.Fatalf("connections=%d, want 1 (error bodies drained)", n)
			}
		})
	}
}

func TestClientResponseTooLarge(t *testing.T) {
	const limit = 1024
	large := []byte(`{"call_id":"big","pad":"` + strings.Repeat("x", 4*limit) + `"}`)
	tests := []struct {
		name    string
		chunked bool
	}{
		{"content length", false},
		{"chunked", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, conns := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !strings.HasSuffix(r.URL.Path, "/big") {
					_, _ = io.WriteString(w, `{"call_id":"small"}`)
					return
				}
				if tt.chunked {
					// Flushing before the end keeps the server from
					// setting Content-Length.
					_, _ = w.Write(large[:10])
					w.(http.Flusher).Flush()
					_, _ = w.Write(large[10:])
					return
				}
				w.Header().Set("Content-Length", fmt.Sprint(len(large)))
				_, _ = w.Write(large)
			}))
			c := newClient(t, srv.URL, retell.ClientConfig{MaxResponseBytes: limit})

			_, err := c.GetCall(context.Background(), "big")
			if !errors.Is(err, retell.ErrResponseTooLarge) {
				t.Fatalf("err=%v, want ErrResponseTooLarge", err)
			}
			if retell.IsRetryable(err) {
				t.Fatalf("IsRetryable(%v)=true, want false", err)
			}
			checkNoKey(t, err)

			call, err := c.GetCall(context.Background(), "small")
			if err != nil {
				t.Fatalf("GetCall after the large body: %v", err)
			}
			if call.CallID != "small" {
				t.Fatalf("call_id=%q, want small", call.CallID)
			}
			if n := conns.Load(); n != 1 {
				t.Fatalf("connections=%d, want 1 (the connection was not reused)", n)
			}
		})
	}
}

func TestClientRequestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer close(release)

	var observed atomic.Int64
	c := newClient(t, srv.URL, retell.ClientConfig{
		RequestTimeout: 50 * time.Millisecond,
		Observe: func(endpoint string, status int, err error, _ time.Duration) {
			if endpoint == retell.EndpointGetCall && status == 0 && err != nil {
				observed.Add(1)
			}
		},
	})

	_, err := c.GetCall(context.Background(), "call_slow")
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("err=%v, want a timeout", err)
	}
	if !retell.IsRetryable(err) {
		t.Fatalf("IsRetryable(%v)=false, want true", err)
	}
	if n := observed.Load(); n != 1 {
		t.Fatalf("observed failures=%d, want 1", n)
	}
	checkNoKey(t, err)
}

func TestClientCanceledContext(t *testing.T) {
	var requests atomic.Int64
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = io.WriteString(w, `{"call_id":"c1"}`)
	}))
	c := newClient(t, srv.URL, retell.ClientConfig{})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.GetCall(ctx, "c1")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err=%v, want context.Canceled", err)
	}
	if retell.IsRetryable(err) {
		t.Fatalf("IsRetryable(%v)=true, want false", err)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("requests=%d, want 0", n)
	}
}

func TestClientMaxInFlight(t *testing.T) {
	const (
		bound   = 4
		callers = 50
	)
	var (
		current, peak atomic.Int64
		full          = make(chan struct{})
		fullOnce      sync.Once
		gate          = make(chan struct{})
	)
	srv, conns := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := current.Add(1)
		defer current.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if n == bound {
			fullOnce.Do(func() { close(full) })
		}
		// Hold the first requests until the bound is reached, so that the
		// other callers queue behind them.
		select {
		case <-gate:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, `{"call_id":"c1"}`)
	}))
	c := newClient(t, srv.URL, retell.ClientConfig{MaxInFlight: bound})

	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			_, err := c.GetCall(context.Background(), "c1")
			errs <- err
		})
	}

	select {
	case <-full:
	case <-time.After(10 * time.Second):
		close(gate)
		wg.Wait()
		t.Fatalf("the server never saw %d concurrent requests (peak %d)", bound, peak.Load())
	}
	close(gate)
	wg.Wait()
	close(errs)

	for err := range errs {
		if err != nil {
			t.Fatalf("GetCall: %v", err)
		}
	}
	if p := peak.Load(); p != bound {
		t.Fatalf("peak concurrent requests=%d, want %d", p, bound)
	}
	if n := conns.Load(); n > bound {
		t.Fatalf("connections=%d, want at most %d", n, bound)
	}
}

func TestClientQueuedRequestHonorsContext(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, `{"call_id":"c1"}`)
	}))

	var observed atomic.Int64
	c := newClient(t, srv.URL, retell.ClientConfig{
		MaxInFlight: 1,
		Observe:     func(string, int, error, time.Duration) { observed.Add(1) },
	})

	first := make(chan error, 1)
	go func() {
		_, err := c.GetCall(context.Background(), "c1")
		first <- err
	}()
	<-entered

	// The only slot is taken, so this call waits until its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := c.GetCall(ctx, "c2")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued call: err=%v, want context.DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "request slot") {
		t.Fatalf("queued call: err=%q, want it to name the request slot", err)
	}

	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first call: %v", err)
	}
	if n := observed.Load(); n != 1 {
		t.Fatalf("observed=%d, want 1 (only the sent request)", n)
	}
}

func TestClientReusesConnection(t *testing.T) {
	const bound = 4
	handler := serveFixture(t, http.StatusOK, "outbound/get_call_3_ongoing_partial.json")
	srv, conns := newServer(t, handler)
	c := newClient(t, srv.URL, retell.ClientConfig{MaxInFlight: bound})

	for i := range 100 {
		if _, err := c.GetCall(context.Background(), "call_f0b26536b5a0b2b5c0ec60985f1"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	// Sequential requests need one connection. The bound is the limit the
	// transport must keep in any case.
	if n := conns.Load(); n > bound {
		t.Fatalf("connections=%d, want at most %d", n, bound)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("connections=%d, want 1 for sequential requests", n)
	}
}

func TestClientBadBodies(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		want      error
		retryable bool
	}{
		{"invalid JSON", `{"call_id":`, retell.ErrMalformedBody, true},
		{"not an object", `[]`, retell.ErrMalformedBody, true},
		{"call_id missing", `{"call_status":"ongoing"}`, retell.ErrMissingCallID, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, tt.body)
			}))
			c := newClient(t, srv.URL, retell.ClientConfig{})

			_, err := c.GetCall(context.Background(), "c1")
			if !errors.Is(err, tt.want) {
				t.Fatalf("err=%v, want %v", err, tt.want)
			}
			if got := retell.IsRetryable(err); got != tt.retryable {
				t.Fatalf("IsRetryable=%v, want %v", got, tt.retryable)
			}
		})
	}
}

func TestClientTruncatedBody(t *testing.T) {
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"call_id\":\"c1\",")
		_ = buf.Flush()
	}))
	c := newClient(t, srv.URL, retell.ClientConfig{})

	_, err := c.GetCall(context.Background(), "c1")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err=%v, want io.ErrUnexpectedEOF", err)
	}
	if !retell.IsRetryable(err) {
		t.Fatalf("IsRetryable(%v)=false, want true", err)
	}
}

func TestClientConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()

	c := newClient(t, "http://"+addr, retell.ClientConfig{})
	_, err = c.GetCall(context.Background(), "c1")
	if err == nil {
		t.Fatal("GetCall on a closed port succeeded")
	}
	if !retell.IsRetryable(err) {
		t.Fatalf("IsRetryable(%v)=false, want true", err)
	}
	checkNoKey(t, err)
}

func TestClientCreatePhoneCall(t *testing.T) {
	var (
		gotMethod, gotPath, gotType string
		gotBody                     map[string]any
	)
	handler := serveFixture(t, http.StatusCreated, "outbound/create_phone_call_201.json")
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotMethod, gotPath, gotType = r.Method, r.URL.Path, r.Header.Get("Content-Type")
		if err := json.NewDecoder(r.Body).Decode(&gotBody); err != nil {
			t.Errorf("decode request body: %v", err)
		}
		handler(w, r)
	}))
	c := newClient(t, srv.URL, retell.ClientConfig{})

	call, err := c.CreatePhoneCall(context.Background(), retell.CreatePhoneCallRequest{
		FromNumber:                "+15550100001",
		ToNumber:                  "+15550142310",
		OverrideAgentID:           "agent_1",
		Metadata:                  json.RawMessage(`{"callcat_ref":"cc_1"}`),
		RetellLLMDynamicVariables: map[string]string{"customer_name": "Dana"},
	})
	if err != nil {
		t.Fatalf("CreatePhoneCall: %v", err)
	}

	if gotMethod != http.MethodPost || gotPath != "/v2/create-phone-call" {
		t.Fatalf("request=%s %s, want POST /v2/create-phone-call", gotMethod, gotPath)
	}
	if gotType != "application/json" {
		t.Fatalf("Content-Type=%q, want application/json", gotType)
	}
	wantBody := map[string]any{
		"from_number":                  "+15550100001",
		"to_number":                    "+15550142310",
		"override_agent_id":            "agent_1",
		"metadata":                     map[string]any{"callcat_ref": "cc_1"},
		"retell_llm_dynamic_variables": map[string]any{"customer_name": "Dana"},
	}
	if diff := cmp.Diff(wantBody, gotBody); diff != "" {
		t.Fatalf("request body (-want +got):\n%s", diff)
	}
	if call.CallID != "call_f0b26536b5a0b2b5c0ec60985f1" {
		t.Fatalf("call_id=%q", call.CallID)
	}
	if call.Fields().Status != callcat.StatusRegistered {
		t.Fatalf("status=%q, want registered", call.CallStatus)
	}
}

func TestClientInvalidInput(t *testing.T) {
	var requests atomic.Int64
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
	}))
	c := newClient(t, srv.URL, retell.ClientConfig{})
	ctx := context.Background()

	calls := map[string]func() error{
		"get_call empty id":  func() error { _, err := c.GetCall(ctx, ""); return err },
		"stop_call empty id": func() error { return c.StopCall(ctx, "") },
		"create without to_number": func() error {
			_, err := c.CreatePhoneCall(ctx, retell.CreatePhoneCallRequest{FromNumber: "+15550100001"})
			return err
		},
		"create with invalid metadata": func() error {
			_, err := c.CreatePhoneCall(ctx, retell.CreatePhoneCallRequest{FromNumber: "+1", ToNumber: "+2", Metadata: json.RawMessage(`{`)})
			return err
		},
		"list negative limit": func() error { _, err := c.ListCalls(ctx, retell.ListCallsRequest{Limit: -1}); return err },
		"list invalid filter": func() error {
			_, err := c.ListCalls(ctx, retell.ListCallsRequest{FilterCriteria: json.RawMessage(`[`)})
			return err
		},
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, callcat.ErrInvalid) {
			t.Fatalf("%s: err=%v, want callcat.ErrInvalid", name, err)
		}
		if retell.IsRetryable(err) {
			t.Fatalf("%s: IsRetryable=true, want false", name)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("requests=%d, want 0", n)
	}
}

func TestClientStopCall(t *testing.T) {
	var gotMethod, gotPath string
	var gotLength int64
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotMethod, gotPath, gotLength = r.Method, r.URL.Path, r.ContentLength
		w.WriteHeader(http.StatusNoContent)
	}))
	c := newClient(t, srv.URL, retell.ClientConfig{})

	if err := c.StopCall(context.Background(), "call_1"); err != nil {
		t.Fatalf("StopCall: %v", err)
	}
	if gotMethod != http.MethodPost || gotPath != "/v2/stop-call/call_1" {
		t.Fatalf("request=%s %s, want POST /v2/stop-call/call_1", gotMethod, gotPath)
	}
	if gotLength != 0 {
		t.Fatalf("request Content-Length=%d, want 0", gotLength)
	}
}

func TestClientListCalls(t *testing.T) {
	var gotPath string
	var gotBody map[string]any
	handler := serveFixture(t, http.StatusOK, "list_calls_v3_200.json")
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.Method + " " + r.URL.Path
		if err := json.NewDecoder(r.Body).Decode(&gotBody); err != nil {
			t.Errorf("decode request body: %v", err)
		}
		handler(w, r)
	}))
	c := newClient(t, srv.URL, retell.ClientConfig{})

	page, err := c.ListCalls(context.Background(), retell.ListCallsRequest{
		FilterCriteria: json.RawMessage(`{"call_status":{"type":"enum","op":"in","value":["ongoing"]}}`),
		SortOrder:      "descending",
		Limit:          4,
		PaginationKey:  "pk_prev",
	})
	if err != nil {
		t.Fatalf("ListCalls: %v", err)
	}

	if gotPath != "POST /v3/list-calls" {
		t.Fatalf("request=%s, want POST /v3/list-calls", gotPath)
	}
	wantBody := map[string]any{
		"filter_criteria": map[string]any{"call_status": map[string]any{"type": "enum", "op": "in", "value": []any{"ongoing"}}},
		"sort_order":      "descending",
		"limit":           float64(4),
		"pagination_key":  "pk_prev",
	}
	if diff := cmp.Diff(wantBody, gotBody); diff != "" {
		t.Fatalf("request body (-want +got):\n%s", diff)
	}

	if len(page.Items) != 4 {
		t.Fatalf("items=%d, want 4", len(page.Items))
	}
	if !page.HasMore {
		t.Fatal("has_more=false, want true")
	}
	if page.PaginationKey != "pk_06b9e59d825a4b575aed828cd4d8c0935aac860b" {
		t.Fatalf("pagination_key=%q", page.PaginationKey)
	}
	for i, item := range page.Items {
		if item.CallID == "" || item.CallStatus == "" {
			t.Fatalf("item %d: call_id=%q status=%q, want both set", i, item.CallID, item.CallStatus)
		}
		if _, present := item.Utterances(); present {
			t.Fatalf("item %d: transcript present, want absent", i)
		}
	}
}

func TestClientListCallsEmptyRequest(t *testing.T) {
	var gotBody []byte
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotBody, _ = io.ReadAll(r.Body)
		_, _ = io.WriteString(w, `{"items":[],"has_more":false}`)
	}))
	c := newClient(t, srv.URL, retell.ClientConfig{})

	page, err := c.ListCalls(context.Background(), retell.ListCallsRequest{})
	if err != nil {
		t.Fatalf("ListCalls: %v", err)
	}
	if string(gotBody) != "{}" {
		t.Fatalf("request body=%s, want {}", gotBody)
	}
	if len(page.Items) != 0 || page.HasMore || page.PaginationKey != "" {
		t.Fatalf("page=%+v, want empty", page)
	}
}

func TestClientObserve(t *testing.T) {
	type observation struct {
		Endpoint string
		Status   int
		Failed   bool
	}
	var (
		mu  sync.Mutex
		got []observation
	)
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/bad") {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, `{"call_id":"ok"}`)
	}))
	c := newClient(t, srv.URL, retell.ClientConfig{
		Observe: func(endpoint string, status int, err error, elapsed time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, observation{endpoint, status, err != nil})
		},
	})

	if _, err := c.GetCall(context.Background(), "ok"); err != nil {
		t.Fatalf("GetCall ok: %v", err)
	}
	if _, err := c.GetCall(context.Background(), "bad"); err == nil {
		t.Fatal("GetCall bad succeeded, want an error")
	}

	want := []observation{
		{retell.EndpointGetCall, http.StatusOK, false},
		{retell.EndpointGetCall, http.StatusBadGateway, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("observations (-want +got):\n%s", diff)
	}
}

func TestClientRateLimit(t *testing.T) {
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"call_id":"c1"}`)
	}))
	// One token, refilled once per hour: the second request cannot get one
	// before its deadline and fails at once.
	c := newClient(t, srv.URL, retell.ClientConfig{RequestsPerSecond: 1.0 / 3600, Burst: 1})

	if _, err := c.GetCall(context.Background(), "c1"); err != nil {
		t.Fatalf("first GetCall: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.GetCall(ctx, "c1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second GetCall: err=%v, want context.DeadlineExceeded", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the limiter waited for the deadline instead of failing at once")
	}
}

func TestNewClientValidation(t *testing.T) {
	valid := retell.ClientConfig{BaseURL: "https://api.retellai.com", APIKey: testAPIKey}
	tests := []struct {
		name   string
		modify func(*retell.ClientConfig)
	}{
		{"base URL missing", func(c *retell.ClientConfig) { c.BaseURL = "" }},
		{"base URL unparsable", func(c *retell.ClientConfig) { c.BaseURL = "http://" + testAPIKey + "@[::1" }},
		{"base URL scheme", func(c *retell.ClientConfig) { c.BaseURL = "ftp://api.retellai.com" }},
		{"base URL scheme with query", func(c *retell.ClientConfig) { c.BaseURL = "ftp://api.retellai.com/?key=" + testAPIKey }},
		{"base URL fragment", func(c *retell.ClientConfig) { c.BaseURL = "https://api.retellai.com/#" + testAPIKey }},
		{"base URL relative", func(c *retell.ClientConfig) { c.BaseURL = "/v2" }},
		{"base URL user info", func(c *retell.ClientConfig) { c.BaseURL = "https://user:" + testAPIKey + "@api.retellai.com" }},
		{"base URL query", func(c *retell.ClientConfig) { c.BaseURL = "https://api.retellai.com/?key=" + testAPIKey }},
		{"API key missing", func(c *retell.ClientConfig) { c.APIKey = "" }},
		{"negative in-flight", func(c *retell.ClientConfig) { c.MaxInFlight = -1 }},
		{"negative rate", func(c *retell.ClientConfig) { c.RequestsPerSecond = -1 }},
		{"NaN rate", func(c *retell.ClientConfig) { c.RequestsPerSecond = math.NaN() }},
		{"negative burst", func(c *retell.ClientConfig) { c.Burst = -1 }},
		{"negative timeout", func(c *retell.ClientConfig) { c.RequestTimeout = -time.Second }},
		{"negative body cap", func(c *retell.ClientConfig) { c.MaxResponseBytes = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.modify(&cfg)
			c, err := retell.NewClient(cfg)
			if err == nil {
				c.Close()
				t.Fatal("NewClient succeeded, want an error")
			}
			checkNoKey(t, err)
		})
	}

	c, err := retell.NewClient(valid)
	if err != nil {
		t.Fatalf("NewClient(valid): %v", err)
	}
	c.Close()
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		headers map[string]string
		want    time.Duration
	}{
		{"absent", nil, 0},
		{"seconds", map[string]string{"Retry-After": "120"}, 2 * time.Minute},
		{"zero", map[string]string{"Retry-After": "0"}, 0},
		{"fraction", map[string]string{"Retry-After": "1.5"}, 1500 * time.Millisecond},
		{"negative", map[string]string{"Retry-After": "-3"}, 0},
		{"huge", map[string]string{"Retry-After": "1e300"}, 0},
		{"garbage", map[string]string{"Retry-After": "soon"}, 0},
		{"date", map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{"date passed", map[string]string{"Retry-After": now.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{"milliseconds", map[string]string{"retry-after-ms": "250"}, 250 * time.Millisecond},
		{"milliseconds win", map[string]string{"retry-after-ms": "250", "Retry-After": "9"}, 250 * time.Millisecond},
		{"invalid milliseconds", map[string]string{"retry-after-ms": "x", "Retry-After": "9"}, 9 * time.Second},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.headers {
			h.Set(k, v)
		}
		if got := retell.RetryAfter(h, now); got != tt.want {
			t.Fatalf("%s: RetryAfter=%v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestIsRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("other"), false},
		{&retell.APIError{StatusCode: 400}, false},
		{&retell.APIError{StatusCode: 401}, false},
		{&retell.APIError{StatusCode: 404}, false},
		{&retell.APIError{StatusCode: 422}, false},
		{&retell.APIError{StatusCode: 408}, true},
		{&retell.APIError{StatusCode: 409}, true},
		{fmt.Errorf("wrapped: %w", &retell.APIError{StatusCode: 429}), true},
		{&retell.APIError{StatusCode: 500}, true},
		{&retell.APIError{StatusCode: 503}, true},
		{fmt.Errorf("x: %w", context.Canceled), false},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("x: %w", retell.ErrResponseTooLarge), false},
		{fmt.Errorf("x: %w", retell.ErrMalformedBody), true},
		{fmt.Errorf("x: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("x: %w", callcat.ErrInvalid), false},
		{&net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, true},
	}
	for i, tt := range tests {
		if got := retell.IsRetryable(tt.err); got != tt.want {
			t.Fatalf("case %d %v: IsRetryable=%v, want %v", i, tt.err, got, tt.want)
		}
	}
}

func TestAPIErrorString(t *testing.T) {
	err := &retell.APIError{Endpoint: "get_call", StatusCode: 429, Message: "slow down", RetryAfter: 2 * time.Second}
	want := "retell get_call: status 429 Too Many Requests: slow down (retry after 2s)"
	if got := err.Error(); got != want {
		t.Fatalf("Error()=%q, want %q", got, want)
	}
}

// BenchmarkClientGetCall measures one poll of the long call over loopback.
func BenchmarkClientGetCall(b *testing.B) {
	body := readFixture(b, "long_call/get_call_ended_analyzed.json")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}))
	defer srv.Close()
	c, err := retell.NewClient(retell.ClientConfig{BaseURL: srv.URL, APIKey: testAPIKey, RequestsPerSecond: math.Inf(1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.GetCall(context.Background(), "call_27b1cd331a42f6338a3c9fc1875"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	var paths []string
	var mu sync.Mutex
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	c := newClient(t, srv.URL, retell.ClientConfig{})

	_, err := c.GetCall(context.Background(), "c1")
	var apiErr *retell.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusFound {
		t.Fatalf("err=%v, want *APIError with status 302", err)
	}
	if diff := cmp.Diff([]string{"/v2/get-call/c1"}, paths); diff != "" {
		t.Fatalf("paths (-want +got):\n%s", diff)
	}
}
