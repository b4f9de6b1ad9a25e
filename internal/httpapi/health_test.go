package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"
)

type healthJSON struct {
	Time   string `json:"time"`
	Memory *struct {
		IntervalSeconds float64 `json:"interval_seconds"`
		Samples         []struct {
			Time          string `json:"time"`
			LiveHeapBytes uint64 `json:"live_heap_bytes"`
			RSSBytes      uint64 `json:"rss_bytes"`
			Goroutines    int    `json:"goroutines"`
		} `json:"samples"`
		MaxBytesPerHour float64 `json:"max_bytes_per_hour"`
		Verdict         string  `json:"verdict"`
	} `json:"memory"`
	TrackedCalls          *float64 `json:"tracked_calls"`
	SSESubscribers        *float64 `json:"sse_subscribers"`
	ProviderRequestsTotal *float64 `json:"provider_requests_total"`
	ProviderErrorsTotal   *float64 `json:"provider_errors_total"`
	WebhooksTotal         *float64 `json:"webhooks_total"`
}

func TestHealth(t *testing.T) {
	ts := startServer(t, withTokens)
	for range 3 {
		ts.Memory.Sample()
	}
	postFixture(t, ts.URL, "outbound/webhook_1_call_started.json")
	postFixture(t, ts.URL, "outbound/webhook_2_transcript_updated.json")
	openSSE(t, streamRequest(t, ts.URL+"/v1/stream", apiToken)).nextOf(t, "snapshot", 5*time.Second)

	resp := get(t, ts.URL+"/v1/health", apiToken)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status=%d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Fatalf("Cache-Control=%q, want no-store", got)
	}
	var h healthJSON
	if err := json.Unmarshal([]byte(resp.Body), &h); err != nil {
		t.Fatalf("decode %s: %v", resp.Body, err)
	}

	if h.Memory == nil {
		t.Fatalf("memory=null, want the report")
	}
	if len(h.Memory.Samples) != 3 {
		t.Fatalf("samples=%d, want 3", len(h.Memory.Samples))
	}
	if s := h.Memory.Samples[2]; s.RSSBytes == 0 || s.Goroutines == 0 {
		t.Fatalf("newest sample=%+v, want RSS and goroutines", s)
	}
	if h.Memory.Verdict != "unknown" {
		t.Fatalf("verdict=%q, want unknown with 3 samples", h.Memory.Verdict)
	}
	if h.WebhooksTotal == nil || *h.WebhooksTotal != 2 {
		t.Fatalf("webhooks_total=%s, want 2", number(h.WebhooksTotal))
	}
	if h.SSESubscribers == nil || *h.SSESubscribers != 1 {
		t.Fatalf("sse_subscribers=%s, want 1", number(h.SSESubscribers))
	}
	// The tracker never runs here, so its gauge exists but stays 0.
	if h.TrackedCalls == nil {
		t.Fatalf("tracked_calls=null, want the tracker's gauge")
	}
	// This server has no provider client, so its counters are unknown.
	if h.ProviderRequestsTotal != nil || h.ProviderErrorsTotal != nil {
		t.Fatalf("provider totals=%s/%s, want null", number(h.ProviderRequestsTotal), number(h.ProviderErrorsTotal))
	}
}

func number(p *float64) string {
	if p == nil {
		return "null"
	}
	return strconv.FormatFloat(*p, 'g', -1, 64)
}
