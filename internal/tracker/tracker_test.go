package tracker_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/store/sqlite"
	"github.com/callcat/callcat/internal/stream"
	"github.com/callcat/callcat/internal/tracker"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testKey = "key_test"

// provider is a get-call endpoint whose response per call the test scripts.
type provider struct {
	mu       sync.Mutex
	handler  func(w http.ResponseWriter, callID string, n int)
	requests map[string][]time.Time
}

func newProvider(t *testing.T, handler func(w http.ResponseWriter, callID string, n int)) (*provider, *retell.Client) {
	t.Helper()
	p := &provider{handler: handler, requests: make(map[string][]time.Time)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/v2/get-call/")
		p.mu.Lock()
		p.requests[id] = append(p.requests[id], time.Now())
		n := len(p.requests[id])
		h := p.handler
		p.mu.Unlock()
		h(w, id, n)
	}))
	t.Cleanup(srv.Close)

	client, err := retell.NewClient(retell.ClientConfig{BaseURL: srv.URL, APIKey: testKey, RequestsPerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return p, client
}

func (p *provider) times(callID string) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.requests[callID]...)
}

func (p *provider) setHandler(h func(w http.ResponseWriter, callID string, n int)) {
	p.mu.Lock()
	p.handler = h
	p.mu.Unlock()
}

func ongoing(w http.ResponseWriter, callID string, _ int) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"call_id":"` + callID + `","call_status":"ongoing","call_type":"phone_call"}`))
}

func ended(w http.ResponseWriter, callID string, _ int) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"call_id":"` + callID + `","call_status":"ended","disconnection_reason":"user_hangup",` +
		`"transcript_object":[{"role":"agent","content":"Bye.","words":[{"word":"Bye.","start":0.1,"end":0.4}]}]}`))
}

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "callcat.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newHub(t *testing.T) *stream.Hub {
	t.Helper()
	hub, err := stream.NewHub(stream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	return hub
}

// run starts tr.Run until the test ends.
func run(t *testing.T, tr *tracker.Tracker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	})
}

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

func fastConfig() tracker.Config {
	return tracker.Config{
		PollInterval:      50 * time.Millisecond,
		ReconcileInterval: time.Second,
		BackoffMin:        10 * time.Millisecond,
		BackoffMax:        50 * time.Millisecond,
		AuthRetryInterval: 100 * time.Millisecond,
		Workers:           4,
	}
}

func TestPollEndsTracking(t *testing.T) {
	p, client := newProvider(t, ongoing)
	db := openStore(t)
	tr, err := tracker.New(db, newHub(t), client, fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr)

	if err := tr.Track("call_a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three polls", func() bool { return len(p.times("call_a")) >= 3 })

	p.setHandler(ended)
	waitFor(t, "call to leave tracking", func() bool { return !tr.IsTracked("call_a") })

	call, err := db.Call(context.Background(), "call_a")
	if err != nil {
		t.Fatal(err)
	}
	if call.Status != callcat.StatusEnded {
		t.Fatalf("status=%q, want ended", call.Status)
	}
	if call.UtteranceCount != 1 {
		t.Fatalf("utterance_count=%d, want 1", call.UtteranceCount)
	}
}

func TestPollHonoursRetryAfter(t *testing.T) {
	p, client := newProvider(t, func(w http.ResponseWriter, callID string, n int) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"status":"error","message":"account rate limited"}`))
			return
		}
		ongoing(w, callID, n)
	})
	tr, err := tracker.New(openStore(t), newHub(t), client, fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr)

	if err := tr.Track("call_a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second poll", func() bool { return len(p.times("call_a")) >= 2 })

	times := p.times("call_a")
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Fatalf("second poll %v after the 429, want at least the 1s Retry-After", gap)
	}
}

func TestPollUnknownCallStopsTracking(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusUnprocessableEntity} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			p, client := newProvider(t, func(w http.ResponseWriter, _ string, _ int) {
				w.WriteHeader(status)
				w.Write([]byte(`{"status":"error","message":"not found"}`))
			})
			tr, err := tracker.New(openStore(t), newHub(t), client, fastConfig())
			if err != nil {
				t.Fatal(err)
			}
			run(t, tr)

			if err := tr.Track("call_a"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "call to leave tracking", func() bool { return !tr.IsTracked("call_a") })
			if n := len(p.times("call_a")); n != 1 {
				t.Fatalf("polls=%d, want 1", n)
			}
		})
	}
}

func TestAuthFailurePausesPolling(t *testing.T) {
	reject := func(w http.ResponseWriter, _ string, _ int) {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"status":"error","message":"invalid api key"}`))
	}
	p, client := newProvider(t, reject)
	tr, err := tracker.New(openStore(t), newHub(t), client, fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr)

	for _, id := range []string{"call_a", "call_b", "call_c"} {
		if err := tr.Track(id); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "readiness to fail", func() bool { return tr.Ready() != nil })

	// While paused, one probe per AuthRetryInterval (100ms) goes out, not
	// one poll per call per PollInterval (50ms).
	time.Sleep(500 * time.Millisecond)
	total := len(p.times("call_a")) + len(p.times("call_b")) + len(p.times("call_c"))
	if total > 10 {
		t.Fatalf("requests while paused=%d, want at most 10", total)
	}

	p.setHandler(ongoing)
	waitFor(t, "readiness to recover", func() bool { return tr.Ready() == nil })
	for _, id := range []string{"call_a", "call_b", "call_c"} {
		before := len(p.times(id))
		waitFor(t, id+" to be polled again", func() bool { return len(p.times(id)) > before })
	}
}

func TestMaxTrackingDuration(t *testing.T) {
	_, client := newProvider(t, ongoing)
	cfg := fastConfig()
	cfg.MaxTrackingDuration = 200 * time.Millisecond
	tr, err := tracker.New(openStore(t), newHub(t), client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr)

	if err := tr.Track("call_a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "call to leave tracking", func() bool { return !tr.IsTracked("call_a") })
}

func TestMaxTracked(t *testing.T) {
	_, client := newProvider(t, ongoing)
	cfg := fastConfig()
	cfg.MaxTracked = 2
	tr, err := tracker.New(openStore(t), newHub(t), client, cfg)
	if err != nil {
		t.Fatal(err)
	}

	for _, id := range []string{"call_a", "call_b"} {
		if err := tr.Track(id); err != nil {
			t.Fatalf("track %s: %v", id, err)
		}
	}
	if err := tr.Track("call_c"); !errors.Is(err, tracker.ErrTooManyCalls) {
		t.Fatalf("third call: err=%v, want ErrTooManyCalls", err)
	}
	if tr.Tracked() != 2 {
		t.Fatalf("tracked=%d, want 2", tr.Tracked())
	}
}

func TestRunResumesLiveCalls(t *testing.T) {
	p, client := newProvider(t, ongoing)
	db := openStore(t)
	ctx := context.Background()
	for _, u := range []callcat.Update{
		{Fields: callcat.CallFields{ID: "call_live", Status: callcat.StatusOngoing}},
		{Fields: callcat.CallFields{ID: "call_done", Status: callcat.StatusEnded}},
	} {
		if _, err := db.Apply(ctx, u); err != nil {
			t.Fatal(err)
		}
	}

	tr, err := tracker.New(db, newHub(t), client, fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr)

	waitFor(t, "the live call to be polled", func() bool { return len(p.times("call_live")) > 0 })
	if tr.IsTracked("call_done") {
		t.Fatalf("ended call is tracked")
	}
	if n := len(p.times("call_done")); n != 0 {
		t.Fatalf("ended call polled %d times, want 0", n)
	}
}

func TestPushSlowsPolling(t *testing.T) {
	p, client := newProvider(t, ongoing)
	cfg := fastConfig()
	cfg.ReconcileInterval = 10 * time.Second
	tr, err := tracker.New(openStore(t), newHub(t), client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr)

	wh := &retell.Webhook{Event: tracker.EventTranscriptUpdated, Call: retell.Call{CallID: "call_a", CallStatus: "ongoing"}}
	push := func(i int) {
		d := callcat.Delivery{Digest: "digest" + string(rune('a'+i)), SignedAt: time.Now().UnixMilli(), ReceivedAt: time.Now()}
		if _, err := tr.HandleWebhook(context.Background(), wh, d); err != nil {
			t.Fatal(err)
		}
	}

	// Pushes every 20ms keep the call current: it is polled at most once
	// (its first slot may fall before the first push is noted).
	for i := range 25 {
		push(i)
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(p.times("call_a")); n > 1 {
		t.Fatalf("polls while pushes flow=%d, want at most 1", n)
	}

	// Once pushes stop, polling returns to PollInterval.
	waitFor(t, "polls after pushes stop", func() bool { return len(p.times("call_a")) >= 3 })
}
