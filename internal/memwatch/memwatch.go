// Package memwatch samples the memory of the process and of its cgroup and
// machine, and keeps the samples in a fixed ring. It fits the growth of live
// heap and RSS over a window, exports gauges, logs when growth persists and
// serves a JSON report. It observes and reports but bounds nothing itself.
package memwatch

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config fields left zero.
const (
	DefaultInterval         = 10 * time.Second
	DefaultWindow           = 30 * time.Minute
	DefaultCapacity         = 2160 // 6 h at DefaultInterval
	DefaultMaxGrowthPerHour = 1 << 20
	DefaultReportSamples    = 360 // 1 h at DefaultInterval
)

// Config holds the settings of a Watcher. Zero values take the defaults.
type Config struct {
	// Interval is the time between samples taken by Run.
	Interval time.Duration

	// Window is the span of the newest samples that the growth slopes fit,
	// and the time the live-heap slope must stay above MaxGrowthPerHour
	// before the warning. It must hold at least MinSlopePoints samples at
	// Interval, and Capacity samples at Interval must cover it.
	Window time.Duration

	// Capacity is the number of samples the ring holds. The ring is
	// allocated by New and never grows.
	Capacity int

	// MaxGrowthPerHour is the live-heap growth, in bytes per hour, above
	// which a sustained slope counts as a leak.
	MaxGrowthPerHour float64

	// ReportSamples is the number of newest samples in Report and in a
	// ServeHTTP response without ?samples=; at most Capacity.
	ReportSamples int

	// Registerer receives the gauges; nil registers none.
	Registerer prometheus.Registerer

	// Logger receives the growth warnings and start and stop lines; nil
	// discards them.
	Logger *slog.Logger

	// Now stamps samples; nil uses time.Now.
	Now func() time.Time
}

// Watcher samples memory into a fixed ring and reports on it. Its methods
// are safe for concurrent use.
type Watcher struct {
	interval      time.Duration
	window        time.Duration
	maxGrowth     float64
	reportSamples int
	logger        *slog.Logger
	metrics       *watcherMetrics // nil without a Registerer

	// readMu serializes Sample, so that samples enter the ring in time
	// order, and guards reader. Lock order: readMu, then mu.
	readMu sync.Mutex
	reader *reader

	// mu guards the fields below.
	mu     sync.Mutex
	ring   []Sample // len Capacity; ring[next-1] is the newest
	next   int
	count  int
	points []Point // scratch for slopes, cap Capacity
	growth growth  // slopes after the newest sample
	issues issues  // errors for the fields missing from the newest sample

	// aboveSince is the time of the first sample of the current run of
	// live-heap slopes above maxGrowth; zero when the last one was not above.
	aboveSince time.Time
	growing    bool // the warning was logged and no recovery since
}

// growth holds the slopes fitted after a sample.
type growth struct {
	liveHeap, rss     float64 // bytes per hour
	liveHeapOK, rssOK bool
	windowSamples     int // samples inside the window
}

// New returns a Watcher with its ring allocated. It fails when the settings
// contradict each other or the gauges cannot be registered.
func New(cfg Config) (*Watcher, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.MaxGrowthPerHour <= 0 {
		cfg.MaxGrowthPerHour = DefaultMaxGrowthPerHour
	}
	if cfg.ReportSamples <= 0 {
		cfg.ReportSamples = DefaultReportSamples
	}
	cfg.ReportSamples = min(cfg.ReportSamples, cfg.Capacity)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}

	if cfg.Window < time.Duration(MinSlopePoints-1)*cfg.Interval {
		return nil, fmt.Errorf("invalid memwatch window %s: it must hold %d samples at interval %s", cfg.Window, MinSlopePoints, cfg.Interval)
	}
	if span := time.Duration(cfg.Capacity-1) * cfg.Interval; span < cfg.Window {
		return nil, fmt.Errorf("invalid memwatch capacity %d: it covers %s at interval %s, less than window %s", cfg.Capacity, span, cfg.Interval, cfg.Window)
	}

	w := &Watcher{
		interval:      cfg.Interval,
		window:        cfg.Window,
		maxGrowth:     cfg.MaxGrowthPerHour,
		reportSamples: cfg.ReportSamples,
		logger:        cfg.Logger,
		reader:        newReader(cfg.Now),
		ring:          make([]Sample, cfg.Capacity),
		points:        make([]Point, 0, cfg.Capacity),
	}
	if cfg.Registerer != nil {
		m, err := newWatcherMetrics(cfg.Registerer)
		if err != nil {
			return nil, err
		}
		m.capacity.Set(float64(cfg.Capacity))
		w.metrics = m
	}
	return w, nil
}

// Run takes a sample at once and then one every Interval until ctx is done,
// and then returns nil. Run once per Watcher: a second Run samples twice as
// often.
func (w *Watcher) Run(ctx context.Context) error {
	w.logger.Info("memwatch started", "interval", w.interval, "window", w.window, "capacity", len(w.ring))
	w.Sample()

	ticker := time.NewTicker(w.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			w.logger.Info("memwatch stopped")
			return nil
		case <-ticker.C:
			w.Sample()
		}
	}
}

// Sample takes a sample now, stores it in the ring, updates slopes, gauges
// and the growth state, and returns it.
func (w *Watcher) Sample() Sample {
	w.readMu.Lock()
	defer w.readMu.Unlock()

	var iss issues
	s := w.reader.read(&iss)
	w.store(s, &iss)
	return s
}

// Samples returns copies of the newest n samples, oldest first; fewer when
// the ring holds fewer.
func (w *Watcher) Samples(n int) []Sample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.samplesLocked(n)
}

func (w *Watcher) samplesLocked(n int) []Sample {
	n = max(0, min(n, w.count))
	out := make([]Sample, n)
	start := w.next - n
	if start < 0 {
		start += len(w.ring)
	}
	for i := range out {
		out[i] = w.ring[(start+i)%len(w.ring)]
	}
	return out
}

// addSample stores s as if Sample had read it. Tests feed synthetic samples
// through it.
func (w *Watcher) addSample(s Sample) {
	w.readMu.Lock()
	defer w.readMu.Unlock()
	w.store(s, nil)
}

// growthEvent is a change of the growth state that store logs.
type growthEvent int

const (
	growthUnchanged growthEvent = iota
	growthStarted
	growthRecovered
)

// store puts s into the ring and updates the slopes, the growth state and
// the gauges. iss, when not nil, replaces the record of missing fields.
func (w *Watcher) store(s Sample, iss *issues) {
	w.mu.Lock()

	w.ring[w.next] = s
	w.next = (w.next + 1) % len(w.ring)
	filled := w.count == len(w.ring)-1
	w.count = min(w.count+1, len(w.ring))

	var newlyMissing issues
	if iss != nil {
		for f, err := range iss {
			if err != nil && w.issues[f] == nil {
				newlyMissing[f] = err
			}
		}
		w.issues = *iss
	}

	w.growth = w.fitLocked(s.Time)
	event := w.updateGrowthLocked(s.Time)
	g := w.growth
	if w.metrics != nil {
		w.metrics.set(s, w.count, g)
	}

	w.mu.Unlock()

	if filled {
		w.logger.Info("memwatch ring full; each new sample replaces the oldest",
			"capacity", len(w.ring), "span", time.Duration(len(w.ring)-1)*w.interval)
	}
	for f, err := range newlyMissing {
		if err != nil {
			w.logger.Info("memory field unavailable", "field", fieldNames[f], "err", err)
		}
	}
	switch event {
	case growthStarted:
		w.logger.Warn("memory growing",
			"slope_bytes_per_hour", g.liveHeap, "max_bytes_per_hour", w.maxGrowth, "window", w.window,
			"live_heap_bytes", s.LiveHeapBytes, "rss_bytes", s.RSSBytes)
	case growthRecovered:
		w.logger.Info("memory growth recovered",
			"slope_bytes_per_hour", g.liveHeap, "max_bytes_per_hour", w.maxGrowth, "window", w.window,
			"live_heap_bytes", s.LiveHeapBytes, "rss_bytes", s.RSSBytes)
	}
}

// fitLocked fits the slopes of live heap and RSS over the samples no older
// than newest minus the window. Zero values are unavailable readings (or a
// live heap before the first GC) and are left out.
func (w *Watcher) fitLocked(newest time.Time) growth {
	cutoff := newest.Add(-w.window)
	var g growth

	w.points = w.points[:0]
	for i := range w.count {
		s := w.newestLocked(i)
		if s.Time.Before(cutoff) {
			break
		}
		g.windowSamples++
		if s.LiveHeapBytes > 0 {
			w.points = append(w.points, Point{T: s.Time, V: float64(s.LiveHeapBytes)})
		}
	}
	g.liveHeap, g.liveHeapOK = Slope(w.points)

	w.points = w.points[:0]
	for i := range g.windowSamples {
		s := w.newestLocked(i)
		if s.RSSBytes > 0 {
			w.points = append(w.points, Point{T: s.Time, V: float64(s.RSSBytes)})
		}
	}
	g.rss, g.rssOK = Slope(w.points)
	return g
}

// updateGrowthLocked moves the growth state after a sample at t. The state
// turns to growing once the live-heap slope has stayed above maxGrowth for a
// whole window, and back at the first known slope at or below it. An unknown
// slope restarts the run but keeps the state.
func (w *Watcher) updateGrowthLocked(t time.Time) growthEvent {
	g := w.growth
	if g.liveHeapOK && g.liveHeap > w.maxGrowth {
		if w.aboveSince.IsZero() {
			w.aboveSince = t
		}
		if !w.growing && t.Sub(w.aboveSince) >= w.window {
			w.growing = true
			return growthStarted
		}
		return growthUnchanged
	}

	w.aboveSince = time.Time{}
	if w.growing && g.liveHeapOK {
		w.growing = false
		return growthRecovered
	}
	return growthUnchanged
}

// newestLocked returns the i-th newest sample, 0 being the newest; i must be
// below count.
func (w *Watcher) newestLocked(i int) *Sample {
	return &w.ring[(w.next-1-i+len(w.ring))%len(w.ring)]
}
