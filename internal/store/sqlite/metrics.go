package sqlite

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of Apply, the values of the outcome label of
// callcat_store_writes_total.
const (
	outcomeChanged   = "changed"   // the transaction wrote a change
	outcomeUnchanged = "unchanged" // the update matched what was stored
	outcomeDuplicate = "duplicate" // the webhook delivery was already stored
	outcomeError     = "error"     // the transaction failed and rolled back
)

// metrics are the write metrics of one DB.
type metrics struct {
	registerer prometheus.Registerer
	duration   prometheus.Histogram
	writes     *prometheus.CounterVec
}

// newMetrics registers the write metrics with r.
func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		registerer: r,
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "callcat_store_write_duration_seconds",
			Help: "Duration of Apply transactions, including the wait for the single writer connection.",
			// From 100µs, where a small SQLite write lands, to about 15 s.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callcat_store_writes_total",
			Help: "Apply calls by outcome: changed, unchanged, duplicate or error.",
		}, []string{"outcome"}),
	}

	if err := r.Register(m.duration); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	if err := r.Register(m.writes); err != nil {
		r.Unregister(m.duration)
		return nil, fmt.Errorf("register metrics: %w", err)
	}

	// Export every outcome from the start, so that rate() sees a zero
	// before the first error.
	for _, outcome := range []string{outcomeChanged, outcomeUnchanged, outcomeDuplicate, outcomeError} {
		m.writes.WithLabelValues(outcome)
	}
	return m, nil
}

// observe records one Apply call that started at start. It is a no-op on a nil
// receiver, so a DB without a Registerer skips the metrics.
func (m *metrics) observe(start time.Time, outcome string) {
	if m == nil {
		return
	}
	m.duration.Observe(time.Since(start).Seconds())
	m.writes.WithLabelValues(outcome).Inc()
}

// unregister removes the metrics from the Registerer, so that a DB opened
// again later can register them anew. It is a no-op on a nil receiver.
func (m *metrics) unregister() {
	if m == nil {
		return
	}
	m.registerer.Unregister(m.duration)
	m.registerer.Unregister(m.writes)
}
