package soak

import (
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/memwatch"
)

// passingReport returns a report whose figures meet the default rules.
func passingReport() *Report {
	slope := 0.5 * DefaultMaxGrowthPerHour
	rep := &Report{
		Baseline:   Figures{LiveHeapBytes: 3 << 20, Goroutines: 30, FDs: 20},
		AfterDrain: Figures{LiveHeapBytes: 3 << 20, Goroutines: 30, FDs: 20},
		Calls:      CallCounts{Started: 100, Completed: 100},
	}
	rep.SteadyState.Samples = 60
	rep.SteadyState.LiveHeapBytesPerHour = &slope
	return rep
}

func defaultRules() Rules {
	var r Rules
	r.setDefaults()
	return r
}

func TestEvaluateRules(t *testing.T) {
	tests := []struct {
		name     string
		modify   func(*Report)
		failed   string // the one rule expected to fail; "" for none
		contains string // in that rule's message
	}{
		{"AllWithin", func(*Report) {}, "", ""},
		{"HeapAtLimit", func(r *Report) { r.AfterDrain.LiveHeapBytes += DefaultMaxHeapAboveBaseline }, "", ""},
		{"HeapAboveLimit", func(r *Report) { r.AfterDrain.LiveHeapBytes += DefaultMaxHeapAboveBaseline + 1 }, RuleLiveHeapAfterDrain, "live heap after drain"},
		{"HeapBelowBaseline", func(r *Report) { r.AfterDrain.LiveHeapBytes -= 1 << 20 }, "", ""},
		{"SlopeAtLimit", func(r *Report) { v := float64(DefaultMaxGrowthPerHour); r.SteadyState.LiveHeapBytesPerHour = &v }, "", ""},
		{"SlopeAboveLimit", func(r *Report) { v := 1.5 * DefaultMaxGrowthPerHour; r.SteadyState.LiveHeapBytesPerHour = &v }, RuleLiveHeapSlope, "+1.5 MiB/h"},
		{"SlopeNegative", func(r *Report) { v := -8.0 * DefaultMaxGrowthPerHour; r.SteadyState.LiveHeapBytesPerHour = &v }, "", ""},
		{"SlopeUnknown", func(r *Report) { r.SteadyState.LiveHeapBytesPerHour, r.SteadyState.Samples = nil, 3 }, RuleLiveHeapSlope, "held 3 samples"},
		{"GoroutinesAtLimit", func(r *Report) { r.AfterDrain.Goroutines += 2 }, "", ""},
		{"GoroutinesAboveLimit", func(r *Report) { r.AfterDrain.Goroutines += 3 }, RuleGoroutinesAfterDrain, "goroutines after drain 33, baseline 30: +3"},
		{"FDsAboveLimit", func(r *Report) {
			r.AfterDrain.FDs += 3
			r.FDTargets.Baseline = map[string]int{"socket": 2}
			r.FDTargets.AfterDrain = map[string]int{"socket": 5}
		}, RuleFDsAfterDrain, "socket +3"},
		{"Tracked", func(r *Report) { r.Calls.TrackedAfterDrain = 1 }, RuleTrackedAfterDrain, "calls tracked after drain 1"},
		{"Unfinished", func(r *Report) { r.Calls.Completed, r.Calls.UnfinishedAfterDrain = 98, 2 }, RuleUnfinishedCalls, "2 of 100"},
		{"Undelivered", func(r *Report) { r.Webhooks.QueuedAfterDrain = 7 }, RuleUndeliveredWebhooks, "undelivered after drain 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := passingReport()
			tt.modify(rep)

			rep.Rules = evaluate(rep, defaultRules())

			if len(rep.Rules) != 7 {
				t.Fatalf("rules=%d, want 7", len(rep.Rules))
			}
			for _, rule := range rep.Rules {
				wantPass := rule.Rule != tt.failed
				if rule.Pass != wantPass {
					t.Errorf("rule %s pass=%v, want %v: %s", rule.Rule, rule.Pass, wantPass, rule.Message)
				}
				if !rule.Pass && !strings.Contains(rule.Message, tt.contains) {
					t.Errorf("rule %s message %q, want it to contain %q", rule.Rule, rule.Message, tt.contains)
				}
			}
			err := rep.Err()
			if (err == nil) != (tt.failed == "") {
				t.Errorf("Err()=%v, want an error only when a rule fails", err)
			}
		})
	}
}

func TestReportSteadySlope(t *testing.T) {
	t0 := time.Date(2026, 6, 9, 10, 0, 0, 0, time.UTC)
	r := &runner{
		baselineAt: t0,
		churnStart: t0.Add(time.Second),
		drainStart: t0.Add(101 * time.Second),
	}
	r.steadyStart = t0.Add(11 * time.Second)
	r.afterDrainAt = t0.Add(110 * time.Second)
	r.cfg.Rules = defaultRules()
	r.baseline = memwatch.Sample{Time: t0, LiveHeapBytes: 1 << 20}
	r.afterDrain = memwatch.Sample{Time: r.afterDrainAt, LiveHeapBytes: 1 << 20}

	// The live heap climbs during the warm-up, then grows 36 KiB per second
	// (126.6 MiB/h) in the steady phase.
	var samples []memwatch.Sample
	for i := range 111 {
		at := t0.Add(time.Duration(i) * time.Second)
		heap := uint64(1 << 20)
		switch phase := phaseAt(at, r.churnStart, r.steadyStart, r.drainStart); phase {
		case PhaseWarmup:
			heap = uint64(i) << 20
		case PhaseSteady:
			heap = 10<<20 + uint64(i-11)*36<<10
		}
		samples = append(samples, memwatch.Sample{Time: at, LiveHeapBytes: heap, RSSBytes: 2 * heap})
	}

	rep := r.report(samples, nil, ServiceCounters{})

	if rep.SteadyState.Samples != 90 {
		t.Errorf("steady samples=%d, want 90", rep.SteadyState.Samples)
	}
	if v := rep.SteadyState.LiveHeapBytesPerHour; v == nil || math.Abs(*v-36<<10*3600) > 1 {
		t.Errorf("live heap slope=%v, want %d bytes/h", deref(v), 36<<10*3600)
	}
	if v := rep.SteadyState.RSSBytesPerHour; v == nil || math.Abs(*v-2*36<<10*3600) > 1 {
		t.Errorf("RSS slope=%v, want %d bytes/h", deref(v), 2*36<<10*3600)
	}
	rule, _ := rep.Rule(RuleLiveHeapSlope)
	if rule.Pass {
		t.Errorf("slope rule passed at %v bytes/h, want a failure", rule.Value)
	}
	if rep.Peak.LiveHeapBytes != 10<<20+89*36<<10 {
		t.Errorf("peak live heap=%d, want %d", rep.Peak.LiveHeapBytes, 10<<20+89*36<<10)
	}
}

func TestDBSizeRule(t *testing.T) {
	// Without retention the churn would grow the database by 80 MiB/h, so
	// the derived limit is 8 MiB/h.
	const churn = 80 << 20
	const limit = DefaultDBGrowthShare * churn
	tests := []struct {
		name      string
		retention float64 // seconds
		maxGrowth float64 // Rules.MaxDBGrowthPerHour
		churn     float64 // Database.ChurnBytesPerHour
		slope     *float64
		prunedBy  float64 // seconds; the second half starts at 300
		wantRule  bool
		wantPass  bool
		contains  string
	}{
		{"RetentionOff", 0, 0, churn, ptr(100 * limit), 0, false, false, ""},
		{"Level", 120, 0, churn, ptr(0), 150, true, true, "+0 B/h, limit 8.0 MiB/h (10% of the 80.0 MiB/h the churn would add without retention)"},
		{"AtLimit", 120, 0, churn, ptr(limit), 150, true, true, ""},
		{"AboveLimit", 120, 0, churn, ptr(2 * limit), 150, true, false, "+16.0 MiB/h, limit 8.0 MiB/h"},
		{"Shrinking", 120, 0, churn, ptr(-3 * limit), 150, true, true, ""},
		{"FixedLimit", 120, 4 << 20, churn, ptr(5 << 20), 150, true, false, "+5.0 MiB/h, limit 4.0 MiB/h"},
		{"FixedLimitWithoutCount", 120, 4 << 20, 0, ptr(3 << 20), 150, true, true, ""},
		{"LimitUnknown", 120, 0, 0, ptr(0), 150, true, false, "no count of stored calls"},
		{"SlopeUnknown", 120, 0, churn, nil, 150, true, false, "held 3 database samples"},
		{"WindowBeforePruning", 600, 0, churn, ptr(2 * limit), 735, true, false, "before retention has deleted the first calls at about 735 s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := passingReport()
			rep.Settings.RetentionSeconds = tt.retention
			rep.Database.ChurnBytesPerHour = tt.churn
			rep.Database.PrunedBySeconds = tt.prunedBy
			rep.Database.SteadyState.SecondHalfStartSeconds = 300
			rep.Database.SteadyState.SecondHalfSamples = 3
			rep.Database.SteadyState.SecondHalfSizePerHour = tt.slope
			rules := defaultRules()
			rules.MaxDBGrowthPerHour = tt.maxGrowth

			rep.Rules = evaluate(rep, rules)

			rule, ok := rep.Rule(RuleDBSizeSlope)
			if ok != tt.wantRule {
				t.Fatalf("rule %s present=%v, want %v", RuleDBSizeSlope, ok, tt.wantRule)
			}
			if !ok {
				return
			}
			if rule.Pass != tt.wantPass {
				t.Errorf("pass=%v, want %v: %s", rule.Pass, tt.wantPass, rule.Message)
			}
			if !strings.Contains(rule.Message, tt.contains) {
				t.Errorf("message %q, want it to contain %q", rule.Message, tt.contains)
			}
			if err := rep.Err(); !tt.wantPass && (err == nil || !strings.Contains(err.Error(), "database size")) {
				t.Errorf("Err()=%v, want it to name the database size", err)
			}
		})
	}
}

func TestDatabaseReportSecondHalf(t *testing.T) {
	t0 := time.Date(2026, 6, 9, 10, 0, 0, 0, time.UTC)
	r := &runner{
		baselineAt: t0,
		churnStart: t0.Add(time.Second),
		drainStart: t0.Add(101 * time.Second),
	}
	r.steadyStart = t0.Add(21 * time.Second)
	r.cfg.Retention.Calls = 10 * time.Second
	r.cfg.Retention.Interval = time.Second
	r.cfg.CallLength, r.cfg.Speed = 5*time.Second, 1
	r.simStats.CallsStarted = 1000

	// The database grows by 10 KiB a second until 61 s, the middle of the
	// steady phase, and then stays level. Every tenth sample counts the
	// stored calls, which rise to 600 and then fall back to 200.
	var samples []dbSample
	for i := range 111 {
		at := t0.Add(time.Duration(i) * time.Second)
		grown := int64(min(i, 61)) * 10 << 10
		s := dbSample{Time: at, SizeBytes: 100<<10 + grown, MainFileBytes: 80<<10 + grown, WALBytes: 40 << 10, FreeBytes: int64(i % 7 << 12)}
		if i%10 == 0 {
			s.Counted = true
			s.StoredCalls = int64(min(i, 60)*10 - max(i-60, 0)*8)
		}
		samples = append(samples, s)
	}
	r.dbBaseline, r.dbAfterDrain = samples[0], samples[110]

	db := r.databaseReport(samples, r.steadyStart)

	if len(db.Samples) != 111 {
		t.Fatalf("samples=%d, want 111", len(db.Samples))
	}
	if db.SteadyState.Samples != 80 {
		t.Errorf("steady samples=%d, want 80", db.SteadyState.Samples)
	}
	if db.SteadyState.SecondHalfStartSeconds != 61 {
		t.Errorf("second half starts at %v s, want 61", db.SteadyState.SecondHalfStartSeconds)
	}
	if db.SteadyState.SecondHalfSamples != 40 {
		t.Errorf("second-half samples=%d, want 40", db.SteadyState.SecondHalfSamples)
	}
	if v := db.SteadyState.SecondHalfDiskPerHour; v == nil || math.Abs(*v) > 1e-6 {
		t.Errorf("second-half disk slope=%v, want 0", deref(v))
	}
	if v := db.SteadyState.SecondHalfSizePerHour; v == nil || math.Abs(*v) > 1e-6 {
		t.Errorf("second-half size slope=%v, want 0", deref(v))
	}
	if v := db.SteadyState.DiskBytesPerHour; v == nil || *v <= 0 {
		t.Errorf("steady disk slope=%v, want above 0 while the database grows in the first half", deref(v))
	}
	wantPeak := DBFigures{DiskBytes: 120<<10 + 610<<10, WALBytes: 40 << 10, SizeBytes: 100<<10 + 610<<10, FreeBytes: 6 << 12, StoredCalls: 600}
	if db.Peak != wantPeak {
		t.Errorf("peak=%+v, want %+v", db.Peak, wantPeak)
	}
	// 710 KiB over 600 calls, and 1,000 calls in 100 s of churn.
	wantPerCall := float64(710<<10) / 600
	if math.Abs(db.BytesPerStoredCall-wantPerCall) > 1e-6 {
		t.Errorf("bytes per stored call=%v, want %v", db.BytesPerStoredCall, wantPerCall)
	}
	if want := wantPerCall * 36_000; math.Abs(db.ChurnBytesPerHour-want) > 1e-3 {
		t.Errorf("churn bytes per hour=%v, want %v", db.ChurnBytesPerHour, want)
	}
	if db.AfterDrain.StoredCalls != 200 {
		t.Errorf("stored calls after drain=%d, want 200", db.AfterDrain.StoredCalls)
	}
	for _, i := range []int{0, 50, 110} {
		got := db.Samples[i].StoredCalls
		if want := samples[i].StoredCalls; got == nil || *got != want {
			t.Errorf("sample %d stored calls=%v, want %d", i, deref64(got), want)
		}
	}
	if got := db.Samples[55].StoredCalls; got != nil {
		t.Errorf("sample 55 stored calls=%d, want none for a sample that did not count", *got)
	}
	// 6 s of call (5 s plus 20%), 10 s of retention and 1 s of interval
	// after the churn starts at 1 s.
	if db.PrunedBySeconds != 18 {
		t.Errorf("pruned by %v s, want 18", db.PrunedBySeconds)
	}
}

func TestRetentionDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   app.RetentionConfig
		want app.RetentionConfig
	}{
		{"Off", app.RetentionConfig{}, app.RetentionConfig{}},
		{"OffKeepsDeliveries", app.RetentionConfig{Deliveries: time.Minute}, app.RetentionConfig{Deliveries: time.Minute}},
		{"TwoMinutes", app.RetentionConfig{Calls: 2 * time.Minute},
			app.RetentionConfig{Calls: 2 * time.Minute, Deliveries: 2 * time.Minute, Idempotency: 2 * time.Minute, Interval: 12 * time.Second}},
		{"ShortClampsInterval", app.RetentionConfig{Calls: 3 * time.Second},
			app.RetentionConfig{Calls: 3 * time.Second, Deliveries: 3 * time.Second, Idempotency: 3 * time.Second, Interval: time.Second}},
		{"LongClampsInterval", app.RetentionConfig{Calls: 30 * 24 * time.Hour},
			app.RetentionConfig{Calls: 30 * 24 * time.Hour, Deliveries: 30 * 24 * time.Hour, Idempotency: 30 * 24 * time.Hour, Interval: time.Hour}},
		{"ExplicitKept", app.RetentionConfig{Calls: time.Minute, Deliveries: time.Second, Idempotency: time.Hour, Interval: 5 * time.Second, Batch: 50},
			app.RetentionConfig{Calls: time.Minute, Deliveries: time.Second, Idempotency: time.Hour, Interval: 5 * time.Second, Batch: 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retentionDefaults(tt.in); got != tt.want {
				t.Errorf("retentionDefaults(%+v)=%+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestCountEvents(t *testing.T) {
	long := strings.Repeat("x", 40<<10) // longer than the read buffer
	stream := "retry: 2000\n\n" +
		": heartbeat\n\n" +
		"id: 1\nevent: status\ndata: {\"status\":\"ongoing\"}\n\n" +
		"id: 2\nevent: utterance\ndata: {\"content\":\"" + long + "event: fake\"}\n\n" +
		"id: 3\nevent: ended\ndata: {\"status\":\"ended\"}\n\n"

	var events atomic.Int64
	ended, err := countEvents(strings.NewReader(stream), &events)

	if err != nil {
		t.Fatalf("countEvents: %v", err)
	}
	if !ended {
		t.Errorf("ended=false, want true")
	}
	if n := events.Load(); n != 3 {
		t.Errorf("events=%d, want 3", n)
	}
}

func TestThinKeepsLast(t *testing.T) {
	samples := make([]SamplePoint, 4999)
	for i := range samples {
		samples[i].Seconds = float64(i)
	}

	got := thin(samples, 2000)

	if len(got) > 2001 {
		t.Errorf("thinned to %d points, want at most 2001", len(got))
	}
	if last := got[len(got)-1].Seconds; last != 4998 {
		t.Errorf("last point at %v, want 4998", last)
	}
}

func TestNiceTicks(t *testing.T) {
	tests := []struct {
		top  float64
		want []float64
	}{
		{12, []float64{0, 2, 4, 6, 8, 10, 12}},
		{300, []float64{0, 50, 100, 150, 200, 250, 300}},
		{0.9, []float64{0, 0.2, 0.4, 0.6, 0.8}},
	}
	for _, tt := range tests {
		got := ticks(tt.top)
		if len(got) != len(tt.want) {
			t.Errorf("ticks(%v)=%v, want %v", tt.top, got, tt.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-tt.want[i]) > 1e-9 {
				t.Errorf("ticks(%v)=%v, want %v", tt.top, got, tt.want)
				break
			}
		}
	}
}

func ptr(v float64) *float64 { return &v }

func deref64(v *int64) any {
	if v == nil {
		return nil
	}
	return *v
}

func deref(v *float64) any {
	if v == nil {
		return nil
	}
	return *v
}
