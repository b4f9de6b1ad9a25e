package soak

import (
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

	rep := r.report(samples, ServiceCounters{})

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

func deref(v *float64) any {
	if v == nil {
		return nil
	}
	return *v
}
