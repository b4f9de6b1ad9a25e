// Package sim simulates the voice-AI provider (Retell) for callcat's demo,
// tests, soak runs and benchmarks. It serves the provider's call API
// (get-call, create-phone-call, stop-call, list-calls) and sends signed call
// webhooks for calls whose transcripts grow word by word.
//
// Time: every call runs on its own simulated clock, which starts at the wall
// time (Config.Now) when the call is created and runs Config.Speed times
// faster. Call timestamps (start_timestamp, end_timestamp) come from that
// clock, so with Speed above 1 they run ahead of the wall clock, and
// end_timestamp - start_timestamp always equals duration_ms. Webhook
// signatures use the wall clock, because receivers check them against theirs.
//
// Content: a call's conversation, parties and timings depend only on
// Config.Seed and the order in which calls were started. Call ids are random,
// so two runs never collide in a consumer's store.
package sim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Defaults for zero Config fields.
const (
	DefaultCallLength         = 45 * time.Second
	DefaultAnalysisDelay      = 2 * time.Second
	DefaultWebhookConcurrency = 8
	DefaultWebhookTimeout     = 10 * time.Second // the provider's default webhook_timeout_ms
	DefaultRetryBackoff       = time.Second
	DefaultMaxRetainedCalls   = 10_000
	DefaultMaxLiveCalls       = 10_000
	DefaultMaxQueuedWebhooks  = 100_000
	DefaultRateLimitLog       = 100_000
)

// tickInterval is how often Run advances every call, in wall time.
const tickInterval = 25 * time.Millisecond

// Config sets up a Sim. Only APIKey is required.
type Config struct {
	// APIKey is the key API requests must carry as "Authorization: Bearer
	// <APIKey>". Webhooks are signed with it.
	APIKey string

	// WebhookURL receives the webhooks. "" sends none.
	WebhookURL string

	// Calls is how many live (registered or ongoing) calls Run keeps going,
	// counting calls from StartCall and create-phone-call. 0 means Run starts
	// none by itself.
	Calls int

	// TotalCalls stops Run from starting calls once this many were started in
	// all (by Run, StartCall or create-phone-call); Run then returns when all of
	// them are finished. 0 means no limit: Run goes on until ctx ends.
	TotalCalls int

	// CallLength is the simulated length of a connected call (default 45 s),
	// varied by up to ±20% per call. Every call has an opening and a closing,
	// so a length shorter than those makes the caller hang up mid-way.
	CallLength time.Duration

	// Speed compresses time: at 10, a 45 s call takes 4.5 s of wall time
	// (default 1). Word timings stay in simulated seconds.
	Speed float64

	// LiveTranscript makes get-call of an ongoing call carry the transcript
	// so far, including the utterance being spoken cut mid-sentence. By
	// default an ongoing call has no transcript fields, as documented for the
	// provider.
	LiveTranscript bool

	// PushTranscripts sends transcript_updated at each change of speaker and
	// once at the end. The provider sends it only to agents that opt in, so it
	// is off unless set.
	PushTranscripts bool

	// NotConnectedRatio is the share of calls, from 0 to 1, that never
	// connect (dial_no_answer or dial_busy). They are outbound, get no
	// call_started, and end with status not_connected.
	NotConnectedRatio float64

	// AnalysisDelay is the simulated time from the end of a call to
	// call_analyzed (default 2 s).
	AnalysisDelay time.Duration

	// Seed makes call content deterministic.
	Seed int64

	// HTTPClient sends webhooks. By default the Sim uses its own client with
	// a pooled transport, and closes its idle connections when Run returns.
	HTTPClient *http.Client

	// WebhookConcurrency bounds the webhook senders (default 8). The webhooks
	// of one call are sent in order, one at a time.
	WebhookConcurrency int

	// WebhookTimeout bounds one delivery attempt (default 10 s).
	WebhookTimeout time.Duration

	// RetryBackoff is the wall-time wait before the first retry of a failed
	// webhook (default 1 s). It doubles for the second and third retry.
	RetryBackoff time.Duration

	// MaxRetainedCalls bounds the finished calls kept for get-call, list-calls
	// and Calls (default 10000). The oldest finished calls are dropped first.
	MaxRetainedCalls int

	// MaxLiveCalls bounds live calls: create-phone-call responds 429 beyond it
	// (default 10000).
	MaxLiveCalls int

	// MaxQueuedWebhooks bounds the webhooks waiting for delivery across all
	// calls (default 100000). Webhooks beyond it are dropped and counted in
	// Stats.WebhooksDropped.
	MaxQueuedWebhooks int

	// Logger receives the Sim's logs (default: discarded).
	Logger *slog.Logger

	// Now is the wall clock (default time.Now). It drives simulated time,
	// timestamps, signatures and retry backoff. Run only polls it.
	Now func() time.Time

	// Faults selects the provider failures to inject (see Faults). The zero
	// value injects none.
	Faults Faults

	// RequestLog is how many of its latest get-call and stop-call requests
	// each call keeps for Requests (0: none).
	RequestLog int

	// RateLimitLog bounds the 429 responses RateLimited keeps (default
	// 100000). The oldest are dropped first. Each record takes about 200
	// bytes of heap (measured with Go 1.26 on linux/amd64).
	RateLimitLog int

	// DeliveryLog is how many digests of delivered webhooks Delivered keeps
	// (0: none, unless DebugRoutes sets DefaultDebugDeliveryLog).
	DeliveryLog int

	// DebugRoutes serves the simulator-only routes under /_sim/ (see
	// addDebugRoutes in debug.go), for tests that run the Sim in another
	// process.
	DebugRoutes bool
}

// Sim is a simulated provider. Create it with New, serve Handler, and call
// Run to make its calls progress.
type Sim struct {
	cfg       Config
	log       *slog.Logger
	client    *http.Client
	ownClient bool
	handler   http.Handler
	wake      chan struct{} // wakes idle senders; capacity WebhookConcurrency

	mu              sync.Mutex // guards the fields below and the mutable fields of every call
	running         bool
	stopStarting    bool // StopStarting was called
	calls           map[string]*call
	active          []*call     // unfinished calls, from which the scheduler drops finished ones
	waiting         []*call     // calls whose head webhook waits for its retry time
	ready           fifo[*call] // calls with a webhook to send and no sender
	finishedCalls   fifo[*call] // retained finished calls, oldest first
	started         int64       // calls started so far, which is also the newest call's seq
	live            int         // calls registered or ongoing
	unfinished      int         // calls not finished
	queuedWebhooks  int         // webhooks pending across all calls
	stats           Stats
	lastGiveUpLog   time.Time
	giveUpsSinceLog int
	debug           debugState

	faults *faultState // has its own lock, taken after mu when both are held
}

// Stats holds the Sim's counters since New and a few current gauges.
type Stats struct {
	CallsStarted      int64 // by Run, StartCall and create-phone-call
	CallsEnded        int64 // calls that connected and ended
	CallsNotConnected int64 // calls that ended without connecting
	CallsAnalyzed     int64
	LiveCalls         int   // registered or ongoing now
	RetainedCalls     int   // calls held in memory now, live and finished
	WebhooksSent      int64 // delivery attempts that got a 2xx response
	WebhooksRetried   int64 // failed attempts that were scheduled to be sent again
	WebhooksFailed    int64 // webhooks given up after the last retry
	WebhooksDropped   int64 // webhooks not queued because MaxQueuedWebhooks was reached
	WebhooksQueued    int   // webhooks waiting for delivery now
	GetCallRequests   int64 // authorised get-call requests

	// WebhooksUnanswered counts attempts that were sent but got no response:
	// the connection closed or timed out after it was established.
	WebhooksUnanswered int64
	Faults             FaultCounts
}

// CallInfo describes one simulated call for tests and tools.
type CallInfo struct {
	ID                  string
	Status              string // registered, ongoing, ended or not_connected
	Direction           string // inbound or outbound
	AgentID             string
	FromNumber          string
	ToNumber            string
	DisconnectionReason string // "" until the call is terminal
	StartTimestamp      int64  // epoch ms on the call's simulated clock; 0 until connected
	EndTimestamp        int64  // epoch ms; 0 until terminal
	Utterances          int    // utterances spoken so far (whole or in progress)

	// FinalTranscript is the provider's transcript text of the ended call:
	// an "Agent: …" or "User: …" line per utterance. It is "" until the call
	// ends and for calls that never connected.
	FinalTranscript string

	Ended           bool // the status is terminal
	Analyzed        bool // call_analyzed happened
	WebhooksPending int  // webhooks of this call not yet delivered or given up
}

// New returns a Sim for cfg with defaults filled in.
func New(cfg Config) (*Sim, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}

	s := &Sim{
		cfg:    cfg,
		log:    cfg.Logger,
		client: cfg.HTTPClient,
		wake:   make(chan struct{}, cfg.WebhookConcurrency),
		calls:  make(map[string]*call),
	}
	if s.client == nil {
		s.client = newHTTPClient(cfg.WebhookConcurrency, cfg.WebhookTimeout)
		s.ownClient = true
	}
	s.faults = newFaultState(cfg.Faults, cfg.Seed)
	s.handler = s.routes()
	return s, nil
}

func (cfg *Config) setDefaults() error {
	if cfg.APIKey == "" {
		return errors.New("sim: APIKey is required")
	}
	if cfg.WebhookURL != "" {
		u, err := url.Parse(cfg.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("sim: WebhookURL %q is not an absolute http or https URL", cfg.WebhookURL)
		}
	}

	switch {
	case cfg.Calls < 0, cfg.TotalCalls < 0:
		return errors.New("sim: Calls and TotalCalls must not be negative")
	case cfg.Speed < 0 || math.IsNaN(cfg.Speed) || math.IsInf(cfg.Speed, 0):
		return fmt.Errorf("sim: Speed %v must be a positive number", cfg.Speed)
	case cfg.NotConnectedRatio < 0 || cfg.NotConnectedRatio > 1 || math.IsNaN(cfg.NotConnectedRatio):
		return fmt.Errorf("sim: NotConnectedRatio %v must be between 0 and 1", cfg.NotConnectedRatio)
	case cfg.CallLength < 0, cfg.AnalysisDelay < 0, cfg.WebhookTimeout < 0, cfg.RetryBackoff < 0:
		return errors.New("sim: durations must not be negative")
	case cfg.WebhookConcurrency < 0, cfg.MaxRetainedCalls < 0, cfg.MaxLiveCalls < 0, cfg.MaxQueuedWebhooks < 0,
		cfg.RequestLog < 0, cfg.DeliveryLog < 0, cfg.RateLimitLog < 0:
		return errors.New("sim: limits must not be negative")
	}
	if err := cfg.Faults.validate(); err != nil {
		return err
	}
	cfg.Faults.setDefaults()
	if cfg.DebugRoutes && cfg.DeliveryLog == 0 {
		cfg.DeliveryLog = DefaultDebugDeliveryLog
	}

	if cfg.CallLength == 0 {
		cfg.CallLength = DefaultCallLength
	}
	if cfg.Speed == 0 {
		cfg.Speed = 1
	}
	if cfg.AnalysisDelay == 0 {
		cfg.AnalysisDelay = DefaultAnalysisDelay
	}
	if cfg.WebhookConcurrency == 0 {
		cfg.WebhookConcurrency = DefaultWebhookConcurrency
	}
	if cfg.WebhookTimeout == 0 {
		cfg.WebhookTimeout = DefaultWebhookTimeout
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.MaxRetainedCalls == 0 {
		cfg.MaxRetainedCalls = DefaultMaxRetainedCalls
	}
	if cfg.MaxLiveCalls == 0 {
		cfg.MaxLiveCalls = DefaultMaxLiveCalls
	}
	if cfg.MaxQueuedWebhooks == 0 {
		cfg.MaxQueuedWebhooks = DefaultMaxQueuedWebhooks
	}
	if cfg.RateLimitLog == 0 {
		cfg.RateLimitLog = DefaultRateLimitLog
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return nil
}

func newHTTPClient(conns int, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:           dialer.DialContext,
			MaxIdleConns:          2 * conns,
			MaxIdleConnsPerHost:   conns,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: timeout,
		},
	}
}

// Handler returns the provider API: GET /v2/get-call/{call_id},
// POST /v2/create-phone-call, POST /v2/stop-call/{call_id} and
// POST /v3/list-calls.
func (s *Sim) Handler() http.Handler { return s.handler }

// Run advances every call on a ticker and delivers webhooks through
// Config.WebhookConcurrency senders. It returns nil when ctx ends, or when
// Config.TotalCalls calls were started or StopStarting was called, and all
// calls started are finished: ended, analyzed and every webhook delivered or
// given up. All its goroutines have stopped when it returns. Only one Run may
// be active at a time.
func (s *Sim) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("sim: Run is already running")
	}
	s.running = true
	for _, c := range s.active {
		s.makeReadyLocked(c) // webhooks left over from an earlier Run
	}
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		if s.ownClient {
			s.client.CloseIdleConnections()
		}
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()

	if s.cfg.WebhookURL != "" {
		for range s.cfg.WebhookConcurrency {
			wg.Go(func() { s.sendLoop(ctx) })
		}
	}
	s.log.Info("simulator running", "calls", s.cfg.Calls, "total_calls", s.cfg.TotalCalls, "speed", s.cfg.Speed)

	ticker := time.NewTicker(tickInterval)
	defer ticker.Stop()
	for {
		if s.tick() {
			s.log.Info("simulator finished all calls", "calls_started", s.Stats().CallsStarted)
			return nil
		}
		select {
		case <-ctx.Done():
			s.log.Info("simulator stopped")
			return nil
		case <-ticker.C:
		}
	}
}

// tick starts calls up to Config.Calls, advances every unfinished call and
// wakes retries. It returns true when Run's work is done.
func (s *Sim) tick() bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()

	for s.cfg.Calls > 0 && s.live < s.cfg.Calls && s.canStartLocked() {
		s.startLocked(now, &startOptions{})
	}

	kept := s.active[:0]
	for _, c := range s.active {
		s.advanceLocked(c, now)
		if !c.finished {
			kept = append(kept, c)
		}
	}
	clear(s.active[len(kept):])
	s.active = kept

	s.wakeRetriesLocked(now)
	return (s.cfg.TotalCalls > 0 || s.stopStarting) && !s.canStartLocked() && s.unfinished == 0
}

func (s *Sim) canStartLocked() bool {
	return !s.stopStarting && (s.cfg.TotalCalls == 0 || s.started < int64(s.cfg.TotalCalls))
}

// StopStarting makes Run start no more calls of its own, as if
// Config.TotalCalls had been reached: calls already started go on to their
// end, and Run returns once all of them are finished. StartCall and
// create-phone-call still start calls.
func (s *Sim) StopStarting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopStarting = true
}

// StartCall starts one call now, inbound or outbound as the seed decides, and
// returns its id. The call progresses while Run is running.
func (s *Sim) StartCall() string {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked(now, &startOptions{}).id
}

func (s *Sim) startLocked(now time.Time, opts *startOptions) *call {
	s.started++
	c := &call{
		id:        s.newCallIDLocked(),
		seq:       s.started,
		sc:        newScript(&s.cfg, s.started, opts),
		created:   now,
		createdMS: now.UnixMilli(),
		phase:     phaseRinging,
		status:    statusRegistered,
		endAt:     math.Inf(1),
	}
	c.nextAt = c.sc.ring

	s.calls[c.id] = c
	s.active = append(s.active, c)
	s.live++
	s.unfinished++
	s.stats.CallsStarted++
	return c
}

// newCallIDLocked returns an unused id of the provider's form: "call_" and 27
// hex digits.
func (s *Sim) newCallIDLocked() string {
	for {
		id := fmt.Sprintf("call_%016x%011x", rand.Uint64(), rand.Uint64()>>20)
		if _, taken := s.calls[id]; !taken {
			return id
		}
	}
}

// Call returns the call with id, if the Sim still holds it.
func (s *Sim) Call(id string) (CallInfo, bool) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.calls[id]
	if !ok {
		s.mu.Unlock()
		return CallInfo{}, false
	}
	info, st := s.infoLocked(c), c.state()
	s.mu.Unlock()

	s.fillTranscript(c, st, now, &info)
	return info, true
}

// Calls returns every call the Sim holds, in start order. Finished calls
// beyond Config.MaxRetainedCalls are no longer held.
func (s *Sim) Calls() []CallInfo {
	now := s.now()
	s.mu.Lock()
	type entry struct {
		c    *call
		st   callState
		info CallInfo
	}
	entries := make([]entry, 0, len(s.calls))
	for _, c := range s.calls {
		entries = append(entries, entry{c, c.state(), s.infoLocked(c)})
	}
	s.mu.Unlock()

	slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.c.seq, b.c.seq) })
	out := make([]CallInfo, len(entries))
	for i := range entries {
		s.fillTranscript(entries[i].c, entries[i].st, now, &entries[i].info)
		out[i] = entries[i].info
	}
	return out
}

func (s *Sim) infoLocked(c *call) CallInfo {
	info := CallInfo{
		ID:              c.id,
		Status:          c.status,
		Direction:       c.sc.direction,
		AgentID:         c.sc.agentID,
		FromNumber:      c.sc.from,
		ToNumber:        c.sc.to,
		Ended:           c.phase >= phaseAnalyzing,
		Analyzed:        c.analyzed,
		WebhooksPending: len(c.pending),
	}
	if c.connected {
		info.StartTimestamp = c.startMS()
	}
	if c.end != nil {
		info.DisconnectionReason = c.reason
		info.EndTimestamp = c.end.endMS
	}
	return info
}

// fillTranscript sets the utterance count and the final transcript of info
// outside s.mu, from the immutable script.
func (s *Sim) fillTranscript(c *call, st callState, now time.Time, info *CallInfo) {
	if !st.connected {
		return
	}
	at := min(c.simTime(now, s.cfg.Speed), st.endAt) - c.sc.ring
	info.Utterances = c.sc.utterancesAt(at)
	if st.end != nil {
		info.FinalTranscript = c.sc.snapshot(at).text
	}
}

// Stats returns the Sim's counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.LiveCalls = s.live
	st.RetainedCalls = len(s.calls)
	st.WebhooksQueued = s.queuedWebhooks
	st.Faults = s.faults.snapshot()
	return st
}

func (s *Sim) now() time.Time { return s.cfg.Now() }
