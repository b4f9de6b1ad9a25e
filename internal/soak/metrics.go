package soak

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// ServiceCounters are counters read from the service's own metrics after the
// drain. Maps are keyed by the value of the metric's outcome or class label.
type ServiceCounters struct {
	EventsEmitted         int64            `json:"events_emitted"`          // callcat_events_emitted_total
	Polls                 map[string]int64 `json:"polls"`                   // callcat_polls_total by outcome
	Webhooks              map[string]int64 `json:"webhooks"`                // callcat_webhooks_total by outcome
	ProviderRequests      map[string]int64 `json:"provider_requests"`       // callcat_provider_requests_total by class
	SSEDroppedSubscribers int64            `json:"sse_dropped_subscribers"` // callcat_sse_dropped_subscribers_total
	TrackRejected         int64            `json:"track_rejected"`          // callcat_tracked_calls_rejected_total
	Pruned                map[string]int64 `json:"pruned"`                  // callcat_pruned_records_total by kind
	PruneFailures         int64            `json:"prune_failures"`          // callcat_prune_failures_total
}

// gatherServiceMetrics reads the counters from reg. A metric the service
// does not register reads as zero.
func gatherServiceMetrics(reg prometheus.Gatherer) ServiceCounters {
	out := ServiceCounters{
		Polls:            map[string]int64{},
		Webhooks:         map[string]int64{},
		ProviderRequests: map[string]int64{},
		Pruned:           map[string]int64{},
	}
	families, err := reg.Gather()
	if err != nil && len(families) == 0 {
		return out
	}
	for _, mf := range families {
		switch mf.GetName() {
		case "callcat_events_emitted_total":
			out.EventsEmitted = sumCounters(mf, "", nil)
		case "callcat_polls_total":
			sumCounters(mf, "outcome", out.Polls)
		case "callcat_webhooks_total":
			sumCounters(mf, "outcome", out.Webhooks)
		case "callcat_provider_requests_total":
			sumCounters(mf, "class", out.ProviderRequests)
		case "callcat_sse_dropped_subscribers_total":
			out.SSEDroppedSubscribers = sumCounters(mf, "", nil)
		case "callcat_tracked_calls_rejected_total":
			out.TrackRejected = sumCounters(mf, "", nil)
		case "callcat_pruned_records_total":
			sumCounters(mf, "kind", out.Pruned)
		case "callcat_prune_failures_total":
			out.PruneFailures = sumCounters(mf, "", nil)
		}
	}
	return out
}

// sumCounters returns the sum of the counters of mf and, when byLabel is not
// nil, adds each counter to byLabel under the value of its label.
func sumCounters(mf *dto.MetricFamily, label string, byLabel map[string]int64) int64 {
	var total int64
	for _, m := range mf.GetMetric() {
		v := int64(m.GetCounter().GetValue())
		total += v
		if byLabel == nil {
			continue
		}
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				byLabel[lp.GetValue()] += v
			}
		}
	}
	return total
}
