package postgres

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of Apply, the values of the outcome label of
// callcat_store_writes_total.
const (
	outcomeChanged   = "changed"    // the transaction wrote a change
	outcomeUnchanged = "unchanged"  // the update matched what was stored
	outcomeDuplicate = "duplicate"  // the webhook delivery was already stored
	outcomeLeaseLost = "lease_lost" // the update's lease is no longer held
	outcomeError     = "error"      // the transaction failed and rolled back
)

// metrics are the metrics of one DB.
type metrics struct {
	registerer prometheus.Registerer
	collectors []prometheus.Collector

	duration       prometheus.Histogram
	writes         *prometheus.CounterVec
	notifySkipped  prometheus.Counter
	listenFailures prometheus.Counter
}

// newMetrics registers the metrics of a DB whose pool is pool with r.
func newMetrics(r prometheus.Registerer, pool *pgxpool.Pool) (*metrics, error) {
	m := &metrics{
		registerer: r,
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "callcat_store_write_duration_seconds",
			Help: "Duration of Apply transactions, including the waits for a pooled connection and for the call's row lock.",
			// From 100µs to about 15 s, the same buckets as the SQLite store.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callcat_store_writes_total",
			Help: "Apply calls by outcome: changed, unchanged, duplicate, lease_lost or error.",
		}, []string{"outcome"}),
		notifySkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_store_notifications_skipped_total",
			Help: "Stored events of calls whose id is too long for a notification; other replicas see them only after a resync.",
		}),
		listenFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_store_listen_failures_total",
			Help: "Failed or lost notification listener connections, each followed by a reconnect after a backoff.",
		}),
	}
	m.collectors = []prometheus.Collector{
		m.duration, m.writes, m.notifySkipped, m.listenFailures, poolCollector{pool: pool},
	}

	for i, c := range m.collectors {
		if err := r.Register(c); err != nil {
			for _, registered := range m.collectors[:i] {
				r.Unregister(registered)
			}
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}

	// Export every outcome from the start, so that rate() has a zero
	// before the first error.
	for _, outcome := range []string{outcomeChanged, outcomeUnchanged, outcomeDuplicate, outcomeLeaseLost, outcomeError} {
		m.writes.WithLabelValues(outcome)
	}
	return m, nil
}

// observe records one Apply call that started at start. It is a no-op on a nil
// receiver, so a DB without a Registerer skips the metrics; so are the other
// methods.
func (m *metrics) observe(start time.Time, outcome string) {
	if m == nil {
		return
	}
	m.duration.Observe(time.Since(start).Seconds())
	m.writes.WithLabelValues(outcome).Inc()
}

func (m *metrics) notifySkip() {
	if m != nil {
		m.notifySkipped.Inc()
	}
}

func (m *metrics) listenFailure() {
	if m != nil {
		m.listenFailures.Inc()
	}
}

// unregister removes the metrics from the Registerer, so that a DB opened
// again later can register them anew.
func (m *metrics) unregister() {
	if m == nil {
		return
	}
	for _, c := range m.collectors {
		m.registerer.Unregister(c)
	}
}

// Descriptions of the pool metrics, read from pgxpool's statistics at each
// scrape.
var (
	poolConnectionsDesc = prometheus.NewDesc("callcat_store_pool_connections",
		"Connections of the store's pool by state: acquired (in use) or idle.", []string{"state"}, nil)
	poolMaxConnectionsDesc = prometheus.NewDesc("callcat_store_pool_max_connections",
		"Size limit of the store's pool.", nil, nil)
	poolWaitsDesc = prometheus.NewDesc("callcat_store_pool_waits_total",
		"Acquires that had to wait because every pooled connection was in use.", nil, nil)
	poolWaitSecondsDesc = prometheus.NewDesc("callcat_store_pool_wait_seconds_total",
		"Time spent waiting for a pooled connection because every one was in use.", nil, nil)
)

// poolCollector exports pgxpool's statistics.
type poolCollector struct {
	pool *pgxpool.Pool
}

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolConnectionsDesc
	ch <- poolMaxConnectionsDesc
	ch <- poolWaitsDesc
	ch <- poolWaitSecondsDesc
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(poolConnectionsDesc, prometheus.GaugeValue, float64(s.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(poolConnectionsDesc, prometheus.GaugeValue, float64(s.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(poolMaxConnectionsDesc, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(poolWaitsDesc, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWaitSecondsDesc, prometheus.CounterValue, s.EmptyAcquireWaitTime().Seconds())
}
