package memwatch_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"go.uber.org/goleak"

	"github.com/callcat/callcat/internal/memwatch"
)

const mib = 1 << 20

var t0 = time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC)

// mustNew returns a Watcher or fails the test.
func mustNew(tb testing.TB, cfg memwatch.Config) *memwatch.Watcher {
	tb.Helper()
	w, err := memwatch.New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return w
}

// logBuffer collects JSON log lines from any goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the decoded log lines whose msg is one of msgs.
func (b *logBuffer) records(t *testing.T, msgs ...string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		for _, m := range msgs {
			if rec["msg"] == m {
				out = append(out, rec)
			}
		}
	}
	return out
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// sampleAt returns a synthetic sample i intervals after t0.
func sampleAt(i int, interval time.Duration, liveHeap, rss uint64) memwatch.Sample {
	return memwatch.Sample{
		Time:              t0.Add(time.Duration(i) * interval),
		LiveHeapBytes:     liveHeap,
		RSSBytes:          rss,
		Goroutines:        10,
		MachineTotalBytes: 1 << 30,
	}
}

// skipUnlessLinux skips tests that read /proc.
func skipUnlessLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("reads /proc, which %s lacks", runtime.GOOS)
	}
}

func TestSampleThisMachine(t *testing.T) {
	skipUnlessLinux(t)
	runtime.GC() // the live heap is zero until a GC has marked it
	now := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	w := mustNew(t, memwatch.Config{Now: func() time.Time { return now }})

	s := w.Sample()
	if !s.Time.Equal(now) {
		t.Errorf("time=%v, want %v", s.Time, now)
	}
	if s.RSSBytes == 0 {
		t.Errorf("rss=0, want > 0")
	}
	if s.Goroutines == 0 {
		t.Errorf("goroutines=0, want > 0")
	}
	if s.FDs == 0 {
		t.Errorf("fds=0, want > 0")
	}
	if s.LiveHeapBytes == 0 {
		t.Errorf("live heap=0, want > 0")
	}
	if s.Threads == 0 {
		t.Errorf("threads=0, want > 0")
	}
	if s.TotalMemoryBytes < s.LiveHeapBytes {
		t.Errorf("total memory=%d, want >= live heap %d", s.TotalMemoryBytes, s.LiveHeapBytes)
	}
	if s.GCCycles == 0 {
		t.Errorf("gc cycles=0, want > 0 after runtime.GC")
	}
	if s.MachineTotalBytes == 0 || s.MachineAvailableBytes > s.MachineTotalBytes {
		t.Errorf("machine total=%d available=%d, want 0 < available <= total", s.MachineTotalBytes, s.MachineAvailableBytes)
	}

	// Only the cgroup may be missing on a Linux machine.
	for _, u := range w.Report().Unavailable {
		if !strings.HasPrefix(u.Field, "cgroup_") {
			t.Errorf("unavailable %s: %s, want only cgroup fields", u.Field, u.Reason)
		}
	}
}

func TestSampleOpenFiles(t *testing.T) {
	skipUnlessLinux(t)
	w := mustNew(t, memwatch.Config{})
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	before := w.Sample().FDs
	var files []*os.File
	for range 10 {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	during := w.Sample().FDs
	for _, f := range files {
		f.Close()
	}
	after := w.Sample().FDs

	if during-before != 10 {
		t.Errorf("fds while open=%d, want %d+10", during, before)
	}
	if after != before {
		t.Errorf("fds after close=%d, want %d", after, before)
	}
}

func TestRingWraps(t *testing.T) {
	const interval = time.Second
	w := mustNew(t, memwatch.Config{Interval: interval, Window: 4 * interval, Capacity: 5})
	for i := range 8 {
		w.AddSample(sampleAt(i, interval, uint64(i+1)*mib, uint64(i+1)*mib))
	}

	var got []time.Time
	for _, s := range w.Samples(100) {
		got = append(got, s.Time)
	}
	var want []time.Time
	for i := 3; i < 8; i++ {
		want = append(want, t0.Add(time.Duration(i)*interval))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("sample times (-want +got):\n%s", diff)
	}

	newest := w.Samples(2)
	if len(newest) != 2 || newest[1].LiveHeapBytes != 8*mib || newest[0].LiveHeapBytes != 7*mib {
		t.Fatalf("Samples(2)=%+v, want live heaps 7 MiB, 8 MiB", newest)
	}
	if n := len(w.Samples(0)); n != 0 {
		t.Fatalf("len(Samples(0))=%d, want 0", n)
	}
	if c := w.Report().SampleCount; c != 5 {
		t.Fatalf("sample count=%d, want 5", c)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	logger, logs := newLogger()
	w := mustNew(t, memwatch.Config{Interval: 5 * time.Millisecond, Window: 50 * time.Millisecond, Capacity: 100, Logger: logger})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	// Three samples: the first one at once, then two ticks.
	deadline := time.Now().Add(10 * time.Second)
	for len(w.Samples(3)) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("samples=%d after 10 s, want 3", len(w.Samples(3)))
		}
		time.Sleep(time.Millisecond)
	}
	cancel()

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run=%v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Run still running 10 s after cancel")
	}
	goleak.VerifyNone(t)

	if n := len(logs.records(t, "memwatch started")); n != 1 {
		t.Errorf("start lines=%d, want 1", n)
	}
	if n := len(logs.records(t, "memwatch stopped")); n != 1 {
		t.Errorf("stop lines=%d, want 1", n)
	}
}

func TestGrowthLoggedOnce(t *testing.T) {
	const (
		interval = 10 * time.Second
		window   = time.Minute
		step     = 36 << 10 // bytes per interval: 36 KiB * 360 = 12.66 MiB/h
		perHour  = step * 360
	)
	logger, logs := newLogger()
	w := mustNew(t, memwatch.Config{Interval: interval, Window: window, Capacity: 60, Logger: logger})
	warnings := func() int { return len(logs.records(t, "memory growing")) }
	recoveries := func() int { return len(logs.records(t, "memory growth recovered")) }

	// Growth: the slope is known from the fifth sample (i=4), so it has
	// been above the maximum for a whole window at i=10.
	heap := uint64(100 * mib)
	i := 0
	for ; i < 10; i++ {
		w.AddSample(sampleAt(i, interval, heap, 2*heap))
		heap += step
	}
	if n := warnings(); n != 0 {
		t.Fatalf("warnings before a full window=%d, want 0", n)
	}
	for ; i < 30; i++ {
		w.AddSample(sampleAt(i, interval, heap, 2*heap))
		heap += step
	}
	if n := warnings(); n != 1 {
		t.Fatalf("warnings during growth=%d, want 1", n)
	}
	if !w.Report().Growth.Growing {
		t.Fatalf("growing=false during growth, want true")
	}

	// Flat: once the window holds no growth the state recovers, once.
	for ; i < 60; i++ {
		w.AddSample(sampleAt(i, interval, heap, 2*heap))
	}
	if n := warnings(); n != 1 {
		t.Fatalf("warnings after growth=%d, want 1", n)
	}
	if n := recoveries(); n != 1 {
		t.Fatalf("recoveries=%d, want 1", n)
	}
	if w.Report().Growth.Growing {
		t.Fatalf("growing=true after recovery, want false")
	}

	warning := logs.records(t, "memory growing")[0]
	if warning["level"] != "WARN" {
		t.Errorf("warning level=%v, want WARN", warning["level"])
	}
	slope, _ := warning["slope_bytes_per_hour"].(float64)
	if slope < perHour*0.999 || slope > perHour*1.001 {
		t.Errorf("warning slope=%v, want %v", slope, perHour)
	}
	for _, key := range []string{"window", "live_heap_bytes", "rss_bytes", "max_bytes_per_hour"} {
		if _, ok := warning[key]; !ok {
			t.Errorf("warning has no %s: %v", key, warning)
		}
	}
	if level := logs.records(t, "memory growth recovered")[0]["level"]; level != "INFO" {
		t.Errorf("recovery level=%v, want INFO", level)
	}
}

func TestGrowthBelowMaxNotLogged(t *testing.T) {
	const interval = 10 * time.Second
	logger, logs := newLogger()
	w := mustNew(t, memwatch.Config{Interval: interval, Window: time.Minute, Capacity: 60, Logger: logger})
	heap := uint64(100 * mib)
	for i := range 60 {
		w.AddSample(sampleAt(i, interval, heap, heap))
		heap += 1 << 10 // 360 KiB/h, below the 1 MiB/h default
	}
	if n := len(logs.records(t, "memory growing", "memory growth recovered")); n != 0 {
		t.Fatalf("growth lines=%d, want 0", n)
	}
}

func TestUnavailableLoggedOnce(t *testing.T) {
	const interval = time.Second
	logger, logs := newLogger()
	w := mustNew(t, memwatch.Config{Interval: interval, Window: 4 * interval, Capacity: 10, Logger: logger})
	reason := errors.New("no cgroup here")
	for i := range 3 {
		w.AddSampleMissing(sampleAt(i, interval, mib, mib), "cgroup_usage_bytes", reason)
	}

	lines := logs.records(t, "memory field unavailable")
	if len(lines) != 1 {
		t.Fatalf("unavailable lines=%d, want 1", len(lines))
	}
	if lines[0]["field"] != "cgroup_usage_bytes" {
		t.Errorf("field=%v, want cgroup_usage_bytes", lines[0]["field"])
	}
	want := []memwatch.Unavailable{{Field: "cgroup_usage_bytes", Reason: "no cgroup here"}}
	if diff := cmp.Diff(want, w.Report().Unavailable); diff != "" {
		t.Errorf("unavailable (-want +got):\n%s", diff)
	}
}

func TestNewInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  memwatch.Config
	}{
		{"WindowTooShort", memwatch.Config{Interval: 10 * time.Second, Window: 30 * time.Second}},
		{"CapacityTooSmall", memwatch.Config{Interval: 10 * time.Second, Window: time.Hour, Capacity: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := memwatch.New(tt.cfg); err == nil {
				t.Fatalf("err=nil, want an error")
			}
		})
	}
}

func TestNewDuplicateRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	w := mustNew(t, memwatch.Config{Registerer: reg})
	if _, err := memwatch.New(memwatch.Config{Registerer: reg}); err == nil {
		t.Fatalf("err=nil, want a registration error")
	}

	// The failed New leaves the first Watcher's gauges in place.
	w.AddSample(sampleAt(0, time.Second, mib, mib))
	if got := gather(t, reg)["callcat_memwatch_samples"]; got != 1 {
		t.Fatalf("callcat_memwatch_samples=%v, want 1", got)
	}
}

// gather returns the registry's gauge values keyed by name and labels, as
// name{label="value"}, and fails the test on lint problems.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}

	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += fmt.Sprintf("{%s=%q}", l.GetName(), l.GetValue())
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	// Samples every 15 min keep the slope's arithmetic exact.
	const interval = 15 * time.Minute
	reg := prometheus.NewRegistry()
	w := mustNew(t, memwatch.Config{Interval: interval, Window: time.Hour, Capacity: 10, Registerer: reg})

	rssStep := uint64(mib / 4) // 1 MiB/h
	for i := range 4 {
		s := sampleAt(i, interval, 100*mib, 200*mib+uint64(i)*rssStep)
		s.CgroupLimitBytes = 512 * mib
		w.AddSample(s)
	}

	// Four samples: no slope yet, so no growth series.
	want := map[string]float64{
		"callcat_memory_live_heap_bytes": 100 * mib,
		"callcat_memory_rss_bytes":       200*mib + 3*mib/4,
		"callcat_memory_limit_bytes":     512 * mib,
		"callcat_memwatch_samples":       4,
		"callcat_memwatch_capacity":      10,
	}
	if diff := cmp.Diff(want, gather(t, reg)); diff != "" {
		t.Fatalf("metrics after 4 samples (-want +got):\n%s", diff)
	}

	// The fifth sample has no cgroup limit, so the machine's memory is the limit.
	w.AddSample(sampleAt(4, interval, 100*mib, 200*mib+4*rssStep))
	want = map[string]float64{
		"callcat_memory_live_heap_bytes":                           100 * mib,
		"callcat_memory_rss_bytes":                                 201 * mib,
		"callcat_memory_limit_bytes":                               1 << 30,
		"callcat_memwatch_samples":                                 5,
		"callcat_memwatch_capacity":                                10,
		`callcat_memory_growth_bytes_per_hour{series="live_heap"}`: 0,
		`callcat_memory_growth_bytes_per_hour{series="rss"}`:       mib,
	}
	if diff := cmp.Diff(want, gather(t, reg)); diff != "" {
		t.Fatalf("metrics after 5 samples (-want +got):\n%s", diff)
	}
}

func BenchmarkSample(b *testing.B) {
	// The clock moves one interval per sample, so the window holds the
	// 181 samples it holds in production rather than the whole ring.
	now := t0
	clock := func() time.Time {
		now = now.Add(memwatch.DefaultInterval)
		return now
	}
	w := mustNew(b, memwatch.Config{Registerer: prometheus.NewRegistry(), Now: clock})
	b.ReportAllocs()
	for b.Loop() {
		w.Sample()
	}
}

func TestRingFullLoggedOnce(t *testing.T) {
	const interval = time.Second
	logger, logs := newLogger()
	w := mustNew(t, memwatch.Config{Interval: interval, Window: 4 * interval, Capacity: 5, Logger: logger})

	for i := range 4 {
		w.AddSample(sampleAt(i, interval, mib, mib))
	}
	if recs := logs.records(t, "memwatch ring full; each new sample replaces the oldest"); len(recs) != 0 {
		t.Fatalf("ring-full lines after 4 of 5 samples=%d, want 0", len(recs))
	}

	for i := 4; i < 12; i++ {
		w.AddSample(sampleAt(i, interval, mib, mib))
	}
	recs := logs.records(t, "memwatch ring full; each new sample replaces the oldest")
	if len(recs) != 1 {
		t.Fatalf("ring-full lines after 12 samples=%d, want 1", len(recs))
	}
	if c := recs[0]["capacity"]; c != float64(5) {
		t.Errorf("capacity=%v, want 5", c)
	}
}
