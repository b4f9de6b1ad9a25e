package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
	"go.uber.org/goleak"
)

// fixtureKey is the fake API key the fixtures were signed with.
const fixtureKey = "key_test_callcat_7f3a9c21e5b84d06a1c2"

const fixtureDir = "../../testdata/retell"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startService runs the real service on a free loopback port with a fresh
// SQLite directory until the test ends.
func startService(t *testing.T, cfg app.Config) *app.Service {
	t.Helper()

	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.RetellAPIKey == "" {
		cfg.RetellAPIKey = fixtureKey
	}
	if cfg.Tracker.PollInterval == 0 {
		cfg.Tracker.PollInterval = 100 * time.Millisecond
	}
	if cfg.Tracker.ReconcileInterval == 0 {
		cfg.Tracker.ReconcileInterval = time.Second
	}
	if cfg.Tracker.BackoffMin == 0 {
		cfg.Tracker.BackoffMin = 20 * time.Millisecond
		cfg.Tracker.BackoffMax = 200 * time.Millisecond
	}
	if cfg.Client.RequestsPerSecond == 0 {
		cfg.Client.RequestsPerSecond = 1000
		cfg.Client.MaxInFlight = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *app.Service, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Serve(ctx, cfg, func(s *app.Service) { ready <- s })
	}()

	select {
	case svc := <-ready:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve returned %v", err)
			}
		})
		return svc
	case err := <-done:
		cancel()
		t.Fatalf("serve failed to start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("serve did not start within 10s")
	}
	return nil
}

// readFixture returns a fixture file's exact bytes.
func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// postWebhook signs body with key at the current time and posts it.
func postWebhook(t *testing.T, baseURL string, body []byte, key string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, baseURL+"/webhooks/retell", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(retell.SignatureHeader, retell.Sign(body, key, time.Now()))
	return doStatus(t, req)
}

func doStatus(t *testing.T, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// getJSON decodes a 200 JSON response into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: decode: %v", url, err)
	}
}

func getText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", url, resp.StatusCode, body)
	}
	return string(body)
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

// callJSON is the API's call shape as tests read it.
type callJSON struct {
	CallID              string          `json:"call_id"`
	Status              string          `json:"status"`
	CallType            *string         `json:"call_type"`
	Direction           *string         `json:"direction"`
	FromNumber          *string         `json:"from_number"`
	ToNumber            *string         `json:"to_number"`
	AgentID             *string         `json:"agent_id"`
	StartTimestamp      *int64          `json:"start_timestamp"`
	EndTimestamp        *int64          `json:"end_timestamp"`
	DurationMS          *int64          `json:"duration_ms"`
	DisconnectionReason *string         `json:"disconnection_reason"`
	UtteranceCount      int             `json:"utterance_count"`
	Metadata            json.RawMessage `json:"metadata"`
	CallAnalysis        json.RawMessage `json:"call_analysis"`
}

type transcriptJSON struct {
	CallID     string              `json:"call_id"`
	Status     string              `json:"status"`
	Utterances []callcat.Utterance `json:"utterances"`
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	ID    int64
	Event string
	Data  string
}

// readSSE parses events from r until it ends or stop returns true for an
// event. Comments and retry lines are skipped.
func readSSE(r io.Reader, onEvent func(sseEvent) (stop bool)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)

	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Event != "" {
				if onEvent(ev) {
					return nil
				}
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry:"):
		case strings.HasPrefix(line, "id: "):
			n, err := strconv.ParseInt(line[4:], 10, 64)
			if err != nil {
				return fmt.Errorf("bad id line %q", line)
			}
			ev.ID = n
		case strings.HasPrefix(line, "event: "):
			ev.Event = line[7:]
		case strings.HasPrefix(line, "data: "):
			if ev.Data != "" {
				return fmt.Errorf("second data line %q", line)
			}
			ev.Data = line[6:]
		default:
			return fmt.Errorf("unexpected SSE line %q", line)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// transcriptFollower assembles a transcript from a call's SSE events, the
// way a browser would.
type transcriptFollower struct {
	mu         sync.Mutex
	lastID     int64
	utterances []string
	roles      []string
	ended      bool
	seen       int
}

// apply checks seq continuity and applies one event.
func (f *transcriptFollower) apply(ev sseEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()

	if ev.ID != f.lastID+1 {
		return fmt.Errorf("event id %d after %d: want %d", ev.ID, f.lastID, f.lastID+1)
	}
	f.lastID = ev.ID
	f.seen++

	switch ev.Event {
	case "utterance":
		var d callcat.UtteranceData
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
			return err
		}
		for len(f.utterances) <= d.Index {
			f.utterances = append(f.utterances, "")
			f.roles = append(f.roles, "")
		}
		f.utterances[d.Index] = d.Content
		f.roles[d.Index] = d.Role
	case "truncate":
		var d callcat.TruncateData
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
			return err
		}
		f.utterances = f.utterances[:d.UtteranceCount]
		f.roles = f.roles[:d.UtteranceCount]
	case "ended":
		f.ended = true
	}
	return nil
}

// text renders the followed transcript like the provider's transcript string.
func (f *transcriptFollower) text() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	utts := make([]callcat.Utterance, len(f.utterances))
	for i := range f.utterances {
		utts[i] = callcat.Utterance{Role: f.roles[i], Content: f.utterances[i]}
	}
	return callcat.TranscriptText(utts)
}

// follow streams a call's events from after into f until the ended event,
// the stream's end or ctx's end.
func follow(ctx context.Context, baseURL, callID string, f *transcriptFollower) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/v1/calls/"+callID+"/stream", nil)
	if err != nil {
		return err
	}
	f.mu.Lock()
	if f.lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(f.lastID, 10))
	}
	f.mu.Unlock()

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("stream status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		return fmt.Errorf("stream content type %q", ct)
	}

	var applyErr error
	err = readSSE(resp.Body, func(ev sseEvent) bool {
		if applyErr = f.apply(ev); applyErr != nil {
			return true
		}
		return ev.Event == "ended"
	})
	if applyErr != nil {
		return applyErr
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// testLogger collects the service's logs (at most 4 MiB) and prints them
// when the test fails, so a failure shows what the service said.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	w := &cappedBuffer{max: 4 << 20}
	t.Cleanup(func() {
		if t.Failed() {
			w.mu.Lock()
			t.Logf("service log:\n%s", w.buf.String())
			w.mu.Unlock()
		}
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type cappedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len()+len(p) <= b.max {
		b.buf.Write(p)
	}
	return len(p), nil
}

func (f *transcriptFollower) seenCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen
}

func (f *transcriptFollower) isEnded() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ended
}

// getJSONCtx decodes a 200 JSON response into v, returning errors instead
// of failing the test, for use from goroutines.
func getJSONCtx(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// metricValue returns the value of the counter or gauge name with exactly
// the given labels, or 0 when the series does not exist.
func metricValue(t *testing.T, svc *app.Service, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := svc.Registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			match := true
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					match = false
				}
			}
			if !match {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
