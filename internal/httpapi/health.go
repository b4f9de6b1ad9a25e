package httpapi

import (
	"net/http"
	"time"

	"github.com/callcat/callcat/internal/memwatch"
	dto "github.com/prometheus/client_model/go"
)

// healthSpan is the span of memory samples GET /v1/health returns.
const healthSpan = time.Hour

// Values of healthMemory.Verdict.
const (
	verdictUnknown = "unknown" // too few samples to fit a slope
	verdictFlat    = "flat"    // live-heap slope at or below the limit
	verdictRising  = "rising"  // slope above the limit, not yet for a whole window
	verdictGrowing = "growing" // slope above the limit for a whole window: likely a leak
)

// healthResponse is the body of GET /v1/health. Fields whose source is not
// configured or not yet measured are null. Counters are totals since start;
// clients derive rates from two readings.
type healthResponse struct {
	Time                  time.Time     `json:"time"`
	Memory                *healthMemory `json:"memory"`
	TrackedCalls          *float64      `json:"tracked_calls"`
	SSESubscribers        *float64      `json:"sse_subscribers"`
	ProviderRequestsTotal *float64      `json:"provider_requests_total"`
	ProviderErrorsTotal   *float64      `json:"provider_errors_total"`
	WebhooksTotal         *float64      `json:"webhooks_total"`
}

// healthMemory is the part of the memwatch report the health panel draws.
type healthMemory struct {
	IntervalSeconds      float64        `json:"interval_seconds"`
	WindowSeconds        float64        `json:"window_seconds"`
	Samples              []healthSample `json:"samples"` // the last healthSpan, oldest first
	LiveHeapBytesPerHour *float64       `json:"live_heap_bytes_per_hour"`
	RSSBytesPerHour      *float64       `json:"rss_bytes_per_hour"`
	MaxBytesPerHour      float64        `json:"max_bytes_per_hour"`
	Verdict              string         `json:"verdict"`
}

type healthSample struct {
	Time          time.Time `json:"time"`
	LiveHeapBytes uint64    `json:"live_heap_bytes"`
	RSSBytes      uint64    `json:"rss_bytes"`
	Goroutines    int       `json:"goroutines"`
}

// handleHealth serves GET /v1/health: memory over the last hour with a
// growth verdict, and the few counters the dashboard's health panel shows.
// It is readable with an API token, so the dashboard needs no admin token;
// it carries nothing that /metrics and /debug/memory do not.
func (s *server) handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := healthResponse{Time: s.cfg.Now().UTC()}
		if s.cfg.MemoryReport != nil {
			resp.Memory = healthFromReport(s.cfg.MemoryReport(), s.cfg.Now().Add(-healthSpan))
		}
		if s.cfg.Gatherer != nil {
			families, err := s.cfg.Gatherer.Gather()
			if err != nil {
				// Gather returns what it could collect along with the error.
				s.logger.Debug("gather metrics for health failed", "err", err)
			}
			for _, mf := range families {
				switch mf.GetName() {
				case "callcat_tracked_calls":
					resp.TrackedCalls = sumSeries(mf, nil)
				case "callcat_sse_subscribers":
					resp.SSESubscribers = sumSeries(mf, nil)
				case "callcat_webhooks_total":
					resp.WebhooksTotal = sumSeries(mf, nil)
				case "callcat_provider_requests_total":
					resp.ProviderRequestsTotal = sumSeries(mf, nil)
					resp.ProviderErrorsTotal = sumSeries(mf, func(m *dto.Metric) bool {
						return labelValue(m, "class") != "2xx"
					})
				}
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		s.writeJSON(w, http.StatusOK, resp)
	})
}

// healthFromReport keeps the samples taken after since and names the
// growth verdict.
func healthFromReport(rep memwatch.Report, since time.Time) *healthMemory {
	m := &healthMemory{
		IntervalSeconds:      rep.IntervalSeconds,
		WindowSeconds:        rep.WindowSeconds,
		Samples:              make([]healthSample, 0, len(rep.Samples)),
		LiveHeapBytesPerHour: rep.Growth.LiveHeapBytesPerHour,
		RSSBytesPerHour:      rep.Growth.RSSBytesPerHour,
		MaxBytesPerHour:      rep.Growth.MaxBytesPerHour,
	}
	for _, smp := range rep.Samples {
		if smp.Time.Before(since) {
			continue
		}
		m.Samples = append(m.Samples, healthSample{
			Time:          smp.Time.UTC(),
			LiveHeapBytes: smp.LiveHeapBytes,
			RSSBytes:      smp.RSSBytes,
			Goroutines:    smp.Goroutines,
		})
	}

	switch slope := rep.Growth.LiveHeapBytesPerHour; {
	case rep.Growth.Growing:
		m.Verdict = verdictGrowing
	case slope == nil:
		m.Verdict = verdictUnknown
	case *slope > rep.Growth.MaxBytesPerHour:
		m.Verdict = verdictRising
	default:
		m.Verdict = verdictFlat
	}
	return m
}

// sumSeries adds the values of the counters or gauges of mf that keep
// accepts (all when keep is nil). It returns nil when mf has no series.
func sumSeries(mf *dto.MetricFamily, keep func(*dto.Metric) bool) *float64 {
	metrics := mf.GetMetric()
	if len(metrics) == 0 {
		return nil
	}
	var sum float64
	for _, m := range metrics {
		if keep != nil && !keep(m) {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return &sum
}

func labelValue(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}
