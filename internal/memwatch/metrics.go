package memwatch

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the series label of callcat_memory_growth_bytes_per_hour.
const (
	seriesLiveHeap = "live_heap"
	seriesRSS      = "rss"
)

// watcherMetrics are the gauges set after each sample. The Go and process
// collectors belong to the caller's registry, not here.
type watcherMetrics struct {
	liveHeap prometheus.Gauge
	rss      prometheus.Gauge
	growth   *prometheus.GaugeVec
	limit    prometheus.Gauge
	samples  prometheus.Gauge
	capacity prometheus.Gauge
}

func newWatcherMetrics(reg prometheus.Registerer) (*watcherMetrics, error) {
	m := &watcherMetrics{
		liveHeap: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_memory_live_heap_bytes",
			Help: "Heap bytes marked live by the last garbage collection.",
		}),
		rss: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_memory_rss_bytes",
			Help: "Resident set size of the process in bytes.",
		}),
		growth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callcat_memory_growth_bytes_per_hour",
			Help: "Least-squares growth of the series over the memwatch window, in bytes per hour; absent while too few samples exist.",
		}, []string{"series"}),
		limit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_memory_limit_bytes",
			Help: "Memory the process can use before the kernel kills it: the cgroup limit, or the machine's total memory when no cgroup limit is set.",
		}),
		samples: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_memwatch_samples",
			Help: "Samples held in the memwatch ring.",
		}),
		capacity: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_memwatch_capacity",
			Help: "Samples the memwatch ring holds at most; once full, each sample replaces the oldest.",
		}),
	}

	collectors := []prometheus.Collector{m.liveHeap, m.rss, m.growth, m.limit, m.samples, m.capacity}
	for i, c := range collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range collectors[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("register memwatch metrics: %w", err)
		}
	}
	return m, nil
}

// set updates the gauges from the newest sample and slopes.
func (m *watcherMetrics) set(s Sample, count int, g growth) {
	m.liveHeap.Set(float64(s.LiveHeapBytes))
	m.rss.Set(float64(s.RSSBytes))
	limit, _ := memoryLimit(s)
	m.limit.Set(float64(limit))
	m.samples.Set(float64(count))
	setOrDelete(m.growth, seriesLiveHeap, g.liveHeap, g.liveHeapOK)
	setOrDelete(m.growth, seriesRSS, g.rss, g.rssOK)
}

func setOrDelete(vec *prometheus.GaugeVec, series string, v float64, ok bool) {
	if ok {
		vec.WithLabelValues(series).Set(v)
	} else {
		vec.DeleteLabelValues(series)
	}
}
