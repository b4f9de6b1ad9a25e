package tracker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the tracker's Prometheus series. None carries a call id.
type metrics struct {
	tracked        prometheus.Gauge
	trackRejected  prometheus.Counter
	expired        prometheus.Counter
	authPaused     prometheus.Gauge
	polls          *prometheus.CounterVec
	unchangedPolls prometheus.Counter
	lateness       prometheus.Histogram
	events         prometheus.Counter
	staleSnapshots prometheus.Counter
	leasesLost     prometheus.Counter
	adopted        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		tracked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_tracked_calls",
			Help: "Live calls held in memory and polled.",
		}),
		trackRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_tracked_calls_rejected_total",
			Help: "Calls not tracked because the tracked-call limit was reached.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_tracking_expired_total",
			Help: "Calls whose polling stopped after the maximum tracking duration.",
		}),
		authPaused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callcat_polling_paused",
			Help: "1 while the provider rejects the API key and polling is paused.",
		}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callcat_polls_total",
			Help: "get-call polls by outcome.",
		}, []string{"outcome"}),
		unchangedPolls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_polls_unchanged_total",
			Help: "Successful polls whose result equalled the last one stored, so the store was not written.",
		}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "callcat_poll_lateness_seconds",
			Help:    "Time between a poll's scheduled and actual start.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.3, 1, 3, 10},
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_events_emitted_total",
			Help: "Call events stored and published.",
		}),
		staleSnapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_stale_snapshots_total",
			Help: "Transcript snapshots ignored because a newer one was stored.",
		}),
		leasesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_leases_lost_total",
			Help: "Call leases this replica lost to another replica.",
		}),
		adopted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_calls_adopted_total",
			Help: "Live calls this replica adopted after their lease expired.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.tracked, m.trackRejected, m.expired, m.authPaused,
		m.polls, m.unchangedPolls, m.lateness, m.events, m.staleSnapshots, m.leasesLost, m.adopted} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
