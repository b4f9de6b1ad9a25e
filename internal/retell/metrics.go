package retell

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// clientMetrics show how close the client runs to its bounds. They exist
// without a Registerer too, so the client updates them unconditionally.
type clientMetrics struct {
	inFlight       prometheus.Gauge
	slotWaits      prometheus.Counter
	rateLimited    prometheus.Counter
	rateLimitWait  prometheus.Counter
	tooLarge       prometheus.Counter
	maxInFlight    prometheus.Gauge
	maxRatePerSec  prometheus.Gauge
	maxResponseLen prometheus.Gauge
}

func newClientMetrics(reg prometheus.Registerer) (*clientMetrics, error) {
	m := &clientMetrics{
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_provider_requests_in_flight",
			Help: "Provider requests holding one of the client's in-flight slots, waiting for a rate token or sent.",
		}),
		slotWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_provider_slot_waits_total",
			Help: "Provider requests that found every in-flight slot taken and waited for one.",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_provider_rate_limited_total",
			Help: "Provider requests delayed by the client's requests-per-second limit.",
		}),
		rateLimitWait: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_provider_rate_limit_wait_seconds_total",
			Help: "Time provider requests spent waiting for the requests-per-second limit.",
		}),
		tooLarge: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_provider_responses_too_large_total",
			Help: "Provider responses rejected because their body exceeded the size limit.",
		}),
		maxInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_provider_max_in_flight",
			Help: "Configured bound of concurrent provider requests.",
		}),
		maxRatePerSec: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_provider_max_requests_per_second",
			Help: "Configured limit of provider requests per second; +Inf when unlimited.",
		}),
		maxResponseLen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_provider_max_response_bytes",
			Help: "Configured limit of a provider response body, in bytes.",
		}),
	}
	if reg == nil {
		return m, nil
	}

	// Unregister what succeeded on failure, so that a caller may retry with
	// the same registry.
	collectors := []prometheus.Collector{m.inFlight, m.slotWaits, m.rateLimited, m.rateLimitWait, m.tooLarge,
		m.maxInFlight, m.maxRatePerSec, m.maxResponseLen}
	for i, c := range collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range collectors[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("retell: register metrics: %w", err)
		}
	}
	return m, nil
}
