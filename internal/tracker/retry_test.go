package tracker_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/tracker"
	"github.com/prometheus/client_golang/prometheus"
)

// endedWebhook is a call_ended webhook of callID, as the HTTP API passes it.
func endedWebhook(t *testing.T, tr *tracker.Tracker, callID string) {
	t.Helper()
	wh := &retell.Webhook{Event: tracker.EventCallEnded, Call: retell.Call{CallID: callID, CallStatus: "ended"}}
	d := callcat.Delivery{Digest: "digest_" + callID, SignedAt: time.Now().UnixMilli(), ReceivedAt: time.Now()}
	if _, err := tr.HandleWebhook(context.Background(), wh, d); err != nil {
		t.Fatal(err)
	}
}

func TestFinalFetchWaitsForRetryAfter(t *testing.T) {
	p, client := newProvider(t, func(w http.ResponseWriter, callID string, n int) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"status":"error","message":"account rate limited"}`))
			return
		}
		ended(w, callID, n)
	})
	tr, err := tracker.New(openStore(t), newHub(t), client, fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr)

	if err := tr.Track("call_a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first poll", func() bool { return len(p.times("call_a")) >= 1 })

	// call_ended queues the final fetch while the 429's Retry-After runs.
	endedWebhook(t, tr, "call_a")
	waitFor(t, "the final fetch", func() bool { return len(p.times("call_a")) >= 2 })

	times := p.times("call_a")
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Fatalf("final fetch %v after the 429, want at least the 1s Retry-After", gap)
	}
}

func TestFinalFetchRetriedAfterFailure(t *testing.T) {
	p, client := newProvider(t, func(w http.ResponseWriter, callID string, n int) {
		if n <= 2 {
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte(`{"status":"error","message":"upstream failed"}`))
			return
		}
		ended(w, callID, n)
	})
	db := openStore(t)
	tr, err := tracker.New(db, newHub(t), client, fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr)

	endedWebhook(t, tr, "call_a")
	waitFor(t, "the call to leave tracking", func() bool { return !tr.IsTracked("call_a") })

	if n := len(p.times("call_a")); n != 3 {
		t.Fatalf("get-call requests=%d, want 3 (two failed final fetches, then one that succeeded)", n)
	}
	call, err := db.Call(context.Background(), "call_a")
	if err != nil {
		t.Fatal(err)
	}
	if call.UtteranceCount != 1 {
		t.Fatalf("utterance_count=%d, want 1 from the final fetch", call.UtteranceCount)
	}
}

func TestPollFailureKindMalformed(t *testing.T) {
	_, client := newProvider(t, func(w http.ResponseWriter, callID string, n int) {
		if n == 1 {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"call_id":"` + callID + `","call_sta`))
			return
		}
		ended(w, callID, n)
	})
	logs := &lockedBuffer{}
	cfg := fastConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	tr, err := tracker.New(openStore(t), newHub(t), client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr)

	if err := tr.Track("call_a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the call to leave tracking", func() bool { return !tr.IsTracked("call_a") })

	line := ""
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "get-call failed") {
			line = l
		}
	}
	if !strings.Contains(line, "kind=malformed") {
		t.Fatalf("failure line %q, want kind=malformed for a 200 with a cut body", line)
	}
}

// lockedBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestFinalFetchGivenUpAfterAttempts(t *testing.T) {
	p, client := newProvider(t, func(w http.ResponseWriter, _ string, _ int) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"status":"error","message":"service unavailable"}`))
	})
	db := openStore(t)
	reg := prometheus.NewRegistry()
	cfg := fastConfig()
	cfg.FinalFetchAttempts = 3
	cfg.Registerer = reg
	tr, err := tracker.New(db, newHub(t), client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr)

	endedWebhook(t, tr, "call_a")
	waitFor(t, "the call to leave tracking", func() bool { return !tr.IsTracked("call_a") })

	if n := len(p.times("call_a")); n != 3 {
		t.Errorf("get-call requests=%d, want 3 (FinalFetchAttempts)", n)
	}
	polls := pollOutcomes(t, reg)
	if polls["given_up"] != 1 {
		t.Errorf("polls given_up=%v, want 1", polls["given_up"])
	}
	if polls["retry"] != 2 {
		t.Errorf("polls retry=%v, want 2", polls["retry"])
	}
	call, err := db.Call(context.Background(), "call_a")
	if err != nil {
		t.Fatal(err)
	}
	if call.Status != callcat.StatusEnded {
		t.Errorf("status=%q, want ended from the webhook", call.Status)
	}
}

func TestFinalFetchAfterPollInFlight(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	p, client := newProvider(t, func(w http.ResponseWriter, callID string, n int) {
		if n == 1 {
			// A live poll that is in flight when call_ended arrives.
			close(arrived)
			<-release
			ongoing(w, callID, n)
			return
		}
		ended(w, callID, n)
	})
	db := openStore(t)
	tr, err := tracker.New(db, newHub(t), client, fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr)

	if err := tr.Track("call_a"); err != nil {
		t.Fatal(err)
	}
	<-arrived
	endedWebhook(t, tr, "call_a")
	close(release)
	waitFor(t, "the call to leave tracking", func() bool { return !tr.IsTracked("call_a") })

	if n := len(p.times("call_a")); n != 2 {
		t.Fatalf("get-call requests=%d, want 2 (the poll in flight, then the final fetch)", n)
	}
	call, err := db.Call(context.Background(), "call_a")
	if err != nil {
		t.Fatal(err)
	}
	if call.UtteranceCount != 1 {
		t.Fatalf("utterance_count=%d, want 1 from the final fetch", call.UtteranceCount)
	}
}

// pollOutcomes returns callcat_polls_total by outcome from reg.
func pollOutcomes(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range families {
		if mf.GetName() != "callcat_polls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "outcome" {
					out[lp.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
