package memwatch_test

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/memwatch"
)

// getReport requests the report from srv with query and decodes it into a
// generic map, so the test checks the JSON names and nulls.
func getReport(t *testing.T, srv *httptest.Server, query string) map[string]any {
	t.Helper()
	resp, err := http.Get(srv.URL + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status=%d (%s), want 200", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type=%q, want application/json", ct)
	}
	var report map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&report); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return report
}

func TestReportFields(t *testing.T) {
	const interval = 15 * time.Minute
	w := mustNew(t, memwatch.Config{Interval: interval, Window: time.Hour, Capacity: 10})
	srv := httptest.NewServer(w)
	defer srv.Close()

	for i := range 3 {
		w.AddSample(sampleAt(i, interval, 100*mib, 200*mib))
	}
	report := getReport(t, srv, "")

	for _, key := range []string{"current", "growth", "limits", "sample_count", "capacity", "interval_seconds", "window_seconds", "samples", "unavailable"} {
		if _, ok := report[key]; !ok {
			t.Errorf("report has no %q", key)
		}
	}
	growth, _ := report["growth"].(map[string]any)
	for _, key := range []string{"live_heap_bytes_per_hour", "rss_bytes_per_hour"} {
		v, ok := growth[key]
		if !ok {
			t.Errorf("growth has no %q", key)
		}
		if v != nil {
			t.Errorf("growth.%s=%v with 3 samples, want null", key, v)
		}
	}
	limits, _ := report["limits"].(map[string]any)
	for _, key := range []string{"go_memory_limit_bytes", "cgroup_limit_bytes", "memory_limit_bytes", "memory_limit_source", "time_to_limit_seconds"} {
		if _, ok := limits[key]; !ok {
			t.Errorf("limits has no %q", key)
		}
	}
	if v := limits["time_to_limit_seconds"]; v != nil {
		t.Errorf("time_to_limit_seconds=%v without a slope, want null", v)
	}
	if v := report["sample_count"]; v != 3.0 {
		t.Errorf("sample_count=%v, want 3", v)
	}
	if v := report["interval_seconds"]; v != 900.0 {
		t.Errorf("interval_seconds=%v, want 900", v)
	}
	if v := report["window_seconds"]; v != 3600.0 {
		t.Errorf("window_seconds=%v, want 3600", v)
	}
	if samples, _ := report["samples"].([]any); len(samples) != 3 {
		t.Errorf("samples=%d, want 3", len(samples))
	}
	if u, ok := report["unavailable"].([]any); !ok || len(u) != 0 {
		t.Errorf("unavailable=%v, want []", report["unavailable"])
	}
	current, _ := report["current"].(map[string]any)
	for _, key := range []string{"time", "live_heap_bytes", "total_memory_bytes", "heap_objects", "rss_bytes", "goroutines", "threads", "fds", "gc_cycles", "cgroup_limit_bytes", "cgroup_usage_bytes", "machine_total_bytes", "machine_available_bytes"} {
		if _, ok := current[key]; !ok {
			t.Errorf("current has no %q", key)
		}
	}
}

func TestReportEmpty(t *testing.T) {
	w := mustNew(t, memwatch.Config{})
	r := w.Report()
	if r.Current != nil {
		t.Fatalf("current=%+v before the first sample, want nil", r.Current)
	}
	if r.Limits.MemoryLimitBytes != nil {
		t.Fatalf("memory limit=%v before the first sample, want nil", *r.Limits.MemoryLimitBytes)
	}
}

func TestReportTimeToLimit(t *testing.T) {
	// RSS grows 1 MiB every 15 min (4 MiB/h) from 200 MiB to 204 MiB under
	// a cgroup limit of 512 MiB.
	const interval = 15 * time.Minute
	w := mustNew(t, memwatch.Config{Interval: interval, Window: time.Hour, Capacity: 10})
	for i := range 5 {
		s := sampleAt(i, interval, 100*mib, 200*mib+uint64(i)*mib)
		s.CgroupLimitBytes = 512 * mib
		w.AddSample(s)
	}

	r := w.Report()
	if r.Growth.RSSBytesPerHour == nil || *r.Growth.RSSBytesPerHour != 4*mib {
		t.Fatalf("rss slope=%v, want %d", r.Growth.RSSBytesPerHour, 4*mib)
	}
	if r.Limits.MemoryLimitSource != "cgroup" {
		t.Fatalf("limit source=%q, want cgroup", r.Limits.MemoryLimitSource)
	}
	// (512 - 204) MiB at 4 MiB/h is 77 h.
	want := 77 * time.Hour.Seconds()
	if got := r.Limits.TimeToLimitSeconds; got == nil || math.Abs(*got-want) > 1e-6 {
		t.Fatalf("time to limit=%v, want %v", got, want)
	}
}

func TestReportNotGrowing(t *testing.T) {
	const interval = 15 * time.Minute
	w := mustNew(t, memwatch.Config{Interval: interval, Window: time.Hour, Capacity: 10})
	for i := range 5 {
		w.AddSample(sampleAt(i, interval, 100*mib, 200*mib-uint64(i)*mib))
	}
	r := w.Report()
	if r.Growth.RSSBytesPerHour == nil || *r.Growth.RSSBytesPerHour >= 0 {
		t.Fatalf("rss slope=%v, want negative", r.Growth.RSSBytesPerHour)
	}
	if r.Limits.TimeToLimitSeconds != nil {
		t.Fatalf("time to limit=%v while RSS shrinks, want nil", *r.Limits.TimeToLimitSeconds)
	}
	if r.Limits.MemoryLimitSource != "machine" {
		t.Fatalf("limit source=%q, want machine", r.Limits.MemoryLimitSource)
	}
}

func TestHandlerSamplesQuery(t *testing.T) {
	const interval = time.Second
	w := mustNew(t, memwatch.Config{Interval: interval, Window: 4 * interval, Capacity: 8, ReportSamples: 3})
	srv := httptest.NewServer(w)
	defer srv.Close()
	for i := range 10 {
		w.AddSample(sampleAt(i, interval, mib, mib))
	}

	tests := []struct {
		query string
		want  int
	}{
		{"", 3},
		{"?samples=5", 5},
		{"?samples=0", 0},
		{"?samples=1000", 8},
	}
	for _, tt := range tests {
		samples, _ := getReport(t, srv, tt.query)["samples"].([]any)
		if len(samples) != tt.want {
			t.Errorf("query %q: samples=%d, want %d", tt.query, len(samples), tt.want)
		}
	}
}

func TestHandlerInvalidSamples(t *testing.T) {
	srv := httptest.NewServer(mustNew(t, memwatch.Config{}))
	defer srv.Close()
	for _, q := range []string{"?samples=-1", "?samples=ten"} {
		resp, err := http.Get(srv.URL + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("query %q: status=%d, want 400", q, resp.StatusCode)
		}
	}
}

func TestHandlerRejectsPost(t *testing.T) {
	srv := httptest.NewServer(mustNew(t, memwatch.Config{}))
	defer srv.Close()

	resp, err := http.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("status=%d, want 405", resp.StatusCode)
	}
	if allow := resp.Header.Get("Allow"); allow != "GET, HEAD" {
		t.Fatalf("Allow=%q, want %q", allow, "GET, HEAD")
	}
}
