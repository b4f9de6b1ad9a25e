// Package soak proves that callcat runs in flat memory. Run starts the
// service and the provider simulator in one process and keeps a number of
// simulated calls live with continuous churn, while SSE subscribers attach
// and detach at random. Then it stops starting calls and waits until every
// call has ended and left the tracker. It samples live heap, RSS, goroutines
// and open file descriptors throughout, fits the growth of live heap and RSS
// over the steady phase, and checks the figures against Rules.
//
// Everything runs in one process, so the figures include the simulator and
// the subscribers. Both hold bounded state: the simulator keeps the live
// calls and at most as many finished ones, and it is shut down and released
// before the sample taken after the drain.
package soak

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/memwatch"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/sim"
	"github.com/callcat/callcat/internal/store/sqlite"
	"github.com/callcat/callcat/internal/tracker"
)

// Run runs one soak and returns its report. It returns an error only when
// the soak could not run (setup failed, the service stopped, ctx ended). A
// soak that breaks a rule returns a report whose Pass is false and whose Err
// names the figures.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, log: cfg.Logger.With("component", "soak")}
	return r.run(ctx)
}

// runner holds the state of one Run.
type runner struct {
	cfg Config
	log *slog.Logger

	watcher *memwatch.Watcher
	db      *dbSampler // nil when the store is not SQLite
	svc     *app.Service
	apiKey  string

	// Times of the phase boundaries, in wall time.
	baselineAt, churnStart, steadyStart, drainStart, afterDrainAt time.Time

	baseline, afterDrain       memwatch.Sample
	dbBaseline, dbAfterDrain   dbSample
	baselineFDs, afterDrainFDs map[string]int // fdTargets at the two samples
	drainTimedOut              bool
	trackedAfterDrain          int
	simStats                   sim.Stats
	load                       Load
	subStats                   SubscriberStats
	cpuAtChurnStart            time.Duration
	cpuAtDrainStart            time.Duration
	cpuTotal                   time.Duration
	startedAt                  time.Time
}

func (r *runner) run(ctx context.Context) (*Report, error) {
	cfg := &r.cfg
	r.startedAt = time.Now()

	dataDir := cfg.DataDir
	if dataDir == "" {
		dir, err := os.MkdirTemp("", "callcat-soak-")
		if err != nil {
			return nil, fmt.Errorf("soak: create data directory: %w", err)
		}
		defer os.RemoveAll(dir)
		dataDir = dir
	}

	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("soak: generate API key: %w", err)
	}
	r.apiKey = "key_soak_" + hex.EncodeToString(key)

	// Both listeners are bound first: the simulator needs the webhook URL
	// and the service needs the provider URL. The simulator's listener
	// stays open, unserved, until its calls start.
	serviceLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("soak: listen for the service: %w", err)
	}
	simLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		serviceLn.Close()
		return nil, fmt.Errorf("soak: listen for the simulated provider: %w", err)
	}
	simServed := false
	defer func() {
		if !simServed {
			simLn.Close()
		}
	}()

	r.watcher, err = memwatch.New(memwatch.Config{
		Interval:         cfg.SampleInterval,
		Capacity:         cfg.sampleCapacity(),
		Window:           time.Duration(cfg.sampleCapacity()-1) * cfg.SampleInterval,
		MaxGrowthPerHour: cfg.Rules.MaxGrowthPerHour,
		ReportSamples:    cfg.sampleCapacity(),
		Logger:           r.log,
	})
	if err != nil {
		serviceLn.Close()
		return nil, fmt.Errorf("soak: create memory watcher: %w", err)
	}

	// The service.
	appCfg := app.Config{
		DataDir:       dataDir,
		RetellBaseURL: "http://" + simLn.Addr().String(),
		RetellAPIKey:  r.apiKey,
		Tracker: tracker.Config{
			PollInterval:      cfg.PollInterval,
			ReconcileInterval: max(time.Duration(float64(tracker.DefaultReconcileInterval)/cfg.Speed), cfg.PollInterval),
			LeakEndedCalls:    cfg.PlantLeak,
		},
		Client: retell.ClientConfig{
			MaxInFlight:       cfg.ProviderMaxInFlight,
			RequestsPerSecond: cfg.ProviderRPS,
		},
		Retention: cfg.Retention,
		Listener:  serviceLn,
		Logger:    cfg.Logger,
	}
	ready := make(chan *app.Service, 1)
	service := startTask(func(ctx context.Context) error {
		return app.Serve(ctx, appCfg, func(s *app.Service) { ready <- s })
	})
	defer service.stop()
	select {
	case r.svc = <-ready:
	case <-service.done:
		serviceLn.Close() // Serve may fail before it takes the listener over
		return nil, fmt.Errorf("soak: start the service: %w", service.err)
	case <-ctx.Done():
		service.stop()
		return nil, fmt.Errorf("soak: interrupted while starting: %w", ctx.Err())
	}

	// The sampler, started before the baseline so its goroutine counts in
	// both the baseline and the after-drain sample.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var watchWG sync.WaitGroup
	watchWG.Go(func() { _ = r.watcher.Run(watchCtx) })
	defer func() {
		stopWatch()
		watchWG.Wait()
	}()

	if db, ok := any(r.svc.Store).(sqliteFile); ok {
		if !warmReaderPool(db.Ping, db.Path(), sqlite.DefaultMaxReaders, 3*time.Second) {
			r.log.Warn("store reader pool not fully open before the baseline, so connections opened later count as descriptors above it",
				"readers", sqlite.DefaultMaxReaders)
		}
	}

	// The database sampler opens its connection after the reader pool is
	// warm, because warmReaderPool counts the descriptors open on the
	// database file. It runs from before the baseline to after the
	// after-drain sample.
	if err := r.startDBSampler(watchCtx, &watchWG); err != nil {
		return nil, err
	}
	if r.db != nil {
		defer func() {
			stopWatch()
			watchWG.Wait()
			r.db.Close()
		}()
	}

	waitGoroutinesSteady(3 * time.Second)
	r.baseline = r.quietSample(0)
	r.baselineAt = r.baseline.Time
	r.baselineFDs = fdTargets()
	r.log.Info("soak baseline", "live_heap_bytes", r.baseline.LiveHeapBytes, "rss_bytes", r.baseline.RSSBytes,
		"goroutines", r.baseline.Goroutines, "fds", r.baseline.FDs, "fd_targets", r.baselineFDs)
	r.dbBaseline = r.dbSample()

	// The churn.
	simServed = true
	if err := r.churnAndDrain(ctx, simLn, service); err != nil {
		return nil, err
	}

	r.afterDrain = r.settledSample()
	r.afterDrainAt = r.afterDrain.Time
	r.afterDrainFDs = fdTargets()
	r.cpuTotal = processCPU()
	r.log.Info("soak after drain", "live_heap_bytes", r.afterDrain.LiveHeapBytes, "rss_bytes", r.afterDrain.RSSBytes,
		"goroutines", r.afterDrain.Goroutines, "fds", r.afterDrain.FDs, "fd_targets", r.afterDrainFDs)
	r.dbAfterDrain = r.dbSample()

	serviceMetrics := gatherServiceMetrics(r.svc.Registry)
	stopWatch()
	watchWG.Wait()
	samples := r.watcher.Samples(cfg.sampleCapacity())
	var dbSamples []dbSample
	if r.db != nil {
		dbSamples = r.db.Samples()
	}
	if err := service.stop(); err != nil {
		return nil, fmt.Errorf("soak: service stopped with an error: %w", err)
	}

	return r.report(samples, dbSamples, serviceMetrics), nil
}

// startDBSampler starts sampling the service's database until ctx ends,
// with wg counting the sampler's goroutine. A store that is not SQLite is
// not sampled.
func (r *runner) startDBSampler(ctx context.Context, wg *sync.WaitGroup) error {
	store, ok := any(r.svc.Store).(sqliteSizer)
	if !ok {
		r.log.Warn("the store reports no size, so the soak does not sample the database")
		return nil
	}
	var err error
	r.db, err = newDBSampler(store, r.cfg.SampleInterval, r.cfg.sampleCapacity(), r.log)
	if err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	wg.Go(func() { r.db.run(ctx) })
	return nil
}

// dbSample takes a database sample that counts the stored calls, or
// returns the zero sample when the database is not sampled or the reading
// failed.
func (r *runner) dbSample() dbSample {
	if r.db == nil {
		return dbSample{}
	}
	s, ok := r.db.sample(context.Background(), true)
	if !ok {
		return dbSample{}
	}
	return s
}

// churnAndDrain runs the simulator and the subscribers for the churn, then
// drains: no new calls, every call finished and untracked, subscribers
// closed, the simulator shut down.
func (r *runner) churnAndDrain(ctx context.Context, simLn net.Listener, service *task) error {
	cfg := &r.cfg

	// The simulator keeps no more finished calls, and no more records of
	// the 429s it injects, than live calls, so its memory stops growing
	// within the warm-up. Its default of 100,000 429 records, about 200
	// bytes each, would grow the live heap by up to 20 MB under faults.
	s, err := sim.New(sim.Config{
		APIKey:            r.apiKey,
		WebhookURL:        r.svc.URL() + "/webhooks/retell",
		Calls:             cfg.Calls,
		TotalCalls:        cfg.TotalCalls,
		CallLength:        cfg.CallLength,
		Speed:             cfg.Speed,
		LiveTranscript:    cfg.LiveTranscript,
		PushTranscripts:   cfg.PushTranscripts,
		NotConnectedRatio: cfg.NotConnectedRatio,
		Faults:            cfg.Faults,
		Seed:              cfg.Seed,
		MaxRetainedCalls:  max(cfg.Calls, 100),
		RateLimitLog:      max(cfg.Calls, 100),
		Logger:            cfg.Logger.With("component", "sim"),
	})
	if err != nil {
		simLn.Close()
		return fmt.Errorf("soak: create simulator: %w", err)
	}
	simSrv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := simSrv.Serve(simLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("simulated provider server failed", "err", err)
		}
	})
	defer func() {
		// Shutdown also closes the service's idle connections to the
		// simulator, whose goroutines would otherwise outlive the drain.
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := simSrv.Shutdown(shutdownCtx); err != nil {
			simSrv.Close()
		}
		wg.Wait()
	}()

	r.cpuAtChurnStart = processCPU()
	r.churnStart = time.Now()
	r.steadyStart = r.churnStart.Add(cfg.Warmup)
	simRun := startTask(s.Run)
	defer simRun.stop()

	subs := newSubscribers(cfg.Subscribers, r.svc.URL(), cfg.wallCallLength(), r.log)
	subs.start()
	defer subs.stop()

	// Churn until Duration passes or TotalCalls calls were started.
	if err := r.churn(ctx, s, simRun, service); err != nil {
		return err
	}
	if cfg.AtSteadyEnd != nil {
		cfg.AtSteadyEnd()
	}

	// Drain.
	r.drainStart = time.Now()
	r.cpuAtDrainStart = processCPU()
	r.load.WebhooksQueuedAtDrain = s.Stats().WebhooksQueued
	s.StopStarting()
	r.log.Info("soak draining", "calls_started", s.Stats().CallsStarted, "timeout", cfg.DrainTimeout)
	deadline := time.NewTimer(cfg.DrainTimeout)
	defer deadline.Stop()
	select {
	case <-simRun.done:
		if simRun.err != nil {
			return fmt.Errorf("soak: simulator: %w", simRun.err)
		}
	case <-deadline.C:
		r.drainTimedOut = true
		r.log.Warn("soak drain timed out with calls unfinished", "timeout", cfg.DrainTimeout, "live_calls", s.Stats().LiveCalls)
		simRun.stop()
	case <-service.done:
		return fmt.Errorf("soak: the service stopped during the drain: %w", service.err)
	case <-ctx.Done():
		return fmt.Errorf("soak: interrupted: %w", ctx.Err())
	}
	if !r.drainTimedOut {
		r.waitUntracked(deadline.C)
	}
	r.trackedAfterDrain = r.svc.Tracker.Tracked()

	subs.stop()
	r.subStats = subs.stats()
	r.simStats = s.Stats()
	return nil
}

// churn waits until the churn is over: Duration passed or TotalCalls calls
// were started. It logs progress along the way.
func (r *runner) churn(ctx context.Context, s *sim.Sim, simRun, service *task) error {
	cfg := &r.cfg
	end := time.NewTimer(cfg.Duration)
	defer end.Stop()
	check := time.NewTicker(250 * time.Millisecond)
	defer check.Stop()
	progressEvery := max(10*time.Second, cfg.Duration/10)
	nextProgress := r.churnStart.Add(progressEvery)

	for {
		select {
		case <-end.C:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("soak: interrupted: %w", ctx.Err())
		case <-simRun.done:
			// With TotalCalls, Run returns by itself once every call is
			// finished, which a slow check may see first.
			if simRun.err == nil && cfg.TotalCalls > 0 && s.Stats().CallsStarted >= int64(cfg.TotalCalls) {
				return nil
			}
			err := simRun.err
			if err == nil {
				err = errors.New("returned before the churn ended")
			}
			return fmt.Errorf("soak: simulator: %w", err)
		case <-service.done:
			return fmt.Errorf("soak: the service stopped during the churn: %w", service.err)
		case now := <-check.C:
			st := s.Stats()
			r.load.observe(st.WebhooksQueued, r.svc.Tracker.Tracked(), now.After(r.steadyStart))
			if cfg.TotalCalls > 0 && st.CallsStarted >= int64(cfg.TotalCalls) {
				return nil
			}
			if now.After(nextProgress) {
				nextProgress = nextProgress.Add(progressEvery)
				cur := r.watcher.Samples(1)
				args := []any{"elapsed", now.Sub(r.churnStart).Round(time.Second), "calls_started", st.CallsStarted,
					"live_calls", st.LiveCalls, "tracked_calls", r.svc.Tracker.Tracked()}
				if len(cur) == 1 {
					args = append(args, "live_heap_bytes", cur[0].LiveHeapBytes, "rss_bytes", cur[0].RSSBytes, "goroutines", cur[0].Goroutines)
				}
				r.log.Info("soak progress", args...)
			}
		}
	}
}

// waitUntracked waits until the tracker holds no call or deadline fires.
func (r *runner) waitUntracked(deadline <-chan time.Time) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for r.svc.Tracker.Tracked() > 0 {
		select {
		case <-deadline:
			r.drainTimedOut = true
			r.log.Warn("soak drain timed out with calls still tracked", "tracked_calls", r.svc.Tracker.Tracked())
			return
		case <-tick.C:
		}
	}
}

// quietSample collects garbage twice (the second cycle frees what sync.Pool
// kept through the first), returns freed memory to the OS, waits for wait
// and takes a sample.
func (r *runner) quietSample(wait time.Duration) memwatch.Sample {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	if wait > 0 {
		time.Sleep(wait)
	}
	return r.watcher.Sample()
}

// waitGoroutinesSteady waits until the number of goroutines has not changed
// for 200 ms, or until timeout. app.Serve calls back as soon as its
// goroutines are launched, before the tracker has started its workers.
func waitGoroutinesSteady(timeout time.Duration) {
	const poll, quiet = 20 * time.Millisecond, 10 // 10 polls unchanged
	deadline := time.Now().Add(timeout)
	last, same := runtime.NumGoroutine(), 0
	for same < quiet && time.Now().Before(deadline) {
		time.Sleep(poll)
		n := runtime.NumGoroutine()
		if n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
}

// settledSample waits up to settleTimeout for the goroutines and file
// descriptors of closed connections to go, then takes the after-drain
// sample. Connection goroutines end asynchronously after the peer closes.
func (r *runner) settledSample() memwatch.Sample {
	rules := &r.cfg.Rules
	deadline := time.Now().Add(settleTimeout)
	for time.Now().Before(deadline) {
		s := r.quietSample(0)
		if s.Goroutines <= r.baseline.Goroutines+rules.MaxGoroutinesAboveBaseline &&
			s.FDs <= r.baseline.FDs+rules.MaxFDsAboveBaseline {
			break
		}
		time.Sleep(settlePoll)
	}
	return r.quietSample(250 * time.Millisecond)
}

// task is a function running in its own goroutine until its context ends or
// it returns by itself.
type task struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the function returned
	err    error         // the function's result, set before done is closed
}

func startTask(run func(context.Context) error) *task {
	ctx, cancel := context.WithCancel(context.Background())
	t := &task{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		t.err = run(ctx)
	}()
	return t
}

// stop cancels the task, waits for it to return and returns its error. It
// may be called more than once.
func (t *task) stop() error {
	t.cancel()
	<-t.done
	return t.err
}
