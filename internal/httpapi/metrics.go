package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the API's Prometheus series. Labels take values from fixed
// sets only: never a call id or a raw path.
type metrics struct {
	webhooks        *prometheus.CounterVec
	webhookDuration prometheus.Histogram
	streams         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callcat_webhooks_total",
			Help: "Provider webhooks received, by event and outcome.",
		}, []string{"event", "outcome"}),
		webhookDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "callcat_webhook_duration_seconds",
			Help:    "Time from reading a webhook to acknowledging it.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_sse_streams",
			Help: "Open SSE responses.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.webhooks, m.webhookDuration, m.streams} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// eventLabel bounds the event label to the names the provider documents.
func eventLabel(event string) string {
	switch event {
	case "call_started", "call_ended", "call_analyzed", "transcript_updated",
		"transfer_started", "transfer_bridged", "transfer_cancelled", "transfer_ended":
		return event
	default:
		return "other"
	}
}
