package soak

import (
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/callcat/callcat/internal/memwatch"
	"github.com/callcat/callcat/internal/sim"
)

// Phase names, in order.
const (
	PhaseBaseline = "baseline"
	PhaseWarmup   = "warm-up"
	PhaseSteady   = "steady"
	PhaseDrain    = "drain"
)

// Rule names, as Report.Rules lists them.
const (
	RuleLiveHeapSlope        = "live_heap_slope"
	RuleLiveHeapAfterDrain   = "live_heap_after_drain"
	RuleGoroutinesAfterDrain = "goroutines_after_drain"
	RuleFDsAfterDrain        = "fds_after_drain"
	RuleTrackedAfterDrain    = "tracked_calls_after_drain"
	RuleUnfinishedCalls      = "unfinished_calls_after_drain"
	RuleUndeliveredWebhooks  = "undelivered_webhooks_after_drain"
)

// Report is the outcome of a soak, as written to the JSON report. Times
// are seconds since the baseline sample.
type Report struct {
	Settings       Settings  `json:"config"`
	StartedAt      time.Time `json:"started_at"`
	ElapsedSeconds float64   `json:"elapsed_seconds"` // from Run's start to the after-drain sample
	Phases         []Phase   `json:"phases"`

	Calls       CallCounts      `json:"calls"`
	Webhooks    WebhookCounts   `json:"webhooks"`
	Service     ServiceCounters `json:"service"`
	Subscribers SubscriberStats `json:"subscribers"`
	Load        Load            `json:"load"`
	CPU         CPUUsage        `json:"cpu"`

	// FDTargets counts the open descriptors by target at the baseline and
	// after the drain (see fdTargets); nil where /proc cannot be read.
	FDTargets struct {
		Baseline   map[string]int `json:"baseline"`
		AfterDrain map[string]int `json:"after_drain"`
	} `json:"fd_targets"`

	Baseline    Figures     `json:"baseline"`
	Peak        Figures     `json:"peak"` // the maximum of each figure over all samples
	AfterDrain  Figures     `json:"after_drain"`
	SteadyState SteadyState `json:"steady_state"`

	// Database is the service's database over the soak, with its own
	// samples.
	Database Database `json:"database"`

	Rules []RuleResult `json:"rules"`
	Pass  bool         `json:"pass"`

	Samples []SamplePoint `json:"samples"`
}

// Settings is the configuration of the soak after defaults, in JSON units.
type Settings struct {
	Calls                 int     `json:"calls"`
	TotalCalls            int     `json:"total_calls"`
	CallLengthSeconds     float64 `json:"call_length_seconds"`
	Speed                 float64 `json:"speed"`
	PollIntervalSeconds   float64 `json:"poll_interval_seconds"`
	PushTranscripts       bool    `json:"push_transcripts"`
	LiveTranscript        bool    `json:"live_transcript"`
	NotConnectedRatio     float64 `json:"not_connected_ratio"`
	Subscribers           int     `json:"subscribers"`
	DurationSeconds       float64 `json:"duration_seconds"`
	WarmupSeconds         float64 `json:"warmup_seconds"`
	SampleIntervalSeconds float64 `json:"sample_interval_seconds"`
	DrainTimeoutSeconds   float64 `json:"drain_timeout_seconds"`
	ProviderRPS           float64 `json:"provider_rps"`
	ProviderMaxInFlight   int     `json:"provider_max_in_flight"`
	PlantLeak             bool    `json:"plant_leak"`
	Seed                  int64   `json:"seed"`

	// Faults are the injected provider faults; all zero for a clean run.
	Faults sim.Faults `json:"faults"`

	MaxGrowthBytesPerHour      float64 `json:"max_growth_bytes_per_hour"`
	MaxHeapAboveBaselineBytes  uint64  `json:"max_heap_above_baseline_bytes"`
	MaxGoroutinesAboveBaseline int     `json:"max_goroutines_above_baseline"`
	MaxFDsAboveBaseline        int     `json:"max_fds_above_baseline"`

	// Retention windows and the prune interval in wall-clock seconds. A
	// zero call retention keeps ended calls, and other zeros mean the
	// app's defaults (app.RetentionConfig).
	RetentionSeconds            float64 `json:"retention_seconds"`
	DeliveryRetentionSeconds    float64 `json:"delivery_retention_seconds"`
	IdempotencyRetentionSeconds float64 `json:"idempotency_retention_seconds"`
	PruneIntervalSeconds        float64 `json:"prune_interval_seconds"`
	MaxDBGrowthBytesPerHour     float64 `json:"max_db_growth_bytes_per_hour"` // 0: DefaultDBGrowthShare of the churn growth

	GoVersion  string `json:"go_version"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	NumCPU     int    `json:"num_cpu"`
}

// Phase is one stretch of the soak.
type Phase struct {
	Name         string  `json:"name"`
	StartSeconds float64 `json:"start_seconds"`
	EndSeconds   float64 `json:"end_seconds"`
}

// CallCounts are the simulator's call counters and the tracker's state
// after the drain.
type CallCounts struct {
	Started      int64 `json:"started"`
	Completed    int64 `json:"completed"` // analyzed, the last step of a lifecycle
	Ended        int64 `json:"ended"`     // connected and ended
	NotConnected int64 `json:"not_connected"`

	TrackedAfterDrain    int   `json:"tracked_after_drain"`
	UnfinishedAfterDrain int64 `json:"unfinished_after_drain"` // started minus completed
	DrainTimedOut        bool  `json:"drain_timed_out"`        // DrainTimeout passed before calls finished or left the tracker

	// GetCallRequests are the get-call requests the simulator served.
	GetCallRequests int64 `json:"get_call_requests"`
}

// WebhookCounts are the simulator's webhook deliveries.
type WebhookCounts struct {
	Sent    int64 `json:"sent"`
	Retried int64 `json:"retried"`
	Failed  int64 `json:"failed"`
	Dropped int64 `json:"dropped"`

	// QueuedAfterDrain are webhooks still waiting for delivery when the
	// drain ended; only a drain that timed out leaves any.
	QueuedAfterDrain int `json:"queued_after_drain"`
}

// Load shows whether the service kept up with the churn. Webhooks the
// simulator could not deliver yet wait in its queue, whose memory counts in
// the same process, so a queue that grows through the steady phase makes
// the slope measure the simulator's backlog rather than callcat.
type Load struct {
	PeakWebhooksQueued       int `json:"peak_webhooks_queued"`
	SteadyStartWebhooksQueue int `json:"steady_start_webhooks_queued"` // at the first check in the steady phase
	WebhooksQueuedAtDrain    int `json:"webhooks_queued_at_drain"`
	PeakTrackedCalls         int `json:"peak_tracked_calls"`

	steadySeen bool
}

// observe records one check of the simulator's queue and the tracker.
func (l *Load) observe(queued, tracked int, steady bool) {
	l.PeakWebhooksQueued = max(l.PeakWebhooksQueued, queued)
	l.PeakTrackedCalls = max(l.PeakTrackedCalls, tracked)
	if steady && !l.steadySeen {
		l.steadySeen = true
		l.SteadyStartWebhooksQueue = queued
	}
}

// fellBehind reports whether the webhook queue grew through the steady phase
// by more than the webhooks of one round of calls, the mark of a service
// that cannot keep up.
func (l *Load) fellBehind(calls int) bool {
	return l.WebhooksQueuedAtDrain-l.SteadyStartWebhooksQueue > 10*calls
}

// CPUUsage is the process's user and system CPU time.
type CPUUsage struct {
	TotalSeconds float64 `json:"total_seconds"` // from process start to the after-drain sample
	ChurnSeconds float64 `json:"churn_seconds"` // during warm-up and steady phases

	// PerCallMilliseconds is ChurnSeconds per call started during the
	// churn: service, simulator and subscribers together.
	PerCallMilliseconds float64 `json:"per_call_milliseconds"`
}

// Figures are the process figures of one sample.
type Figures struct {
	LiveHeapBytes    uint64 `json:"live_heap_bytes"`
	TotalMemoryBytes uint64 `json:"total_memory_bytes"`
	HeapObjects      uint64 `json:"heap_objects"`
	RSSBytes         uint64 `json:"rss_bytes"`
	Goroutines       int    `json:"goroutines"`
	Threads          int    `json:"threads"`
	FDs              int    `json:"fds"`
}

func figuresOf(s memwatch.Sample) Figures {
	return Figures{
		LiveHeapBytes:    s.LiveHeapBytes,
		TotalMemoryBytes: s.TotalMemoryBytes,
		HeapObjects:      s.HeapObjects,
		RSSBytes:         s.RSSBytes,
		Goroutines:       s.Goroutines,
		Threads:          s.Threads,
		FDs:              s.FDs,
	}
}

func maxFigures(a, b Figures) Figures {
	return Figures{
		LiveHeapBytes:    max(a.LiveHeapBytes, b.LiveHeapBytes),
		TotalMemoryBytes: max(a.TotalMemoryBytes, b.TotalMemoryBytes),
		HeapObjects:      max(a.HeapObjects, b.HeapObjects),
		RSSBytes:         max(a.RSSBytes, b.RSSBytes),
		Goroutines:       max(a.Goroutines, b.Goroutines),
		Threads:          max(a.Threads, b.Threads),
		FDs:              max(a.FDs, b.FDs),
	}
}

// SteadyState holds the growth slopes fitted over the steady phase; a slope
// is nil when the phase held fewer than memwatch.MinSlopePoints samples.
type SteadyState struct {
	Samples              int      `json:"samples"`
	LiveHeapBytesPerHour *float64 `json:"live_heap_bytes_per_hour"`
	RSSBytesPerHour      *float64 `json:"rss_bytes_per_hour"`
}

// RuleResult is one pass criterion with the figure it checked.
type RuleResult struct {
	Rule   string  `json:"rule"`
	Figure string  `json:"figure"` // the quantity Value measures, in words
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"` // Value must not exceed it
	Unit   string  `json:"unit"`
	Pass   bool    `json:"pass"`

	// Message states the outcome with the figure, for logs and errors.
	Message string `json:"message"`
}

// SamplePoint is one memory sample of the time series.
type SamplePoint struct {
	Seconds float64 `json:"t"`
	Phase   string  `json:"phase"`
	Figures
}

// Err returns nil when every rule passed, and otherwise an error naming each
// failed figure.
func (r *Report) Err() error {
	var failed []string
	for _, rule := range r.Rules {
		if !rule.Pass {
			failed = append(failed, rule.Message)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return errors.New("soak failed: " + strings.Join(failed, "; "))
}

// Rule returns the result of the named rule.
func (r *Report) Rule(name string) (RuleResult, bool) {
	for _, rule := range r.Rules {
		if rule.Rule == name {
			return rule, true
		}
	}
	return RuleResult{}, false
}

// report assembles the Report from the runner's state, the memory samples
// and the database samples.
func (r *runner) report(samples []memwatch.Sample, dbSamples []dbSample, service ServiceCounters) *Report {
	cfg := &r.cfg
	since := func(t time.Time) float64 { return t.Sub(r.baselineAt).Seconds() }

	steadyStart := r.steadyStart
	if steadyStart.After(r.drainStart) {
		// TotalCalls ended the churn within the warm-up.
		steadyStart = r.drainStart
	}

	rep := &Report{
		Settings:       r.settings(),
		StartedAt:      r.startedAt,
		ElapsedSeconds: r.afterDrainAt.Sub(r.startedAt).Seconds(),
		Phases: []Phase{
			{PhaseBaseline, 0, since(r.churnStart)},
			{PhaseWarmup, since(r.churnStart), since(steadyStart)},
			{PhaseSteady, since(steadyStart), since(r.drainStart)},
			{PhaseDrain, since(r.drainStart), since(r.afterDrainAt)},
		},
		Calls: CallCounts{
			Started:              r.simStats.CallsStarted,
			Completed:            r.simStats.CallsAnalyzed,
			Ended:                r.simStats.CallsEnded,
			NotConnected:         r.simStats.CallsNotConnected,
			TrackedAfterDrain:    r.trackedAfterDrain,
			UnfinishedAfterDrain: r.simStats.CallsStarted - r.simStats.CallsAnalyzed,
			DrainTimedOut:        r.drainTimedOut,
			GetCallRequests:      r.simStats.GetCallRequests,
		},
		Webhooks: WebhookCounts{
			Sent:    r.simStats.WebhooksSent,
			Retried: r.simStats.WebhooksRetried,
			Failed:  r.simStats.WebhooksFailed,
			Dropped: r.simStats.WebhooksDropped,

			QueuedAfterDrain: r.simStats.WebhooksQueued,
		},
		Service:     service,
		Subscribers: r.subStats,
		Load:        r.load,
		CPU: CPUUsage{
			TotalSeconds: r.cpuTotal.Seconds(),
			ChurnSeconds: (r.cpuAtDrainStart - r.cpuAtChurnStart).Seconds(),
		},
		Baseline:   figuresOf(r.baseline),
		AfterDrain: figuresOf(r.afterDrain),
		Samples:    make([]SamplePoint, 0, len(samples)),
	}
	rep.FDTargets.Baseline, rep.FDTargets.AfterDrain = r.baselineFDs, r.afterDrainFDs
	if rep.Calls.Started > 0 {
		rep.CPU.PerCallMilliseconds = 1000 * rep.CPU.ChurnSeconds / float64(rep.Calls.Started)
	}

	var heapPoints, rssPoints []memwatch.Point
	for _, s := range samples {
		if s.Time.Before(r.baselineAt) {
			continue // the watcher's first sample, before the baseline
		}
		phase := phaseAt(s.Time, r.churnStart, steadyStart, r.drainStart)
		rep.Samples = append(rep.Samples, SamplePoint{Seconds: since(s.Time), Phase: phase, Figures: figuresOf(s)})
		rep.Peak = maxFigures(rep.Peak, figuresOf(s))
		if phase != PhaseSteady {
			continue
		}
		rep.SteadyState.Samples++
		if s.LiveHeapBytes > 0 {
			heapPoints = append(heapPoints, memwatch.Point{T: s.Time, V: float64(s.LiveHeapBytes)})
		}
		if s.RSSBytes > 0 {
			rssPoints = append(rssPoints, memwatch.Point{T: s.Time, V: float64(s.RSSBytes)})
		}
	}
	if v, ok := memwatch.Slope(heapPoints); ok {
		rep.SteadyState.LiveHeapBytesPerHour = &v
	}
	if v, ok := memwatch.Slope(rssPoints); ok {
		rep.SteadyState.RSSBytesPerHour = &v
	}
	rep.Database = r.databaseReport(dbSamples, steadyStart)

	rep.Rules = evaluate(rep, cfg.Rules)
	rep.Pass = true
	for _, rule := range rep.Rules {
		rep.Pass = rep.Pass && rule.Pass
	}
	return rep
}

func phaseAt(t, churnStart, steadyStart, drainStart time.Time) string {
	switch {
	case t.Before(churnStart):
		return PhaseBaseline
	case t.Before(steadyStart):
		return PhaseWarmup
	case t.Before(drainStart):
		return PhaseSteady
	default:
		return PhaseDrain
	}
}

func (r *runner) settings() Settings {
	cfg := &r.cfg
	return Settings{
		Calls:                      cfg.Calls,
		TotalCalls:                 cfg.TotalCalls,
		CallLengthSeconds:          cfg.CallLength.Seconds(),
		Speed:                      cfg.Speed,
		PollIntervalSeconds:        cfg.PollInterval.Seconds(),
		PushTranscripts:            cfg.PushTranscripts,
		LiveTranscript:             cfg.LiveTranscript,
		NotConnectedRatio:          cfg.NotConnectedRatio,
		Subscribers:                cfg.Subscribers,
		DurationSeconds:            cfg.Duration.Seconds(),
		WarmupSeconds:              cfg.Warmup.Seconds(),
		SampleIntervalSeconds:      cfg.SampleInterval.Seconds(),
		DrainTimeoutSeconds:        cfg.DrainTimeout.Seconds(),
		ProviderRPS:                cfg.ProviderRPS,
		ProviderMaxInFlight:        cfg.ProviderMaxInFlight,
		PlantLeak:                  cfg.PlantLeak,
		Seed:                       cfg.Seed,
		Faults:                     cfg.Faults,
		MaxGrowthBytesPerHour:      cfg.Rules.MaxGrowthPerHour,
		MaxHeapAboveBaselineBytes:  cfg.Rules.MaxHeapAboveBaseline,
		MaxGoroutinesAboveBaseline: cfg.Rules.MaxGoroutinesAboveBaseline,
		MaxFDsAboveBaseline:        cfg.Rules.MaxFDsAboveBaseline,

		RetentionSeconds:            cfg.Retention.Calls.Seconds(),
		DeliveryRetentionSeconds:    cfg.Retention.Deliveries.Seconds(),
		IdempotencyRetentionSeconds: cfg.Retention.Idempotency.Seconds(),
		PruneIntervalSeconds:        cfg.Retention.Interval.Seconds(),
		MaxDBGrowthBytesPerHour:     cfg.Rules.MaxDBGrowthPerHour,

		GoVersion:  runtime.Version(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
	}
}

// evaluate checks the report's figures against the rules.
func evaluate(rep *Report, rules Rules) []RuleResult {
	var out []RuleResult

	slope := RuleResult{
		Rule:   RuleLiveHeapSlope,
		Figure: "steady-state live heap slope",
		Limit:  rules.MaxGrowthPerHour,
		Unit:   "bytes/h",
	}
	if v := rep.SteadyState.LiveHeapBytesPerHour; v != nil {
		slope.Value = *v
		slope.Pass = *v <= rules.MaxGrowthPerHour
		slope.Message = fmt.Sprintf("steady-state live heap slope %s/h, limit %s/h",
			formatSignedBytes(*v), formatBytes(rules.MaxGrowthPerHour))
	} else {
		slope.Message = fmt.Sprintf("steady-state live heap slope unknown: the steady phase held %d samples, fewer than %d; lengthen the duration or shorten the sample interval",
			rep.SteadyState.Samples, memwatch.MinSlopePoints)
	}
	out = append(out, slope)

	heapAbove := float64(rep.AfterDrain.LiveHeapBytes) - float64(rep.Baseline.LiveHeapBytes)
	out = append(out, RuleResult{
		Rule:   RuleLiveHeapAfterDrain,
		Figure: "live heap after drain minus baseline",
		Value:  heapAbove,
		Limit:  float64(rules.MaxHeapAboveBaseline),
		Unit:   "bytes",
		Pass:   heapAbove <= float64(rules.MaxHeapAboveBaseline),
		Message: fmt.Sprintf("live heap after drain %s, baseline %s: %s, limit +%s",
			formatBytes(float64(rep.AfterDrain.LiveHeapBytes)), formatBytes(float64(rep.Baseline.LiveHeapBytes)),
			formatSignedBytes(heapAbove), formatBytes(float64(rules.MaxHeapAboveBaseline))),
	})

	out = append(out, countRule(RuleGoroutinesAfterDrain, "goroutines", rep.AfterDrain.Goroutines, rep.Baseline.Goroutines, rules.MaxGoroutinesAboveBaseline))
	fds := countRule(RuleFDsAfterDrain, "open file descriptors", rep.AfterDrain.FDs, rep.Baseline.FDs, rules.MaxFDsAboveBaseline)
	if grown := grownTargets(rep.FDTargets.Baseline, rep.FDTargets.AfterDrain); !fds.Pass && grown != "" {
		fds.Message += " (more than at the baseline: " + grown + ")"
	}
	out = append(out, fds)

	tracked := rep.Calls.TrackedAfterDrain
	out = append(out, RuleResult{
		Rule:    RuleTrackedAfterDrain,
		Figure:  "calls tracked after drain",
		Value:   float64(tracked),
		Unit:    "calls",
		Pass:    tracked == 0,
		Message: fmt.Sprintf("calls tracked after drain %d, limit 0", tracked),
	})
	unfinished := rep.Calls.UnfinishedAfterDrain
	out = append(out, RuleResult{
		Rule:    RuleUnfinishedCalls,
		Figure:  "calls started but not completed after drain",
		Value:   float64(unfinished),
		Unit:    "calls",
		Pass:    unfinished == 0,
		Message: fmt.Sprintf("calls unfinished after drain %d of %d started, limit 0", unfinished, rep.Calls.Started),
	})
	queued := rep.Webhooks.QueuedAfterDrain
	out = append(out, RuleResult{
		Rule:    RuleUndeliveredWebhooks,
		Figure:  "webhooks queued in the simulator after drain",
		Value:   float64(queued),
		Unit:    "webhooks",
		Pass:    queued == 0,
		Message: fmt.Sprintf("webhooks undelivered after drain %d, limit 0", queued),
	})

	// Without retention the database grows with every call, so its slope
	// is reported but not checked.
	if rep.Settings.RetentionSeconds > 0 {
		out = append(out, dbSizeRule(rep, rules))
	}
	return out
}

func countRule(name, what string, after, baseline, limit int) RuleResult {
	above := after - baseline
	return RuleResult{
		Rule:    name,
		Figure:  what + " after drain minus baseline",
		Value:   float64(above),
		Limit:   float64(limit),
		Unit:    what,
		Pass:    above <= limit,
		Message: fmt.Sprintf("%s after drain %d, baseline %d: %+d, limit +%d", what, after, baseline, above, limit),
	}
}

// grownTargets lists the descriptor targets open more often after the drain
// than at the baseline, such as "socket +3, /data/callcat.db +1".
func grownTargets(baseline, after map[string]int) string {
	var grown []string
	for target, n := range after {
		if d := n - baseline[target]; d > 0 {
			grown = append(grown, fmt.Sprintf("%s +%d", target, d))
		}
	}
	slices.Sort(grown)
	return strings.Join(grown, ", ")
}

// WriteSummary writes a short human summary of the report.
func (r *Report) WriteSummary(w io.Writer) error {
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "callcat soak: %s after %s\n", verdict, time.Duration(r.ElapsedSeconds*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(&b, "  calls: %d started, %d completed, %d tracked after drain; %d polls, %d webhooks\n",
		r.Calls.Started, r.Calls.Completed, r.Calls.TrackedAfterDrain, r.Calls.GetCallRequests, r.Webhooks.Sent)
	fmt.Fprintf(&b, "  subscribers: up to %d, %d streams, %d events received, %d refused at the limit, %d errors\n",
		r.Subscribers.Max, r.Subscribers.StreamsOpened, r.Subscribers.Events, r.Subscribers.StreamsLimited, r.Subscribers.StreamErrors)
	fmt.Fprintf(&b, "  load: webhook queue peak %d, %d at the drain; tracked calls peak %d\n",
		r.Load.PeakWebhooksQueued, r.Load.WebhooksQueuedAtDrain, r.Load.PeakTrackedCalls)
	if r.Load.fellBehind(r.Settings.Calls) {
		fmt.Fprintf(&b, "  NOTE: the webhook queue grew from %d to %d during the steady phase: the service did not keep up,\n"+
			"        so the slopes include the simulator's backlog. Lower --calls or --speed.\n",
			r.Load.SteadyStartWebhooksQueue, r.Load.WebhooksQueuedAtDrain)
	}

	fmt.Fprintf(&b, "  %-12s %12s %12s %12s\n", "", "baseline", "peak", "after drain")
	fmt.Fprintf(&b, "  %-12s %12s %12s %12s\n", "live heap", formatBytes(float64(r.Baseline.LiveHeapBytes)),
		formatBytes(float64(r.Peak.LiveHeapBytes)), formatBytes(float64(r.AfterDrain.LiveHeapBytes)))
	fmt.Fprintf(&b, "  %-12s %12s %12s %12s\n", "RSS", formatBytes(float64(r.Baseline.RSSBytes)),
		formatBytes(float64(r.Peak.RSSBytes)), formatBytes(float64(r.AfterDrain.RSSBytes)))
	fmt.Fprintf(&b, "  %-12s %12d %12d %12d\n", "goroutines", r.Baseline.Goroutines, r.Peak.Goroutines, r.AfterDrain.Goroutines)
	fmt.Fprintf(&b, "  %-12s %12d %12d %12d\n", "fds", r.Baseline.FDs, r.Peak.FDs, r.AfterDrain.FDs)
	db := &r.Database
	fmt.Fprintf(&b, "  %-12s %12s %12s %12s\n", "db size", formatBytes(float64(db.Baseline.SizeBytes)),
		formatBytes(float64(db.Peak.SizeBytes)), formatBytes(float64(db.AfterDrain.SizeBytes)))
	fmt.Fprintf(&b, "  %-12s %12s %12s %12s\n", "db + WAL", formatBytes(float64(db.Baseline.DiskBytes)),
		formatBytes(float64(db.Peak.DiskBytes)), formatBytes(float64(db.AfterDrain.DiskBytes)))
	fmt.Fprintf(&b, "  %-12s %12d %12d %12d\n", "stored calls", db.Baseline.StoredCalls, db.Peak.StoredCalls, db.AfterDrain.StoredCalls)

	fmt.Fprintf(&b, "  steady-state slope over %d samples: live heap %s, RSS %s\n", r.SteadyState.Samples,
		formatSlope(r.SteadyState.LiveHeapBytesPerHour), formatSlope(r.SteadyState.RSSBytesPerHour))
	fmt.Fprintf(&b, "  database slope over the steady phase: size %s, on disk with WAL %s; over its second half (%d samples): size %s, on disk %s\n",
		formatSlope(db.SteadyState.SizeBytesPerHour), formatSlope(db.SteadyState.DiskBytesPerHour), db.SteadyState.SecondHalfSamples,
		formatSlope(db.SteadyState.SecondHalfSizePerHour), formatSlope(db.SteadyState.SecondHalfDiskPerHour))
	if st := r.Settings; st.RetentionSeconds > 0 {
		fmt.Fprintf(&b, "  retention: calls %s, deliveries %s, idempotency keys %s, pruned every %s; pruned %d calls, %d deliveries\n",
			seconds(st.RetentionSeconds), seconds(st.DeliveryRetentionSeconds), seconds(st.IdempotencyRetentionSeconds),
			seconds(st.PruneIntervalSeconds), r.Service.Pruned["calls"], r.Service.Pruned["deliveries"])
		fmt.Fprintf(&b, "  database: %s per stored call, so without retention the churn would add about %s/h\n",
			formatBytes(db.BytesPerStoredCall), formatBytes(db.ChurnBytesPerHour))
	} else {
		fmt.Fprintf(&b, "  retention: off, so the database grows with every call and its slope is not checked\n")
	}
	fmt.Fprintf(&b, "  cpu: %.1f s during the churn, %.2f ms per call\n", r.CPU.ChurnSeconds, r.CPU.PerCallMilliseconds)

	for _, rule := range r.Rules {
		mark := "ok  "
		if !rule.Pass {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s %s\n", mark, rule.Message)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// seconds renders a number of seconds as a duration, e.g. "2m0s".
func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).String()
}

func formatSlope(v *float64) string {
	if v == nil {
		return "unknown"
	}
	return formatSignedBytes(*v) + "/h"
}

// formatBytes renders a byte count in binary units, e.g. "3.2 MiB".
func formatBytes(n float64) string {
	abs := math.Abs(n)
	switch {
	case abs >= 1<<30:
		return fmt.Sprintf("%.2f GiB", n/(1<<30))
	case abs >= 1<<20:
		return fmt.Sprintf("%.1f MiB", n/(1<<20))
	case abs >= 1<<10:
		return fmt.Sprintf("%.0f KiB", n/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", n)
	}
}

func formatSignedBytes(n float64) string {
	if n >= 0 {
		return "+" + formatBytes(n)
	}
	return formatBytes(n)
}
