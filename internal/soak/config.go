package soak

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/sim"
	"github.com/callcat/callcat/internal/tracker"
)

// Defaults for zero Config fields.
const (
	DefaultCalls          = 100
	DefaultDuration       = time.Minute
	DefaultSampleInterval = time.Second
	DefaultWarmupShare    = 0.1 // of Duration

	// DefaultMaxGrowthPerHour is the steady-state live-heap slope, in bytes
	// per hour, above which the soak fails.
	DefaultMaxGrowthPerHour = 1 << 20

	// DefaultMaxHeapAboveBaseline is how far the live heap after the drain
	// may exceed the baseline, in bytes.
	DefaultMaxHeapAboveBaseline = 2 << 20

	// DefaultMaxGoroutinesAboveBaseline and DefaultMaxFDsAboveBaseline are
	// how many goroutines and open file descriptors the process may hold
	// after the drain beyond the baseline.
	DefaultMaxGoroutinesAboveBaseline = 2
	DefaultMaxFDsAboveBaseline        = 2

	// DefaultDBGrowthShare sets the database growth limit of a soak with
	// retention when Rules.MaxDBGrowthPerHour is zero: this share of the
	// growth the churn would cause without retention
	// (Database.ChurnBytesPerHour). Retention that works keeps the slope
	// near zero, and retention that deletes nothing lets it reach the whole
	// churn growth. A fixed number of bytes per hour cannot separate the
	// two at every load, because both scale with the call rate.
	DefaultDBGrowthShare = 0.1

	// MinPruneInterval and the app's DefaultPruneInterval bound the prune
	// interval derived from the call retention.
	MinPruneInterval = time.Second
)

// maxSamples bounds the sample ring, which is allocated before the baseline.
// At one sample a second it covers 55 hours.
const maxSamples = 200_000

// settleTimeout bounds the wait after the drain for closed connections to
// release their goroutines and descriptors.
const settleTimeout = 10 * time.Second

// Config sets up a soak. Zero values take the defaults.
type Config struct {
	// Calls is the number of concurrent live calls the simulator keeps going
	// (default 100, at most sim.DefaultMaxLiveCalls).
	Calls int

	// TotalCalls, when above zero, ends the churn once this many calls were
	// started, even before Duration has passed.
	TotalCalls int

	// CallLength is the simulated length of a connected call (default
	// sim.DefaultCallLength), varied by up to ±20% per call.
	CallLength time.Duration

	// Speed compresses simulated time (default 1): at 30 a 45 s call takes
	// 1.5 s.
	Speed float64

	// PollInterval is the tracker's get-call period in wall time. Zero
	// means tracker.DefaultPollInterval divided by Speed, so each call is
	// polled as often over its life as at real speed.
	PollInterval time.Duration

	// PushTranscripts makes the simulator send transcript_updated webhooks.
	// LiveTranscript makes its get-call carry the live transcript.
	PushTranscripts bool
	LiveTranscript  bool

	// NotConnectedRatio is the share of calls that never connect, from 0
	// to 1.
	NotConnectedRatio float64

	// Subscribers is the maximum number of SSE clients open at once. Each
	// follows a random live call over loopback HTTP for a random time,
	// detaches for a random pause and picks another. Zero opens none.
	Subscribers int

	// Duration is the time calls keep starting (default 1 min), and the
	// drain follows it. Warmup, the first part of it, is left out of the
	// steady-state slopes (default a tenth of Duration).
	Duration time.Duration
	Warmup   time.Duration

	// SampleInterval is the time between memory samples (default 1 s).
	SampleInterval time.Duration

	// DrainTimeout bounds the wait for every call to end and leave the
	// tracker after the churn. Zero means 1 min plus two call lengths in wall
	// time.
	DrainTimeout time.Duration

	// ProviderRPS and ProviderMaxInFlight bound the service's requests to
	// the simulator. Zero ProviderRPS means twice the poll rate of Calls
	// calls, and at least retell.DefaultRequestsPerSecond. Zero
	// ProviderMaxInFlight means retell.DefaultMaxInFlight.
	ProviderRPS         float64
	ProviderMaxInFlight int

	// Rules are the pass criteria.
	Rules Rules

	// Faults makes the simulated provider misbehave: 5xx, 429, resets,
	// truncated bodies, duplicate and reordered webhooks and so on. The
	// zero value injects nothing.
	Faults sim.Faults

	// Retention makes the service delete old records (see
	// app.RetentionConfig). The windows are wall time and --speed does not
	// scale them, because the store stamps rows with the wall clock and the
	// pruner compares against it. Zero Retention.Calls keeps ended calls and
	// leaves the database size out of the rules. With Calls set, zero
	// Deliveries and Idempotency take Calls, and zero Interval takes a tenth
	// of Calls, from MinPruneInterval to app.DefaultPruneInterval. Without
	// Calls, zero fields take the app's defaults.
	//
	// NOTE: a webhook delivered after its call was pruned stores the call
	// again, as a new call that the tracker follows. A call retention
	// shorter than the simulator's webhook backlog therefore leaves calls
	// tracked after the drain.
	Retention app.RetentionConfig

	// PlantLeak makes the tracker keep every ended call in memory
	// (tracker.Config.LeakEndedCalls), to show that the soak catches a leak.
	PlantLeak bool

	// DataDir holds the service's SQLite database. Empty means a temporary
	// directory that Run removes.
	DataDir string

	// Seed makes the simulated conversations deterministic.
	Seed int64

	// AtSteadyEnd, when set, is called once when the steady phase ends and
	// before the drain starts, for example to write a heap profile under
	// full load.
	AtSteadyEnd func()

	// Logger receives the service's, the simulator's and the soak's logs.
	// Nil discards them.
	Logger *slog.Logger
}

// Rules are the limits a soak must stay within. Zero fields take the
// defaults, so a limit of zero cannot be set.
type Rules struct {
	// MaxGrowthPerHour caps the steady-state live-heap slope, in bytes per
	// hour.
	MaxGrowthPerHour float64

	// MaxHeapAboveBaseline caps the live heap after the drain minus the
	// baseline, in bytes.
	MaxHeapAboveBaseline uint64

	// MaxGoroutinesAboveBaseline and MaxFDsAboveBaseline cap the goroutines
	// and open file descriptors after the drain minus the baseline.
	MaxGoroutinesAboveBaseline int
	MaxFDsAboveBaseline        int

	// MaxDBGrowthPerHour caps the slope of the database size (page_count ×
	// page_size, see Database) over the second half of the steady phase, in
	// bytes per hour. Zero means DefaultDBGrowthShare of the churn's growth
	// without retention. Only a soak with Config.Retention.Calls set checks
	// it.
	MaxDBGrowthPerHour float64
}

func (r *Rules) setDefaults() {
	if r.MaxGrowthPerHour <= 0 {
		r.MaxGrowthPerHour = DefaultMaxGrowthPerHour
	}
	if r.MaxHeapAboveBaseline == 0 {
		r.MaxHeapAboveBaseline = DefaultMaxHeapAboveBaseline
	}
	if r.MaxGoroutinesAboveBaseline <= 0 {
		r.MaxGoroutinesAboveBaseline = DefaultMaxGoroutinesAboveBaseline
	}
	if r.MaxFDsAboveBaseline <= 0 {
		r.MaxFDsAboveBaseline = DefaultMaxFDsAboveBaseline
	}
}

func (c *Config) setDefaults() error {
	switch {
	case c.Calls < 0, c.TotalCalls < 0, c.Subscribers < 0, c.ProviderMaxInFlight < 0:
		return errors.New("soak: calls, total calls, subscribers and provider in-flight bound must not be negative")
	case c.Calls > sim.DefaultMaxLiveCalls:
		return fmt.Errorf("soak: %d concurrent calls exceed the simulator's limit of %d", c.Calls, sim.DefaultMaxLiveCalls)
	case c.Speed < 0 || math.IsNaN(c.Speed) || math.IsInf(c.Speed, 0):
		return fmt.Errorf("soak: invalid speed %v: use a positive number", c.Speed)
	case c.CallLength < 0, c.PollInterval < 0, c.Duration < 0, c.Warmup < 0, c.SampleInterval < 0, c.DrainTimeout < 0:
		return errors.New("soak: durations must not be negative")
	case c.ProviderRPS < 0 || math.IsNaN(c.ProviderRPS):
		return fmt.Errorf("soak: invalid provider rate %v: use a positive number", c.ProviderRPS)
	case c.Retention.Calls < 0, c.Retention.Deliveries < 0, c.Retention.Idempotency < 0, c.Retention.Interval < 0:
		return errors.New("soak: retention windows and the prune interval must not be negative")
	case c.Rules.MaxDBGrowthPerHour < 0 || math.IsNaN(c.Rules.MaxDBGrowthPerHour):
		return fmt.Errorf("soak: invalid database growth limit %v: use a positive number of bytes per hour, or 0 for the default", c.Rules.MaxDBGrowthPerHour)
	}

	if c.Calls == 0 {
		c.Calls = DefaultCalls
	}
	if c.CallLength == 0 {
		c.CallLength = sim.DefaultCallLength
	}
	if c.Speed == 0 {
		c.Speed = 1
	}
	if c.PollInterval == 0 {
		c.PollInterval = max(time.Duration(float64(tracker.DefaultPollInterval)/c.Speed), 10*time.Millisecond)
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Warmup == 0 {
		c.Warmup = time.Duration(float64(c.Duration) * DefaultWarmupShare)
	}
	if c.Warmup >= c.Duration {
		return fmt.Errorf("soak: warm-up %s must be shorter than the duration %s", c.Warmup, c.Duration)
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = DefaultSampleInterval
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = time.Minute + 2*c.wallCallLength()
	}
	if c.ProviderRPS == 0 {
		c.ProviderRPS = max(retell.DefaultRequestsPerSecond, 2*float64(c.Calls)/c.PollInterval.Seconds())
	}
	if c.ProviderMaxInFlight == 0 {
		c.ProviderMaxInFlight = retell.DefaultMaxInFlight
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Rules.setDefaults()
	c.Retention = retentionDefaults(c.Retention)

	if n := c.sampleCapacity(); n > maxSamples {
		return fmt.Errorf("soak: %s of churn and drain at one sample every %s needs %d samples, more than %d: raise the sample interval",
			c.Duration, c.SampleInterval, n, maxSamples)
	}
	return nil
}

// retentionDefaults fills the windows and the interval that a soak with
// call retention derives from it (see Config.Retention).
func retentionDefaults(r app.RetentionConfig) app.RetentionConfig {
	if r.Calls == 0 {
		return r
	}
	if r.Deliveries == 0 {
		r.Deliveries = r.Calls
	}
	if r.Idempotency == 0 {
		r.Idempotency = r.Calls
	}
	if r.Interval == 0 {
		r.Interval = min(max(r.Calls/10, MinPruneInterval), app.DefaultPruneInterval)
	}
	return r
}

// prunedBy is the time after the churn starts by which retention has
// deleted the first ended calls: the longest call, then the call retention,
// then up to one prune interval. Ringing and the wait for call_analyzed come
// on top, so it is an estimate. It is zero without call retention.
func (c *Config) prunedBy() time.Duration {
	if c.Retention.Calls == 0 {
		return 0
	}
	interval := c.Retention.Interval
	if interval == 0 {
		interval = app.DefaultPruneInterval
	}
	return c.wallCallLength() + c.Retention.Calls + interval
}

// wallCallLength is the wall time of the longest connected call without its
// ringing: the simulated length plus the 20% variation, divided by Speed.
func (c *Config) wallCallLength() time.Duration {
	return time.Duration(float64(c.CallLength) * 1.2 / c.Speed)
}

// sampleCapacity is the number of samples the churn, the drain and the
// settling can take, with room for the explicit baseline and after-drain
// samples and the settling loop.
func (c *Config) sampleCapacity() int {
	span := c.Duration + c.DrainTimeout + 2*settleTimeout
	return int(span/c.SampleInterval) + int(settleTimeout/settlePoll) + 16
}

// settlePoll is the wait between checks while connections close after the
// drain.
const settlePoll = 100 * time.Millisecond
