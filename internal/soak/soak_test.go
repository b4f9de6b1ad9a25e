package soak_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/callcat/callcat/internal/soak"
)

// The soaks measure the whole process, so no test here runs in parallel.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// shortSoak is an accelerated soak: 45 s calls played at 30x, 50 at a time.
func shortSoak(t *testing.T, totalCalls int) soak.Config {
	t.Helper()
	return soak.Config{
		Calls:             50,
		TotalCalls:        totalCalls,
		Speed:             30,
		PushTranscripts:   true,
		NotConnectedRatio: 0.1,
		Subscribers:       10,
		// TotalCalls ends the churn first; Duration only bounds it.
		Duration:       2 * time.Minute,
		Warmup:         2 * time.Second,
		SampleInterval: 200 * time.Millisecond,
		DrainTimeout:   time.Minute,
		DataDir:        t.TempDir(),
		Seed:           1,
		Logger:         testLogger(t),
	}
}

func TestSoakDrainsToBaseline(t *testing.T) {
	rep, err := soak.Run(context.Background(), shortSoak(t, 200))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	for _, name := range []string{
		soak.RuleLiveHeapAfterDrain,
		soak.RuleGoroutinesAfterDrain,
		soak.RuleFDsAfterDrain,
		soak.RuleTrackedAfterDrain,
		soak.RuleUnfinishedCalls,
	} {
		rule, ok := rep.Rule(name)
		if !ok {
			t.Errorf("rule %s missing from the report", name)
			continue
		}
		if !rule.Pass {
			t.Errorf("rule %s failed: %s", name, rule.Message)
		}
	}
	if _, ok := rep.Rule(soak.RuleLiveHeapSlope); !ok {
		t.Errorf("rule %s missing from the report", soak.RuleLiveHeapSlope)
	}

	if rep.Calls.Started < 200 {
		t.Errorf("calls started=%d, want at least 200", rep.Calls.Started)
	}
	if rep.Calls.Completed != rep.Calls.Started {
		t.Errorf("calls completed=%d, want every started call (%d)", rep.Calls.Completed, rep.Calls.Started)
	}
	if got := rep.Calls.Ended + rep.Calls.NotConnected; got != rep.Calls.Started {
		t.Errorf("calls ended + not connected=%d, want %d started", got, rep.Calls.Started)
	}
	if rep.Calls.TrackedAfterDrain != 0 {
		t.Errorf("tracked after drain=%d, want 0", rep.Calls.TrackedAfterDrain)
	}
	if rep.Calls.DrainTimedOut {
		t.Errorf("drain timed out")
	}
	if rep.Calls.GetCallRequests == 0 {
		t.Errorf("get-call requests=0, want polls")
	}
	if rep.Webhooks.Sent == 0 {
		t.Errorf("webhooks sent=0")
	}
	if rep.Webhooks.Failed != 0 {
		t.Errorf("webhooks failed=%d, want 0", rep.Webhooks.Failed)
	}
	if rep.Service.EventsEmitted == 0 {
		t.Errorf("events emitted=0")
	}
	if rep.Service.Webhooks["accepted"] == 0 {
		t.Errorf("service webhooks accepted=0; by outcome %v", rep.Service.Webhooks)
	}
	if rep.Subscribers.StreamsOpened == 0 {
		t.Errorf("subscriber streams opened=0")
	}
	if rep.Subscribers.Events == 0 {
		t.Errorf("subscriber events=0")
	}

	// Without retention the database keeps every call, and its growth is
	// reported but not checked.
	if _, ok := rep.Rule(soak.RuleDBSizeSlope); ok {
		t.Errorf("rule %s in a report without retention, want it left out", soak.RuleDBSizeSlope)
	}
	if got := rep.Database.AfterDrain.StoredCalls; got != rep.Calls.Started {
		t.Errorf("stored calls after drain=%d, want all %d started", got, rep.Calls.Started)
	}

	checkPhases(t, rep)
	checkFigures(t, rep)
	checkDatabase(t, rep)
	checkJSON(t, rep)
	checkChart(t, rep)
}

func TestSoakRetentionPrunesCalls(t *testing.T) {
	// A retention of 2 s prunes the calls that ended early in a churn of
	// about 8 s, and the pruner keeps running through the drain. The load
	// is light so that the service keeps up with the webhooks even under
	// the race detector: a webhook delivered later than the retention
	// stores its pruned call again.
	cfg := shortSoak(t, 100)
	cfg.Calls = 20
	cfg.Subscribers = 0
	cfg.Retention.Calls = 2 * time.Second
	cfg.DrainTimeout = 30 * time.Second
	rep, err := soak.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	checkRetention(t, rep)
	checkDatabase(t, rep)
	checkChart(t, rep)
}

func TestSoakCatchesPlantedLeak(t *testing.T) {
	// The planted leak keeps 16 KiB per ended call: 300 calls keep about
	// 4.7 MiB, more than twice the after-drain limit.
	cfg := shortSoak(t, 300)
	cfg.Calls = 100
	cfg.PlantLeak = true
	cfg.Subscribers = 0
	rep, err := soak.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	if rep.Pass {
		t.Fatalf("pass=true with a planted leak, want false")
	}
	rule, ok := rep.Rule(soak.RuleLiveHeapAfterDrain)
	if !ok {
		t.Fatalf("rule %s missing from the report", soak.RuleLiveHeapAfterDrain)
	}
	if rule.Pass {
		t.Errorf("rule %s passed with %.0f bytes above baseline, want a failure", rule.Rule, rule.Value)
	}
	if want := 0.8 * float64(rep.Calls.Started) * 16 * 1024; rule.Value < want {
		t.Errorf("live heap above baseline=%.0f bytes, want at least %.0f for %d leaked calls", rule.Value, want, rep.Calls.Started)
	}
	err = rep.Err()
	if err == nil || !strings.Contains(err.Error(), "live heap after drain") {
		t.Errorf("Err()=%v, want it to name the live heap after drain", err)
	}
}

// checkPhases checks that the phases are the four expected ones, in order
// and back to back, and that the samples carry them.
func checkPhases(t *testing.T, rep *soak.Report) {
	t.Helper()
	want := []string{soak.PhaseBaseline, soak.PhaseWarmup, soak.PhaseSteady, soak.PhaseDrain}
	if len(rep.Phases) != len(want) {
		t.Fatalf("phases=%v, want %v", rep.Phases, want)
	}
	for i, p := range rep.Phases {
		if p.Name != want[i] {
			t.Errorf("phase %d=%q, want %q", i, p.Name, want[i])
		}
		if p.EndSeconds < p.StartSeconds {
			t.Errorf("phase %s ends at %v before its start %v", p.Name, p.EndSeconds, p.StartSeconds)
		}
		if i > 0 && p.StartSeconds != rep.Phases[i-1].EndSeconds {
			t.Errorf("phase %s starts at %v, want the end of %s (%v)", p.Name, p.StartSeconds, rep.Phases[i-1].Name, rep.Phases[i-1].EndSeconds)
		}
	}

	seen := map[string]int{}
	for _, s := range rep.Samples {
		seen[s.Phase]++
	}
	for _, name := range want {
		if seen[name] == 0 {
			t.Errorf("no sample in phase %s; samples per phase %v", name, seen)
		}
	}
	if rep.SteadyState.Samples != seen[soak.PhaseSteady] {
		t.Errorf("steady-state samples=%d, want the %d samples in the steady phase", rep.SteadyState.Samples, seen[soak.PhaseSteady])
	}
}

// checkFigures checks that baseline, peak and after-drain figures were read
// and that the peak bounds the others.
func checkFigures(t *testing.T, rep *soak.Report) {
	t.Helper()
	for name, f := range map[string]soak.Figures{"baseline": rep.Baseline, "after drain": rep.AfterDrain, "peak": rep.Peak} {
		if f.LiveHeapBytes == 0 || f.RSSBytes == 0 || f.Goroutines == 0 || f.FDs == 0 {
			t.Errorf("%s figures %+v, want live heap, RSS, goroutines and fds read", name, f)
		}
	}
	if rep.Peak.Goroutines < rep.Baseline.Goroutines || rep.Peak.Goroutines < rep.AfterDrain.Goroutines {
		t.Errorf("peak goroutines=%d below baseline %d or after drain %d", rep.Peak.Goroutines, rep.Baseline.Goroutines, rep.AfterDrain.Goroutines)
	}
	if rep.Peak.LiveHeapBytes < rep.Baseline.LiveHeapBytes || rep.Peak.LiveHeapBytes < rep.AfterDrain.LiveHeapBytes {
		t.Errorf("peak live heap=%d below baseline %d or after drain %d", rep.Peak.LiveHeapBytes, rep.Baseline.LiveHeapBytes, rep.AfterDrain.LiveHeapBytes)
	}
	if rep.Peak.Goroutines <= rep.Baseline.Goroutines+rep.Subscribers.Max {
		t.Errorf("peak goroutines=%d, want the churn to raise them above baseline %d plus %d subscribers",
			rep.Peak.Goroutines, rep.Baseline.Goroutines, rep.Subscribers.Max)
	}
}

// checkRetention checks that retention ran with the windows derived from a
// call retention of 2 s and deleted calls and delivery records.
func checkRetention(t *testing.T, rep *soak.Report) {
	t.Helper()
	st := rep.Settings
	if st.RetentionSeconds != 2 {
		t.Errorf("retention=%v s, want 2", st.RetentionSeconds)
	}
	if st.DeliveryRetentionSeconds != 2 || st.IdempotencyRetentionSeconds != 2 {
		t.Errorf("delivery retention=%v s, idempotency retention=%v s, want both 2 like the call retention",
			st.DeliveryRetentionSeconds, st.IdempotencyRetentionSeconds)
	}
	if st.PruneIntervalSeconds != soak.MinPruneInterval.Seconds() {
		t.Errorf("prune interval=%v s, want the minimum %v s", st.PruneIntervalSeconds, soak.MinPruneInterval.Seconds())
	}
	if _, ok := rep.Rule(soak.RuleDBSizeSlope); !ok {
		t.Errorf("rule %s missing from a report with retention", soak.RuleDBSizeSlope)
	}

	pruned := rep.Service.Pruned["calls"]
	if pruned == 0 {
		t.Errorf("pruned calls=0, want retention to delete calls; pruned by kind %v", rep.Service.Pruned)
	}
	if rep.Service.Pruned["deliveries"] == 0 {
		t.Errorf("pruned deliveries=0, want retention to delete delivery records; pruned by kind %v", rep.Service.Pruned)
	}
	if rep.Service.PruneFailures != 0 {
		t.Errorf("prune failures=%d, want 0", rep.Service.PruneFailures)
	}
	stored := rep.Database.AfterDrain.StoredCalls
	if stored >= rep.Calls.Completed {
		t.Errorf("stored calls after drain=%d, want fewer than the %d completed", stored, rep.Calls.Completed)
	}
	// The counter is read after the count, so a round in between can only
	// raise the sum.
	if stored+pruned < rep.Calls.Started {
		t.Errorf("stored calls %d + pruned %d=%d, want at least the %d started", stored, pruned, stored+pruned, rep.Calls.Started)
	}
}

// checkDatabase checks the database figures and their time series.
func checkDatabase(t *testing.T, rep *soak.Report) {
	t.Helper()
	db := rep.Database
	if db.Path == "" || db.Measured == "" {
		t.Errorf("database path=%q measured=%q, want both set", db.Path, db.Measured)
	}
	if len(db.Samples) == 0 {
		t.Fatalf("database samples=0, want a series")
	}
	counted := 0
	for i, s := range db.Samples {
		if s.DiskBytes <= 0 || s.SizeBytes <= 0 {
			t.Errorf("database sample %d at %v s: disk %d bytes, size %d bytes, want both above 0", i, s.Seconds, s.DiskBytes, s.SizeBytes)
		}
		if s.StoredCalls != nil {
			counted++
		}
	}
	if counted < 2 {
		t.Errorf("database samples with a count of stored calls=%d, want at least the baseline and after-drain ones", counted)
	}
	if db.Baseline.StoredCalls != 0 {
		t.Errorf("stored calls at the baseline=%d, want 0 in a new database", db.Baseline.StoredCalls)
	}
	if db.Peak.DiskBytes < db.AfterDrain.DiskBytes || db.Peak.DiskBytes < db.Baseline.DiskBytes {
		t.Errorf("peak disk bytes=%d below the baseline %d or after drain %d", db.Peak.DiskBytes, db.Baseline.DiskBytes, db.AfterDrain.DiskBytes)
	}
	if db.AfterDrain.DiskBytes <= db.Baseline.DiskBytes {
		t.Errorf("disk bytes after drain=%d, want above the baseline %d after storing calls", db.AfterDrain.DiskBytes, db.Baseline.DiskBytes)
	}
}

// checkJSON checks that the report encodes with every top-level field.
func checkJSON(t *testing.T, rep *soak.Report) {
	t.Helper()
	body, err := json.Marshal(rep)
	if err != nil {
		t.Fatalf("encode report: %v", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatalf("decode report: %v", err)
	}
	for _, key := range []string{"config", "phases", "calls", "webhooks", "service", "subscribers", "cpu",
		"baseline", "peak", "after_drain", "steady_state", "database", "rules", "pass", "samples"} {
		if _, ok := fields[key]; !ok {
			t.Errorf("report JSON lacks %q", key)
		}
	}
}

// checkChart checks that the chart is well-formed XML with a line per
// series.
func checkChart(t *testing.T, rep *soak.Report) {
	t.Helper()
	var buf bytes.Buffer
	if err := soak.WriteSVG(&buf, rep); err != nil {
		t.Fatalf("WriteSVG: %v", err)
	}
	polylines := 0
	dec := xml.NewDecoder(&buf)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v", err)
		}
		if el, ok := tok.(xml.StartElement); ok && el.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 7 {
		t.Errorf("chart polylines=%d, want 7 (live heap, RSS, database size, database on disk, stored calls, goroutines, fds)", polylines)
	}
}

// testLogger keeps up to 4 MiB of logs and prints them when the test fails.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	w := &cappedBuffer{max: 4 << 20}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", w.String())
		}
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type cappedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len()+len(p) <= b.max {
		b.buf.Write(p)
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
