// Package tracker is the live-call engine. It applies provider payloads
// (webhooks, polls) to the store, publishes the resulting events, and polls
// the provider's get-call for every live call as a backstop to webhooks.
//
// Unlike one goroutine and one timer per call, the tracker keeps one
// scheduler goroutine with a min-heap of due times and a fixed pool of poll
// workers. Goroutines and timers therefore stay constant as calls come and
// go; per-call memory is one small struct that is deleted when the call ends.
package tracker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/ratelog"
	"github.com/callcat/callcat/internal/retell"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config.
const (
	DefaultPollInterval        = 3 * time.Second
	DefaultReconcileInterval   = 30 * time.Second
	DefaultMaxTracked          = 10000
	DefaultMaxTrackingDuration = 2 * time.Hour
	DefaultWorkers             = 16
	DefaultBackoffMin          = 1 * time.Second
	DefaultBackoffMax          = 60 * time.Second
	DefaultFinalFetchAttempts  = 6
	DefaultRetryAfterMax       = 2 * time.Minute
	DefaultAuthRetryInterval   = 30 * time.Second
	DefaultApplyTimeout        = 10 * time.Second
)

// lockStripes is the number of per-call locks. Applying an update and
// publishing its events happen under the call's stripe, so events of one call
// reach the hub in seq order. Calls share stripes; that only costs waiting.
const lockStripes = 256

// Errors returned by the tracker.
var (
	// ErrTooManyCalls means the tracked-call bound is reached; the update was
	// stored but the call is not polled.
	ErrTooManyCalls = errors.New("tracked call limit reached")
)

// Poller fetches one call from the provider. *retell.Client implements it.
type Poller interface {
	GetCall(ctx context.Context, callID string) (*retell.Call, error)
}

// Publisher receives stored events. *stream.Hub implements it; Publish must
// not block.
type Publisher interface {
	Publish(events []callcat.Event)
}

// Config holds the tracker's tunables. Zero values take the defaults above.
type Config struct {
	// PollInterval is the get-call period of a live call while no push
	// webhook arrived within the last PollInterval.
	PollInterval time.Duration

	// ReconcileInterval is the get-call period while pushes flow.
	ReconcileInterval time.Duration

	// MaxTracked bounds the live calls held in memory and polled.
	MaxTracked int

	// MaxTrackingDuration stops polling a call this long after tracking
	// started (or the call was first stored, after a restart).
	MaxTrackingDuration time.Duration

	// Workers is the number of concurrent polls. Set it to the provider
	// client's in-flight bound.
	Workers int

	// BackoffMin and BackoffMax bound the exponential backoff after a failed
	// poll; RetryAfterMax caps a provider's Retry-After.
	BackoffMin, BackoffMax, RetryAfterMax time.Duration

	// FinalFetchAttempts bounds the get-call attempts of an ended call's
	// final fetch. After that many failures the call leaves memory with what
	// its webhooks stored. With the default backoff, the 6 attempts wait
	// at most 31 s in all between them, plus any Retry-After.
	FinalFetchAttempts int

	// AuthRetryInterval is how often one probe poll is tried while the
	// provider rejects the API key (401/403) and all polling is paused.
	AuthRetryInterval time.Duration

	// Leaser, when set, shares the live calls with other replicas on the same
	// store: this tracker polls only the calls whose lease it holds, renews
	// them every LeaseRenewInterval for LeaseTTL, and adopts calls whose
	// owner stopped renewing. Owner names this replica and must be unique.
	Leaser             callcat.Leaser
	Owner              string
	LeaseTTL           time.Duration
	LeaseRenewInterval time.Duration

	// AdoptBatch bounds the calls adopted per renewal period.
	AdoptBatch int

	// KeepLeasesOnStop skips releasing the leases when Run ends, as a crash
	// would. Tests use it to check that other replicas adopt the calls.
	KeepLeasesOnStop bool

	// LeakEndedCalls keeps every untracked call's state in memory forever.
	// It exists only so the soak test can prove it catches a leak; never set
	// it in a real deployment.
	LeakEndedCalls bool

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.PollInterval, DefaultPollInterval)
	def(&c.ReconcileInterval, DefaultReconcileInterval)
	def(&c.MaxTrackingDuration, DefaultMaxTrackingDuration)
	def(&c.BackoffMin, DefaultBackoffMin)
	def(&c.BackoffMax, DefaultBackoffMax)
	def(&c.RetryAfterMax, DefaultRetryAfterMax)
	def(&c.AuthRetryInterval, DefaultAuthRetryInterval)
	def(&c.LeaseTTL, DefaultLeaseTTL)
	def(&c.LeaseRenewInterval, DefaultLeaseRenewInterval)
	if c.AdoptBatch <= 0 {
		c.AdoptBatch = DefaultAdoptBatch
	}
	if c.FinalFetchAttempts <= 0 {
		c.FinalFetchAttempts = DefaultFinalFetchAttempts
	}
	if c.MaxTracked <= 0 {
		c.MaxTracked = DefaultMaxTracked
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// leakedCall is the state LeakEndedCalls keeps of an ended call.
type leakedCall struct {
	call       *trackedCall
	transcript []byte
}

// Tracker keeps every live call in sync. Create it with New, then call Run.
// HandleWebhook and Track may be called before, during and after Run.
type Tracker struct {
	cfg     Config
	store   callcat.Store
	hub     Publisher
	poller  Poller
	logger  *slog.Logger
	limited *ratelog.Limiter
	metrics *metrics

	locks [lockStripes]sync.Mutex

	mu        sync.Mutex
	calls     map[string]*trackedCall // guarded by mu
	queue     callHeap                // guarded by mu; calls waiting for their next poll
	authPause time.Time               // guarded by mu; zero when polling runs
	leaked    []leakedCall            // guarded by mu; grows only with LeakEndedCalls
	foreign   map[string]time.Time    // guarded by mu; calls another replica leases, until when to skip claims

	// leaseClaims counts the leases recorded by trackLeased; guarded by mu.
	leaseClaims uint64

	wake chan struct{} // one slot: the scheduler re-reads the queue

	running atomic.Bool

	// digestSeed keys updateDigest. Digests never leave the process.
	digestSeed maphash.Seed
}

// New returns a tracker over store, publishing to hub and polling through
// poller (nil disables polling, for tests that only push).
func New(store callcat.Store, hub Publisher, poller Poller, cfg Config) (*Tracker, error) {
	if store == nil || hub == nil {
		return nil, errors.New("tracker: store and hub are required")
	}
	cfg.setDefaults()

	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("tracker: register metrics: %w", err)
	}

	return &Tracker{
		cfg:     cfg,
		store:   store,
		hub:     hub,
		poller:  poller,
		logger:  cfg.Logger,
		limited: ratelog.New(cfg.Logger, 0),
		metrics: m,
		calls:   make(map[string]*trackedCall),
		foreign: make(map[string]time.Time),
		wake:    make(chan struct{}, 1),

		digestSeed: maphash.MakeSeed(),
	}, nil
}

// Run resumes tracking of the live calls in the store, then schedules polls
// until ctx is done. It returns after every worker has stopped. Tracked calls
// stay registered, so a later Run resumes them.
func (t *Tracker) Run(ctx context.Context) error {
	if !t.running.CompareAndSwap(false, true) {
		return errors.New("tracker: already running")
	}
	defer t.running.Store(false)

	if t.leasing() {
		if t.cfg.Owner == "" {
			return errors.New("tracker: a replica id (Owner) is required with a shared store")
		}
	} else if err := t.resume(ctx); err != nil {
		return err
	}

	t.logger.Info("tracker started", "tracked_calls", t.Tracked(), "workers", t.cfg.Workers,
		"poll_interval", t.cfg.PollInterval, "reconcile_interval", t.cfg.ReconcileInterval)
	defer func() { t.logger.Info("tracker stopped", "tracked_calls", t.Tracked()) }()

	if t.poller == nil {
		<-ctx.Done()
		return nil
	}

	work := make(chan *trackedCall)
	var wg sync.WaitGroup
	if t.leasing() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.runLeases(ctx)
		}()
	}
	for range t.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				t.poll(ctx, c)
			}
		}()
	}

	t.schedule(ctx, work)
	close(work)
	wg.Wait()
	return nil
}

// resume tracks every call the store holds as live, so a restart loses none.
func (t *Tracker) resume(ctx context.Context) error {
	live, err := t.store.LiveCalls(ctx, t.cfg.MaxTracked)
	if err != nil {
		return fmt.Errorf("tracker: load live calls: %w", err)
	}

	now := t.cfg.Now()
	for _, c := range live {
		started := c.CreatedAt
		if started.IsZero() {
			started = now
		}
		if err := t.track(c.ID, started, false); err != nil {
			t.logger.Warn("live call not resumed", "call_id", c.ID, "err", err)
		}
	}
	if len(live) > 0 {
		t.logger.Info("resumed live calls", "count", len(live))
	}
	return nil
}

// Track starts polling a call that is known to be live, for example one just
// placed through the API. Tracking an already tracked call does nothing.
func (t *Tracker) Track(callID string) error {
	// With leases, a call tracked without one would look lost at the next
	// renewal, and another replica could poll it too.
	if t.leasing() {
		t.claimAndTrack(context.Background(), callID)
		return nil
	}
	return t.track(callID, t.cfg.Now(), false)
}

// Tracked returns the number of calls held in memory.
func (t *Tracker) Tracked() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.calls)
}

// IsTracked reports whether callID is held in memory.
func (t *Tracker) IsTracked(callID string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.calls[callID]
	return ok
}

// Ready returns an error while the provider rejects the API key.
func (t *Tracker) Ready() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.authPause.IsZero() {
		return errors.New("provider rejected the API key; polling is paused")
	}
	return nil
}

// apply stores u and publishes its events, both under the call's lock so the
// hub receives each call's events in seq order.
func (t *Tracker) apply(ctx context.Context, u callcat.Update) (callcat.ApplyResult, error) {
	lock := t.lockOf(u.Fields.ID)
	lock.Lock()
	defer lock.Unlock()
	return t.applyLocked(ctx, u)
}

// lockOf returns the lock of callID's stripe.
func (t *Tracker) lockOf(callID string) *sync.Mutex {
	return &t.locks[stripe(callID)]
}

// applyLocked is apply for a caller that holds the call's lock.
func (t *Tracker) applyLocked(ctx context.Context, u callcat.Update) (callcat.ApplyResult, error) {
	res, err := t.store.Apply(ctx, u)
	if err != nil {
		return res, err
	}
	if len(res.Events) > 0 {
		t.hub.Publish(res.Events)
		t.metrics.events.Add(float64(len(res.Events)))
	}
	if res.SnapshotStale {
		t.metrics.staleSnapshots.Inc()
	}
	return res, nil
}

func stripe(callID string) uint32 {
	return hash32(callID) % lockStripes
}

func hash32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// Apply stores an update that came from neither a webhook nor a poll, such
// as the response of create-phone-call, and publishes its events under the
// call's lock, in order with the call's other events.
func (t *Tracker) Apply(ctx context.Context, u callcat.Update) (callcat.ApplyResult, error) {
	return t.apply(ctx, u)
}
