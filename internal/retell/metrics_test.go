package retell_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callcat/callcat/internal/retell"
)

// metricValue returns the value of the first series of a gauge or counter.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestClientMetricsInFlight(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		_, _ = io.WriteString(w, `{"call_id":"c1"}`)
	}))
	reg := prometheus.NewRegistry()
	c := newClient(t, srv.URL, retell.ClientConfig{MaxInFlight: 1, Registerer: reg})

	errs := make(chan error, 2)
	go func() {
		_, err := c.GetCall(context.Background(), "c1")
		errs <- err
	}()
	<-entered
	if v := metricValue(t, reg, "callcat_provider_requests_in_flight"); v != 1 {
		t.Errorf("in flight=%v with one request at the server, want 1", v)
	}

	// The second request finds the only slot taken.
	go func() {
		_, err := c.GetCall(context.Background(), "c2")
		errs <- err
	}()
	waitUntil(t, "the second request to wait for a slot", func() bool {
		return metricValue(t, reg, "callcat_provider_slot_waits_total") == 1
	})
	release <- struct{}{}
	<-entered
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("GetCall: %v", err)
		}
	}

	if v := metricValue(t, reg, "callcat_provider_requests_in_flight"); v != 0 {
		t.Errorf("in flight=%v after both requests, want 0", v)
	}
	if v := metricValue(t, reg, "callcat_provider_max_in_flight"); v != 1 {
		t.Errorf("max in flight=%v, want 1", v)
	}
}

func TestClientMetricsRateLimited(t *testing.T) {
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"call_id":"c1"}`)
	}))
	reg := prometheus.NewRegistry()
	// One token, refilled every 20 ms: the second request waits for it.
	c := newClient(t, srv.URL, retell.ClientConfig{RequestsPerSecond: 50, Burst: 1, Registerer: reg})

	for range 2 {
		if _, err := c.GetCall(context.Background(), "c1"); err != nil {
			t.Fatalf("GetCall: %v", err)
		}
	}
	if v := metricValue(t, reg, "callcat_provider_rate_limited_total"); v != 1 {
		t.Errorf("rate limited=%v, want 1", v)
	}
	if v := metricValue(t, reg, "callcat_provider_rate_limit_wait_seconds_total"); v <= 0 {
		t.Errorf("rate limit wait=%vs, want more than 0", v)
	}
	if v := metricValue(t, reg, "callcat_provider_max_requests_per_second"); v != 50 {
		t.Errorf("max requests per second=%v, want 50", v)
	}
}

func TestClientMetricsTooLarge(t *testing.T) {
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"call_id":"c1","transcript":"`+strings.Repeat("x", 4096)+`"}`)
	}))
	reg := prometheus.NewRegistry()
	c := newClient(t, srv.URL, retell.ClientConfig{MaxResponseBytes: 1024, Registerer: reg})

	_, err := c.GetCall(context.Background(), "c1")
	if !errors.Is(err, retell.ErrResponseTooLarge) {
		t.Fatalf("GetCall err=%v, want ErrResponseTooLarge", err)
	}
	if v := metricValue(t, reg, "callcat_provider_responses_too_large_total"); v != 1 {
		t.Errorf("responses too large=%v, want 1", v)
	}
	if v := metricValue(t, reg, "callcat_provider_max_response_bytes"); v != 1024 {
		t.Errorf("max response bytes=%v, want 1024", v)
	}
}

func TestClientMetricsRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := retell.ClientConfig{BaseURL: "http://127.0.0.1:1", APIKey: testAPIKey, Registerer: reg}
	if _, err := retell.NewClient(cfg); err != nil {
		t.Fatalf("first NewClient: %v", err)
	}
	if _, err := retell.NewClient(cfg); err == nil {
		t.Fatalf("second NewClient on the same registry: err=nil, want a registration error")
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	if len(families) != 8 {
		t.Errorf("gathered metrics=%d, want the first client's 8", len(families))
	}
}

// waitUntil polls cond every millisecond until it holds or 5 s pass.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
