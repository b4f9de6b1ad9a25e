package stream

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of one Hub. They exist even without a Registerer, so the hub
// updates them unconditionally.
type metrics struct {
	subscribers prometheus.Gauge
	dropped     prometheus.Counter
	published   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_sse_subscribers",
			Help: "Current number of stream hub subscriptions, SSE connections included.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_sse_dropped_subscribers_total",
			Help: "Subscriptions closed because their buffer was full when an event arrived.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_events_published_total",
			Help: "Call events passed to the stream hub, whether or not anyone subscribed.",
		}),
	}
	if reg == nil {
		return m, nil
	}

	// Unregister what succeeded on failure, so that a caller may retry with
	// the same registry.
	collectors := []prometheus.Collector{m.subscribers, m.dropped, m.published}
	for i, c := range collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range collectors[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("register stream metrics: %w", err)
		}
	}
	return m, nil
}
