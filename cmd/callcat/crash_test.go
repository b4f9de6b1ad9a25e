package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/sim"
	"github.com/callcat/callcat/internal/store/sqlite"
)

// crashKey is the provider API key the simulator and the service share.
const crashKey = "key_test_crash_0b6e2f95a1c84d73"

// TestCrashRecovery kills `callcat serve` with SIGKILL at random moments ten
// times while `callcat sim` sends webhooks to it, restarting it on the same
// data directory each time. Every webhook the simulator got a 2xx for must be
// in the store, every call must end with the provider's exact transcript,
// and an SSE client resuming with Last-Event-ID must miss no event.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two real processes for about half a minute")
	}
	h := newHarness(t)
	const (
		kills      = 10
		totalCalls = 64
	)

	simProc := h.startSim(t, "--calls", "16", "--total-calls", strconv.Itoa(totalCalls),
		"--call-length", "30s", "--speed", "10", "--not-connected-ratio", "0.1", "--seed", "9")
	defer simProc.interrupt(t, 0)

	serve := h.startServe(t)
	followers := h.followLiveCalls(t, 2)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for i := range kills {
		// Each kill lands at a random moment, 0.3 to 1.5 s after serving
		// started: inside webhook handling, polls and store writes alike.
		wait := 300*time.Millisecond + time.Duration(rng.Int64N(int64(1200*time.Millisecond)))
		time.Sleep(wait)
		serve.kill(t)
		serve = h.startServe(t)
		h.checkResumed(t, i)
	}

	h.waitSimFinished(t, totalCalls)
	waitCondition(t, 30*time.Second, "the service to stop tracking every call", func() bool {
		return h.metric(t, "callcat_tracked_calls") == 0
	})
	calls := h.simCalls(t)
	h.checkTranscripts(t, calls)
	for _, f := range followers {
		f.wait(t)
	}

	delivered := h.delivered(t)
	serve.terminate(t, 0)
	h.checkDelivered(t, delivered, nil)

	stats := h.simStats(t)
	t.Logf("kills=%d calls=%d webhooks acknowledged=%d (all in the store) cut by a kill=%d retried=%d given up=%d streams followed=%d",
		kills, len(calls), len(delivered), stats.WebhooksUnanswered, stats.WebhooksRetried, stats.WebhooksFailed, len(followers))
}

// TestGracefulShutdown sends SIGTERM to `callcat serve` while webhooks flow
// and SSE streams are open. The process must exit 0 within its
// --shutdown-timeout, answer every webhook it read, end the streams so that
// their clients can resume, and leave a consistent store.
func TestGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two real processes")
	}
	h := newHarness(t)
	const shutdownTimeout = 5 * time.Second

	simProc := h.startSim(t, "--calls", "4", "--total-calls", "8",
		"--call-length", "40s", "--speed", "10", "--not-connected-ratio", "0", "--seed", "4")
	defer simProc.interrupt(t, 0)

	serve := h.startServe(t, "--shutdown-timeout", shutdownTimeout.String())
	followers := h.followLiveCalls(t, 2)
	waitCondition(t, 10*time.Second, "the streams to carry events", func() bool {
		for _, f := range followers {
			if f.lastID() == 0 {
				return false
			}
		}
		return true
	})

	posts := h.postWebhooks(t)
	waitCondition(t, 10*time.Second, "webhooks to flow", func() bool { return posts.count() >= 20 })

	start := time.Now()
	serve.terminate(t, shutdownTimeout+time.Second)
	elapsed := time.Since(start)
	posts.stop()
	if elapsed > shutdownTimeout {
		t.Errorf("serve took %v to exit after SIGTERM, want at most --shutdown-timeout %v", elapsed, shutdownTimeout)
	}
	for i, f := range followers {
		if err := f.firstEnd(); err != nil {
			t.Errorf("stream %d (call %s) ended with %v at shutdown, want a clean end", i, f.callID, err)
		}
	}

	// The store file is consistent after the shutdown.
	checkIntegrity(t, filepath.Join(h.dataDir, app.DefaultDatabaseFile))

	// The streams resume on the restarted service and miss nothing.
	serve = h.startServe(t, "--shutdown-timeout", shutdownTimeout.String())
	h.waitSimFinished(t, 8)
	for _, f := range followers {
		f.wait(t)
	}
	h.checkTranscripts(t, h.simCalls(t))

	delivered := h.delivered(t)
	serve.terminate(t, shutdownTimeout+time.Second)
	answered, unanswered := posts.results()
	h.checkDelivered(t, append(delivered, answered...), unanswered)
	t.Logf("shutdown took %v; test webhooks answered=%d unanswered=%d; simulator webhooks acknowledged=%d",
		elapsed.Round(time.Millisecond), len(answered), len(unanswered), len(delivered))
}

// harness runs the callcat binary as a simulator and a service on loopback.
type harness struct {
	bin      string
	dataDir  string
	simAddr  string
	addr     string // the service's address; the same across restarts
	logs     *logSink
	client   *http.Client
	restarts int
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "callcat")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	h := &harness{
		bin:     bin,
		dataDir: filepath.Join(dir, "data"),
		simAddr: freeAddr(t),
		addr:    freeAddr(t),
		logs:    &logSink{max: 1 << 20},
		client:  &http.Client{Timeout: 10 * time.Second},
	}
	t.Cleanup(func() {
		h.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("process output (last 1 MiB):\n%s", h.logs.String())
		}
	})
	return h
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// environment returns the test's environment without CALLCAT_ variables,
// which would change the processes' flags, plus the provider key.
func environment() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CALLCAT_") && !strings.HasPrefix(kv, "RETELL_API_KEY=") {
			env = append(env, kv)
		}
	}
	return append(env, "RETELL_API_KEY="+crashKey)
}

func (h *harness) startSim(t *testing.T, args ...string) *process {
	t.Helper()
	args = append([]string{"sim", "--addr", h.simAddr, "--webhook-url", "http://" + h.addr + "/webhooks/retell",
		"--push-transcripts", "--debug-routes", "--keep-serving", "--log-level", "warn"}, args...)
	p := startProcess(t, h.bin, "sim", args, h.logs)
	waitCondition(t, 10*time.Second, "the simulator to serve", func() bool {
		_, err := h.simGet("/_sim/stats")
		return err == nil
	})
	return p
}

// startServe starts `callcat serve` on h.addr and h.dataDir. The port may
// still be held for a moment after a kill, so a failed bind is retried.
func (h *harness) startServe(t *testing.T, extra ...string) *process {
	t.Helper()
	args := append([]string{"serve", "--addr", h.addr, "--data-dir", h.dataDir,
		"--retell-base-url", "http://" + h.simAddr, "--poll-interval", "200ms", "--reconcile-interval", "1s",
		"--log-level", "warn", "--dashboard=false"}, extra...)

	deadline := time.Now().Add(15 * time.Second)
	for {
		h.restarts++
		p := startProcess(t, h.bin, "serve#"+strconv.Itoa(h.restarts), args, h.logs)
		for time.Now().Before(deadline) {
			if resp, err := h.client.Get("http://" + h.addr + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return p
				}
			}
			if p.exited() {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !p.exited() || time.Now().After(deadline) {
			p.kill(t)
			t.Fatalf("serve did not become healthy within 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkResumed checks that after a restart the service tracks the live
// calls that the store holds again.
func (h *harness) checkResumed(t *testing.T, restart int) {
	t.Helper()
	waitCondition(t, 10*time.Second, fmt.Sprintf("live calls to be tracked after restart %d", restart+1), func() bool {
		var list struct {
			Calls []struct{} `json:"calls"`
		}
		if err := h.getJSON("http://"+h.addr+"/v1/calls?status=live&limit=500", &list); err != nil {
			return false
		}
		return len(list.Calls) == 0 || h.metric(t, "callcat_tracked_calls") > 0
	})
}

func (h *harness) simGet(path string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+h.simAddr+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+crashKey)
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return body, err
}

func (h *harness) simJSON(t *testing.T, path string, v any) {
	t.Helper()
	body, err := h.simGet(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
}

func (h *harness) simStats(t *testing.T) sim.Stats {
	var st sim.Stats
	h.simJSON(t, "/_sim/stats", &st)
	return st
}

func (h *harness) simCalls(t *testing.T) []sim.CallInfo {
	var calls []sim.CallInfo
	h.simJSON(t, "/_sim/calls", &calls)
	return calls
}

func (h *harness) delivered(t *testing.T) []string {
	var d struct {
		Digests []string `json:"digests"`
	}
	h.simJSON(t, "/_sim/delivered", &d)
	return d.Digests
}

// waitSimFinished waits until the simulator started total calls, all of
// them ended and no webhook waits for delivery.
func (h *harness) waitSimFinished(t *testing.T, total int) {
	t.Helper()
	waitCondition(t, 60*time.Second, "the simulator to finish its calls", func() bool {
		var st sim.Stats
		body, err := h.simGet("/_sim/stats")
		if err != nil || json.Unmarshal(body, &st) != nil {
			return false
		}
		return st.CallsStarted == int64(total) && st.LiveCalls == 0 && st.WebhooksQueued == 0 &&
			st.CallsAnalyzed == int64(total)
	})
}

func (h *harness) getJSON(url string, v any) error {
	resp, err := h.client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// metric returns the value of an unlabelled gauge or counter from /metrics,
// or -1 when it cannot be read.
func (h *harness) metric(t *testing.T, name string) float64 {
	resp, err := h.client.Get("http://" + h.addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if value, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("metric %s value %q: %v", name, value, err)
			}
			return v
		}
	}
	return -1
}

// checkTranscripts compares every simulated call with the service's record.
func (h *harness) checkTranscripts(t *testing.T, calls []sim.CallInfo) {
	t.Helper()
	if len(calls) == 0 {
		t.Fatalf("the simulator holds no calls")
	}
	for _, c := range calls {
		var stored struct {
			Status string `json:"status"`
		}
		if err := h.getJSON("http://"+h.addr+"/v1/calls/"+c.ID, &stored); err != nil {
			t.Errorf("call %s: %v", c.ID, err)
			continue
		}
		if stored.Status != c.Status {
			t.Errorf("call %s: status=%q, want %q", c.ID, stored.Status, c.Status)
		}
		resp, err := h.client.Get("http://" + h.addr + "/v1/calls/" + c.ID + "/transcript?format=text")
		if err != nil {
			t.Fatal(err)
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(text) != c.FinalTranscript {
			t.Errorf("call %s: stored transcript=%q\nwant %q", c.ID, text, c.FinalTranscript)
		}
	}
}

// checkDelivered opens the store after the service stopped and checks that
// every digest in stored is there and none in absent is.
func (h *harness) checkDelivered(t *testing.T, stored, absent []string) {
	t.Helper()
	if len(stored) == 0 {
		t.Fatalf("no delivered webhook to check")
	}
	path := filepath.Join(h.dataDir, app.DefaultDatabaseFile)
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatalf("reopen store: %v", err)
	}
	defer db.Close()

	for _, d := range stored {
		ok, err := db.HasDelivery(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Errorf("webhook %s got a 2xx but is not in the store", d)
		}
	}
	for _, d := range absent {
		ok, err := db.HasDelivery(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Errorf("webhook %s was stored but its sender got no response", d)
		}
	}
}

// checkIntegrity runs SQLite's integrity check on the store file.
func checkIntegrity(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var result string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&result); err != nil {
		t.Fatalf("integrity check: %v", err)
	}
	if result != "ok" {
		t.Fatalf("integrity check=%q, want ok", result)
	}
	store, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatalf("reopen store: %v", err)
	}
	if _, err := store.Calls(context.Background(), callcat.CallFilter{Status: callcat.FilterAll}); err != nil {
		t.Errorf("list calls in the reopened store: %v", err)
	}
	store.Close()
}

// followLiveCalls waits for n live calls and follows each one's SSE stream
// until its ended event, reconnecting with Last-Event-ID whenever the stream
// breaks.
func (h *harness) followLiveCalls(t *testing.T, n int) []*follower {
	t.Helper()
	var ids []string
	waitCondition(t, 15*time.Second, fmt.Sprintf("%d ongoing calls", n), func() bool {
		var list struct {
			Calls []struct {
				CallID string `json:"call_id"`
				Status string `json:"status"`
			} `json:"calls"`
		}
		if err := h.getJSON("http://"+h.addr+"/v1/calls?status=live&limit=500", &list); err != nil {
			return false
		}
		ids = ids[:0]
		for _, c := range list.Calls {
			if c.Status == "ongoing" && len(ids) < n {
				ids = append(ids, c.CallID)
			}
		}
		return len(ids) == n
	})

	followers := make([]*follower, n)
	for i, id := range ids {
		f := &follower{callID: id, url: "http://" + h.addr + "/v1/calls/" + id + "/stream", done: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(func() {
			cancel()
			<-f.done
		})
		go f.run(ctx)
		followers[i] = f
	}
	return followers
}

// follower reads one call's SSE stream across service restarts.
type follower struct {
	callID string
	url    string
	done   chan struct{} // closed when run returns

	mu       sync.Mutex
	last     int64
	ended    bool
	err      error // a gap or an unexpected line: following stopped
	ends     []error
	sessions int
}

func (f *follower) run(ctx context.Context) {
	defer close(f.done)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for ctx.Err() == nil {
		err := f.session(ctx, client)
		f.mu.Lock()
		f.ends = append(f.ends, err)
		stop := f.ended || f.err != nil
		f.mu.Unlock()
		if stop {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// session reads one connection of the stream. It returns nil when the
// server ended the stream cleanly.
func (f *follower) session(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		return err
	}
	if last := f.lastID(); last > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(last, 10))
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	f.mu.Lock()
	f.sessions++
	f.mu.Unlock()

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var id int64
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id, err = strconv.ParseInt(line[4:], 10, 64)
			if err != nil {
				return f.fail(fmt.Errorf("bad id line %q", line))
			}
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case line == "" && event != "":
			f.mu.Lock()
			if id != f.last+1 {
				f.mu.Unlock()
				return f.fail(fmt.Errorf("event id %d after %d, want %d", id, f.last, f.last+1))
			}
			f.last = id
			f.ended = event == "ended"
			f.mu.Unlock()
			event = ""
		}
	}
	return sc.Err()
}

func (f *follower) fail(err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
	return err
}

func (f *follower) lastID() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// firstEnd returns how the first connection of the stream ended, or an
// error when it is still open.
func (f *follower) firstEnd() error {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		if len(f.ends) > 0 {
			err := f.ends[0]
			f.mu.Unlock()
			return err
		}
		f.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("the stream is still open")
}

// wait waits until the follower read the ended event, and fails on a gap.
func (f *follower) wait(t *testing.T) {
	t.Helper()
	select {
	case <-f.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("stream of call %s: no ended event within 30s (last id %d)", f.callID, f.lastID())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		t.Errorf("stream of call %s: %v", f.callID, f.err)
	}
	if !f.ended {
		t.Errorf("stream of call %s stopped without an ended event", f.callID)
	}
	t.Logf("stream of call %s: %d events over %d connections", f.callID, f.last, f.sessions)
}

// poster sends signed test webhooks to the service from a few goroutines,
// each on a new connection, and records how each one ended.
type poster struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	answered   []string // digests of bodies answered 2xx
	unanswered []string // digests of bodies whose request failed without a response
}

func (h *harness) postWebhooks(t *testing.T) *poster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &poster{cancel: cancel}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for worker := range 4 {
		p.wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				p.post(client, h.addr, fmt.Sprintf("call_term_%d_%d", worker, n))
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	t.Cleanup(p.stop)
	return p
}

// post sends one call_ended webhook of a call that never connected.
func (p *poster) post(client *http.Client, addr, callID string) {
	body := []byte(`{"event":"call_ended","call":{"call_id":"` + callID + `","call_type":"phone_call",` +
		`"call_status":"not_connected","direction":"outbound","disconnection_reason":"dial_no_answer"}}`)
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])

	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/webhooks/retell", bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(retell.SignatureHeader, retell.Sign(body, crashKey, time.Now()))
	resp, err := client.Do(req)

	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err != nil:
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return // never reached the service
		}
		p.unanswered = append(p.unanswered, digest)
	case resp.StatusCode/100 == 2:
		p.answered = append(p.answered, digest)
	}
	if resp != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func (p *poster) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.answered)
}

func (p *poster) stop() {
	p.cancel()
	p.wg.Wait()
}

func (p *poster) results() (answered, unanswered []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.answered...), append([]string(nil), p.unanswered...)
}

// process is a running callcat subcommand.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process exited
	err  error         // Wait's result, set before done is closed
}

func startProcess(t *testing.T, bin, name string, args []string, logs *logSink) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = environment()
	cmd.Stdout = logs.prefixed(name)
	cmd.Stderr = logs.prefixed(name)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to exit.
func (p *process) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.exited() {
		t.Fatalf("kill %s: %v", p.name, err)
	}
	<-p.done
}

// terminate sends SIGTERM and requires a clean exit within timeout (0: 15 s).
func (p *process) terminate(t *testing.T, timeout time.Duration) {
	t.Helper()
	p.stop(t, syscall.SIGTERM, timeout)
}

// interrupt sends SIGINT and requires a clean exit within timeout (0: 15 s).
func (p *process) interrupt(t *testing.T, timeout time.Duration) {
	t.Helper()
	p.stop(t, os.Interrupt, timeout)
}

func (p *process) stop(t *testing.T, sig os.Signal, timeout time.Duration) {
	t.Helper()
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Errorf("signal %s: %v", p.name, err)
		return
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s exited with %v after %v, want exit status 0", p.name, p.err, sig)
		}
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not exit within %v of %v", p.name, timeout, sig)
	}
}

// logSink keeps the last bytes the processes wrote, each line prefixed with
// the process name.
type logSink struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (l *logSink) prefixed(name string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for line := range strings.SplitAfterSeq(string(p), "\n") {
			if line != "" {
				l.buf = append(l.buf, name+": "+line...)
			}
		}
		if over := len(l.buf) - l.max; over > 0 {
			l.buf = append(l.buf[:0], l.buf[over:]...)
		}
		return len(p), nil
	})
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

type writerFunc func(p []byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// waitCondition polls cond until it holds or timeout passes.
func waitCondition(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
