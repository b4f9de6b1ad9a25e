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
