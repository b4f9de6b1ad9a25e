package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/sim"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testKey = "key_test_sim_4d2e9a71c0b35f86"

// hook is one webhook request as a receiver saw it.
type hook struct {
	body       []byte
	signature  string
	receivedAt time.Time
	event      string
	callID     string
	call       map[string]any
}

// recorder is a webhook receiver that keeps every request. status returns the
// response status for request number n (from 0). A nil status responds 204.
type recorder struct {
	srv    *httptest.Server
	status func(n int) int

	mu    sync.Mutex
	hooks []hook
}

func newRecorder(t *testing.T, status func(n int) int) *recorder {
	t.Helper()
	rec := &recorder{status: status}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h := hook{body: body, signature: r.Header.Get(retell.SignatureHeader), receivedAt: time.Now()}
		var envelope struct {
			Event string         `json:"event"`
			Call  map[string]any `json:"call"`
		}
		if err := json.Unmarshal(body, &envelope); err == nil {
			h.event, h.call = envelope.Event, envelope.Call
			h.callID, _ = envelope.Call["call_id"].(string)
		}

		rec.mu.Lock()
		n := len(rec.hooks)
		rec.hooks = append(rec.hooks, h)
		rec.mu.Unlock()

		code := http.StatusNoContent
		if rec.status != nil {
			code = rec.status(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (rec *recorder) all() []hook {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]hook(nil), rec.hooks...)
}

// delivered groups the hooks that got a 2xx response by call id, in arrival
// order.
func (rec *recorder) delivered() map[string][]hook {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := map[string][]hook{}
	for n, h := range rec.hooks {
		if rec.status != nil && rec.status(n)/100 != 2 {
			continue
		}
		out[h.callID] = append(out[h.callID], h)
	}
	return out
}

// newSim returns a Sim for cfg (with the test key) and a server for its API.
func newSim(t *testing.T, cfg sim.Config) (*sim.Sim, *httptest.Server) {
	t.Helper()
	cfg.APIKey = testKey
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	api := httptest.NewServer(s.Handler())
	t.Cleanup(api.Close)
	return s, api
}

// runner is a Run in the background.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, set before done is closed
}

// startRun runs s until it returns by itself, stop is called or the test
// ends.
func startRun(t *testing.T, s *sim.Sim) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Run(ctx)
	}()
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// wait waits up to 30 s for Run to return by itself and returns its error.
func (r *runner) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return within 30s")
		return nil
	}
}

// stop cancels Run's context and returns Run's error.
func (r *runner) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStatus waits until call id has the status.
func waitStatus(t *testing.T, s *sim.Sim, id, status string) sim.CallInfo {
	t.Helper()
	var info sim.CallInfo
	waitFor(t, "call "+id+" status "+status, func() bool {
		info, _ = s.Call(id)
		return info.Status == status
	})
	return info
}

// do sends an API request with key as bearer token ("" sends none) and
// returns the status and body.
func do(t *testing.T, api *httptest.Server, method, path, key, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, api.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := api.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s %s: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// getCall fetches call id and decodes it.
func getCall(t *testing.T, api *httptest.Server, id string) (map[string]any, []byte) {
	t.Helper()
	status, body := do(t, api, http.MethodGet, "/v2/get-call/"+id, testKey, "")
	if status != http.StatusOK {
		t.Fatalf("get-call %s status=%d, want 200; body %s", id, status, body)
	}
	return decodeObject(t, body), body
}

func decodeObject(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var v map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

// clock is a manual wall clock for Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Date(2026, 6, 9, 10, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// createCall places a call through create-phone-call and returns its id and
// the response body.
func createCall(t *testing.T, api *httptest.Server, body string) (string, []byte) {
	t.Helper()
	status, out := do(t, api, http.MethodPost, "/v2/create-phone-call", testKey, body)
	if status != http.StatusCreated {
		t.Fatalf("create-phone-call status=%d, want 201; body %s", status, out)
	}
	id, _ := decodeObject(t, out)["call_id"].(string)
	return id, out
}

const createBody = `{"from_number":"+15550100001","to_number":"+15550142310",` +
	`"metadata":{"callcat_ref":"cc_000777","campaign":"test"},` +
	`"retell_llm_dynamic_variables":{"customer_name":"Test Person","appointment_time":"Monday"}}`
