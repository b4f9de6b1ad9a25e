package httpapi

import (
	"testing"
	"time"

	"github.com/callcat/callcat/internal/memwatch"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestHealthVerdict(t *testing.T) {
	slope := func(v float64) *float64 { return &v }
	cases := []struct {
		name   string
		growth memwatch.Growth
		want   string
	}{
		{"NoSlope", memwatch.Growth{MaxBytesPerHour: 100}, verdictUnknown},
		{"Flat", memwatch.Growth{LiveHeapBytesPerHour: slope(50), MaxBytesPerHour: 100}, verdictFlat},
		{"Shrinking", memwatch.Growth{LiveHeapBytesPerHour: slope(-500), MaxBytesPerHour: 100}, verdictFlat},
		{"Rising", memwatch.Growth{LiveHeapBytesPerHour: slope(150), MaxBytesPerHour: 100}, verdictRising},
		{"Growing", memwatch.Growth{LiveHeapBytesPerHour: slope(150), MaxBytesPerHour: 100, Growing: true}, verdictGrowing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := healthFromReport(memwatch.Report{Growth: tc.growth}, time.Time{})
			if got.Verdict != tc.want {
				t.Fatalf("verdict=%q, want %q", got.Verdict, tc.want)
			}
		})
	}
}

func TestHealthLastHour(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	rep := memwatch.Report{Samples: []memwatch.Sample{
		{Time: now.Add(-2 * time.Hour), Goroutines: 1},
		{Time: now.Add(-time.Hour - time.Second), Goroutines: 2},
		{Time: now.Add(-time.Hour), Goroutines: 3},
		{Time: now, Goroutines: 4},
	}}
	got := healthFromReport(rep, now.Add(-healthSpan))
	if len(got.Samples) != 2 || got.Samples[0].Goroutines != 3 || got.Samples[1].Goroutines != 4 {
		t.Fatalf("samples=%+v, want the last two", got.Samples)
	}
}

func TestHealthProviderErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callcat_provider_requests_total", Help: "h"}, []string{"endpoint", "class"})
	reg.MustRegister(requests)
	requests.WithLabelValues("get-call", "2xx").Add(7)
	requests.WithLabelValues("get-call", "5xx").Add(2)
	requests.WithLabelValues("get-call", "4xx").Add(1)
	requests.WithLabelValues("get-call", "error").Add(3)

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := sumSeries(families[0], nil)
	if total == nil || *total != 13 {
		t.Fatalf("total=%v, want 13", total)
	}
	errs := sumSeries(families[0], func(m *dto.Metric) bool { return labelValue(m, "class") != "2xx" })
	if errs == nil || *errs != 6 {
		t.Fatalf("errors=%v, want 6", errs)
	}
}
