package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/httpapi"
	"github.com/callcat/callcat/internal/stream"
	"github.com/prometheus/client_golang/prometheus"
)

// lifecycleCallJSON is a call as the lifecycle stream carries it.
type lifecycleCallJSON struct {
	CallID              string          `json:"call_id"`
	Status              string          `json:"status"`
	Direction           *string         `json:"direction"`
	FromNumber          *string         `json:"from_number"`
	ToNumber            *string         `json:"to_number"`
	AgentID             *string         `json:"agent_id"`
	StartTimestamp      *int64          `json:"start_timestamp"`
	DisconnectionReason *string         `json:"disconnection_reason"`
	UtteranceCount      int             `json:"utterance_count"`
	Metadata            json.RawMessage `json:"metadata"`
	CallAnalysis        json.RawMessage `json:"call_analysis"`
}

type snapshotJSON struct {
	Calls     []lifecycleCallJSON `json:"calls"`
	Truncated bool                `json:"truncated"`
}

func decodeEvent[T any](t *testing.T, ev sseEvent) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(ev.Data), &v); err != nil {
		t.Fatalf("decode %s event %q: %v", ev.Event, ev.Data, err)
	}
	return v
}

func str(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func TestLifecycleStream(t *testing.T) {
	ts := startServer(t, withTokens)
	c := openSSE(t, streamRequest(t, ts.URL+"/v1/stream", apiToken))

	first, ok := c.next(t, 5*time.Second)
	if !ok || first.Event != "snapshot" {
		t.Fatalf("first event=%+v, want a snapshot", first)
	}
	if snap := decodeEvent[snapshotJSON](t, first); len(snap.Calls) != 0 || snap.Truncated {
		t.Fatalf("snapshot=%+v, want no calls", snap)
	}
	if first.ID != "" {
		t.Fatalf("snapshot id=%q, want none: the lifecycle stream is not resumable", first.ID)
	}

	// Started.
	if code := postFixture(t, ts.URL, "outbound/webhook_1_call_started.json"); code != http.StatusNoContent {
		t.Fatalf("call_started: status %d", code)
	}
	started := decodeEvent[lifecycleCallJSON](t, c.nextOf(t, "call", 5*time.Second))
	t.Run("Started", func(t *testing.T) {
		if started.CallID != outboundCallID {
			t.Fatalf("call_id=%q, want %q", started.CallID, outboundCallID)
		}
		if started.Status != "ongoing" {
			t.Fatalf("status=%q, want ongoing", started.Status)
		}
		if str(started.Direction) != "outbound" {
			t.Fatalf("direction=%s, want outbound", str(started.Direction))
		}
		if str(started.FromNumber) != "+15550100001" || str(started.ToNumber) != "+15550142310" {
			t.Fatalf("from/to=%s/%s, want +15550100001/+15550142310", str(started.FromNumber), str(started.ToNumber))
		}
		if started.AgentID == nil || started.StartTimestamp == nil {
			t.Fatalf("agent_id=%v start_timestamp=%v, want both", started.AgentID, started.StartTimestamp)
		}
		if started.Metadata != nil {
			t.Fatalf("metadata=%s, want none in lifecycle events", started.Metadata)
		}
	})

	// Utterances: four transcript updates in a burst are merged into fewer
	// call events, and the last one carries the final count.
	for i, name := range []string{
		"outbound/webhook_2_transcript_updated.json",
		"outbound/webhook_3_transcript_updated.json",
		"outbound/webhook_4_transcript_updated.json",
		"outbound/webhook_5_transcript_updated_final.json",
	} {
		if code := postFixture(t, ts.URL, name); code != http.StatusNoContent {
			t.Fatalf("transcript update %d: status %d", i+1, code)
		}
	}
	var updates []lifecycleCallJSON
	for len(updates) == 0 || updates[len(updates)-1].UtteranceCount < 10 {
		updates = append(updates, decodeEvent[lifecycleCallJSON](t, c.nextOf(t, "call", 5*time.Second)))
	}
	t.Run("UtteranceCount", func(t *testing.T) {
		if got := updates[len(updates)-1].UtteranceCount; got != 10 {
			t.Fatalf("utterance_count=%d, want 10", got)
		}
		if len(updates) >= 4 {
			t.Fatalf("%d call events for 4 transcript updates sent at once, want them merged", len(updates))
		}
	})

	// Ended.
	if code := postFixture(t, ts.URL, "outbound/webhook_6_call_ended.json"); code != http.StatusNoContent {
		t.Fatalf("call_ended: status %d", code)
	}
	ended := decodeEvent[lifecycleCallJSON](t, c.nextOf(t, "ended", 5*time.Second))
	t.Run("Ended", func(t *testing.T) {
		if ended.Status != "ended" {
			t.Fatalf("status=%q, want ended", ended.Status)
		}
		if str(ended.DisconnectionReason) != "agent_hangup" {
			t.Fatalf("disconnection_reason=%s, want agent_hangup", str(ended.DisconnectionReason))
		}
		if ended.CallAnalysis != nil {
			t.Fatalf("call_analysis=%s, want none before call_analyzed", ended.CallAnalysis)
		}
	})

	// Analysis, found by the stream's periodic check of ended calls.
	if code := postFixture(t, ts.URL, "outbound/webhook_7_call_analyzed.json"); code != http.StatusNoContent {
		t.Fatalf("call_analyzed: status %d", code)
	}
	analysis := decodeEvent[lifecycleCallJSON](t, c.nextOf(t, "analysis", 10*time.Second))
	t.Run("Analysis", func(t *testing.T) {
		var a struct {
			CallSuccessful *bool  `json:"call_successful"`
			UserSentiment  string `json:"user_sentiment"`
		}
		if err := json.Unmarshal(analysis.CallAnalysis, &a); err != nil {
			t.Fatalf("call_analysis=%s: %v", analysis.CallAnalysis, err)
		}
		if a.CallSuccessful == nil || !*a.CallSuccessful || a.UserSentiment != "Positive" {
			t.Fatalf("call_analysis=%s, want successful and Positive", analysis.CallAnalysis)
		}
	})
}

func TestLifecycleSnapshot(t *testing.T) {
	ts := startServer(t, nil)
	postFixture(t, ts.URL, "outbound/webhook_1_call_started.json")
	postFixture(t, ts.URL, "error/webhook_call_started.json")

	c := openSSE(t, streamRequest(t, ts.URL+"/v1/stream", ""))
	snap := decodeEvent[snapshotJSON](t, c.nextOf(t, "snapshot", 5*time.Second))
	var ids []string
	for _, call := range snap.Calls {
		ids = append(ids, call.CallID+"="+call.Status)
	}
	if len(snap.Calls) != 2 {
		t.Fatalf("snapshot calls=%v, want the 2 live calls", ids)
	}
	for _, call := range snap.Calls {
		if call.Status != "ongoing" {
			t.Fatalf("snapshot calls=%v, want only live calls", ids)
		}
	}

	// An ended call leaves the snapshot.
	postFixture(t, ts.URL, "outbound/webhook_6_call_ended.json")
	again := openSSE(t, streamRequest(t, ts.URL+"/v1/stream", ""))
	snap = decodeEvent[snapshotJSON](t, again.nextOf(t, "snapshot", 5*time.Second))
	if len(snap.Calls) != 1 || snap.Calls[0].CallID == outboundCallID {
		t.Fatalf("snapshot after end=%+v, want only the other call", snap.Calls)
	}
}

func TestStreamCloser(t *testing.T) {
	ts := startServer(t, nil)
	postFixture(t, ts.URL, "outbound/webhook_1_call_started.json")

	lifecycle := openSSE(t, streamRequest(t, ts.URL+"/v1/stream", ""))
	call := openSSE(t, streamRequest(t, ts.URL+"/v1/calls/"+outboundCallID+"/stream", ""))
	lifecycle.nextOf(t, "snapshot", 5*time.Second)
	call.nextOf(t, "status", 5*time.Second)

	ts.Streams.CloseAll()
	lifecycle.waitEnd(t, 5*time.Second)
	call.waitEnd(t, 5*time.Second)

	// A stream opened afterwards is not affected by the earlier CloseAll.
	req := streamRequest(t, ts.URL+"/v1/calls/"+outboundCallID+"/stream", "")
	req.Header.Set("Last-Event-ID", "1")
	resumed := openSSE(t, req)
	postFixture(t, ts.URL, "outbound/webhook_2_transcript_updated.json")
	ev := resumed.nextOf(t, "utterance", 5*time.Second)
	if ev.ID != "2" {
		t.Fatalf("first event after resuming at 1 has id %q, want 2", ev.ID)
	}
	waitFor(t, 5*time.Second, "closed streams to leave the hub", func() bool { return ts.Hub.Subscribers() == 1 })
}

// smallBuffers shrinks the kernel buffers of accepted connections, so that a
// client that stops reading blocks the server's writes after a few KiB.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetWriteBuffer(4 << 10)
	}
	return conn, err
}

func TestLifecycleSlowClientDropped(t *testing.T) {
	ts := startServerWith(t, serverOptions{
		hub:      stream.Config{BufferSize: 4},
		listener: func(l net.Listener) net.Listener { return smallBuffers{l} },
		config: func(cfg *httpapi.Config) {
			cfg.StreamWriteTimeout = 2 * time.Second
		},
	})

	// Calls whose ended events make large lifecycle events.
	const calls = 300
	agent := strings.Repeat("a", 2000)
	for i := range calls {
		_, err := ts.Store.Apply(context.Background(), callcat.Update{Fields: callcat.CallFields{
			ID: fmt.Sprintf("call_slow_%03d", i), Status: callcat.StatusEnded, AgentID: agent,
		}})
		if err != nil {
			t.Fatal(err)
		}
	}

	// A client that reads the header and then nothing.
	var dialer net.Dialer
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if tcp, ok := conn.(*net.TCPConn); ok {
				tcp.SetReadBuffer(4 << 10)
			}
			return conn, err
		},
	}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/v1/stream", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status=%d, want 200", resp.StatusCode)
	}
	waitFor(t, 5*time.Second, "the stream to subscribe", func() bool { return ts.Hub.Subscribers() == 1 })

	for i := range calls {
		ts.Hub.Publish([]callcat.Event{{
			CallID: fmt.Sprintf("call_slow_%03d", i), Seq: 1, Type: callcat.EventEnded,
			Data: json.RawMessage(`{"status":"ended"}`),
		}})
	}

	waitFor(t, 10*time.Second, "the slow client to be dropped", func() bool {
		return metricSum(t, ts.Reg, "callcat_sse_dropped_subscribers_total") == 1
	})
	waitFor(t, 10*time.Second, "the stream to end", func() bool {
		return ts.Hub.Subscribers() == 0 && metricSum(t, ts.Reg, "callcat_sse_streams") == 0
	})
}

// metricSum adds the values of every series of a counter or gauge.
func metricSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
