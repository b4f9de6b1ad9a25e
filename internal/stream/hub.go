package stream

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config.
const (
	DefaultBufferSize     = 64
	DefaultMaxSubscribers = 10000
)

// dropLogInterval is the minimum time between two log lines about dropped
// subscriptions. Drops in between are counted into the next line.
const dropLogInterval = time.Second

// shrinkMinCap is the capacity below which a call's subscription slice is never
// reallocated to a smaller one.
const shrinkMinCap = 64

// Errors returned by Hub and Subscription.
var (
	// ErrTooManySubscribers means the hub already holds Config.MaxSubscribers
	// subscriptions. The caller may retry after others close.
	ErrTooManySubscribers = errors.New("too many stream subscribers")

	// ErrClosed means the hub is closed. Subscribe fails with it, and
	// Subscription.Err returns it for subscriptions that Hub.Close ended.
	ErrClosed = errors.New("stream hub closed")

	// ErrDropped is Subscription.Err of a subscription whose buffer was full
	// when a frame arrived. The subscriber missed that frame and all later ones.
	ErrDropped = errors.New("stream subscriber dropped because its buffer was full")

	// ErrUnsubscribed is Subscription.Err after Subscription.Close.
	ErrUnsubscribed = errors.New("stream subscription closed")
)

// Subscription states. A subscription leaves stateActive at most once, and
// the first transition decides its Err.
const (
	stateActive int32 = iota
	stateDropped
	stateUnsubscribed
	stateHubClosed
)

// Config sets the bounds and the instrumentation of a Hub. The zero value is
// valid.
type Config struct {
	// BufferSize is the number of frames buffered per subscription. A
	// subscription whose buffer is full when a frame arrives is dropped: its
	// channel is closed and Dropped reports true. Zero means DefaultBufferSize.
	BufferSize int

	// MaxSubscribers caps the subscriptions across the whole hub. Zero means
	// DefaultMaxSubscribers.
	MaxSubscribers int

	// Registerer, if not nil, receives the gauge callcat_sse_subscribers and
	// the counters callcat_sse_dropped_subscribers_total and
	// callcat_events_published_total.
	Registerer prometheus.Registerer

	// Logger receives at most one line per second about dropped
	// subscriptions. Nil discards the logs.
	Logger *slog.Logger
}

// Hub delivers published call events to the subscriptions of each call and
// to the subscriptions of all calls.
//
// Publish encodes each event once and sends the same *Frame to every
// subscriber with a non-blocking send, so a slow subscriber costs the
// publisher one failed send and is then dropped. Publish holds the read lock
// while it sends, and channels are closed only under the write lock, so a send
// never meets a closed channel. Subscribe and Close take the write lock, so they
// wait for the delivery of the frame in progress.
type Hub struct {
	bufferSize     int
	maxSubscribers int
	logger         *slog.Logger
	metrics        *metrics
	now            func() time.Time // replaced by tests of the drop log

	// mu guards the fields below, and the index and removed fields of every
	// Subscription of this hub.
	mu sync.RWMutex

	// subs holds the active subscriptions by call id, "" for subscriptions to
	// every call. A call without subscriptions has no key.
	subs   map[string][]*Subscription
	count  int
	closed bool

	dropLog struct {
		mu      sync.Mutex
		last    time.Time // time of the last log line
		pending int       // drops since the last log line
	}
}

// NewHub returns a hub with cfg's bounds. It fails when a bound is negative
// or the metrics cannot be registered.
func NewHub(cfg Config) (*Hub, error) {
	if cfg.BufferSize < 0 {
		return nil, fmt.Errorf("invalid stream buffer size %d: must be 0 (default %d) or more", cfg.BufferSize, DefaultBufferSize)
	}
	if cfg.MaxSubscribers < 0 {
		return nil, fmt.Errorf("invalid max stream subscribers %d: must be 0 (default %d) or more", cfg.MaxSubscribers, DefaultMaxSubscribers)
	}
	if cfg.BufferSize == 0 {
		cfg.BufferSize = DefaultBufferSize
	}
	if cfg.MaxSubscribers == 0 {
		cfg.MaxSubscribers = DefaultMaxSubscribers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}

	return &Hub{
		bufferSize:     cfg.BufferSize,
		maxSubscribers: cfg.MaxSubscribers,
		logger:         cfg.Logger,
		metrics:        m,
		now:            time.Now,
		subs:           make(map[string][]*Subscription),
	}, nil
}

// Subscribe returns a subscription to the events of callID, or to the events
// of every call when callID is "". It fails with ErrTooManySubscribers when the
// hub is full and with ErrClosed after Close. The caller must Close the
// subscription when it stops reading.
func (h *Hub) Subscribe(callID string) (*Subscription, error) {
	s := &Subscription{
		hub:    h,
		callID: callID,
		ch:     make(chan *Frame, h.bufferSize),
	}

	h.mu.Lock()
	defer h.mu.Unlock()

	if h.closed {
		return nil, ErrClosed
	}
	if h.count >= h.maxSubscribers {
		return nil, fmt.Errorf("%w: limit is %d", ErrTooManySubscribers, h.maxSubscribers)
	}

	subs := h.subs[callID]
	s.index = len(subs)
	h.subs[callID] = append(subs, s)
	h.count++
	h.metrics.subscribers.Inc()
	return s, nil
}

// Publish delivers events to the subscriptions of their calls and to the
// subscriptions of all calls. It never blocks on a subscriber and is safe for
// concurrent use. Each subscriber receives the events of one Publish call in
// slice order, but Publish calls that run concurrently may interleave, so a
// caller publishes one call's events from one goroutine in seq order.
// A subscription made while Publish runs may miss some of its events.
func (h *Hub) Publish(events []callcat.Event) {
	if len(events) == 0 {
		return
	}
	h.metrics.published.Add(float64(len(events)))
	if !h.hasSubscribers(events) {
		return
	}

	frames := encodeFrames(events)

	// The read lock is taken per frame so that Subscribe and Close wait for
	// at most one frame's delivery, not a whole batch.
	var dropped []*Subscription
	for i := range frames {
		f := &frames[i]
		h.mu.RLock()
		dropped = deliver(h.subs[f.CallID], f, dropped)
		if f.CallID != "" {
			dropped = deliver(h.subs[""], f, dropped)
		}
		h.mu.RUnlock()
	}

	if len(dropped) > 0 {
		h.removeDropped(dropped)
	}
}

// ResyncSeq is the Seq of a resync frame: a frame without bytes that tells a
// subscriber it may have missed events and must read them from the store.
// It is larger than any real seq, so a reader that treats a seq beyond its
// last + 1 as a gap resynchronises without special code.
const ResyncSeq = math.MaxInt64

// resyncFrame is shared by every resync; it carries no event.
var resyncFrame = &Frame{Seq: ResyncSeq}

// HasSubscribers reports whether callID has subscriptions of its own.
func (h *Hub) HasSubscribers(callID string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs[callID]) > 0
}

// Resync sends a resync frame to the subscriptions of callID, for events
// another replica stored. It never blocks: a subscription whose buffer is
// full is dropped, like in Publish.
func (h *Hub) Resync(callID string) {
	h.mu.RLock()
	frame := *resyncFrame
	frame.CallID = callID
	dropped := deliver(h.subs[callID], &frame, nil)
	h.mu.RUnlock()

	if len(dropped) > 0 {
		h.removeDropped(dropped)
	}
}

// ResyncAll sends a resync frame to every subscription, after a gap in the
// notifications from other replicas.
func (h *Hub) ResyncAll() {
	var dropped []*Subscription
	h.mu.RLock()
	for _, subs := range h.subs {
		dropped = deliver(subs, resyncFrame, dropped)
	}
	h.mu.RUnlock()

	if len(dropped) > 0 {
		h.removeDropped(dropped)
	}
}

// Subscribers returns the number of open subscriptions.
func (h *Hub) Subscribers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.count
}

// Close closes every subscription with Err ErrClosed, except those already
// dropped, and makes later Subscribe calls fail with ErrClosed. Publish after
// Close delivers nothing. Close is idempotent.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()

	if h.closed {
		return
	}
	h.closed = true

	for _, subs := range h.subs {
		for _, s := range subs {
			s.state.CompareAndSwap(stateActive, stateHubClosed)
			s.removed = true
			close(s.ch)
		}
	}
	clear(h.subs)
	h.count = 0
	h.metrics.subscribers.Set(0)
}

// hasSubscribers reports whether any event of the batch has a recipient, so
// that Publish skips encoding when no subscription would receive it.
func (h *Hub) hasSubscribers(events []callcat.Event) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()

	if len(h.subs[""]) > 0 {
		return true
	}
	for i := range events {
		if len(h.subs[events[i].CallID]) > 0 {
			return true
		}
	}
	return false
}

// encodeFrames encodes a batch into one backing array, so a batch costs two
// allocations whatever its length. A subscriber that keeps one frame keeps the
// whole batch's bytes alive until it drops the frame.
func encodeFrames(events []callcat.Event) []Frame {
	size := 0
	for i := range events {
		size += encodedSizeMax(&events[i])
	}

	buf := make([]byte, 0, size)
	frames := make([]Frame, len(events))
	for i := range events {
		ev := &events[i]
		start := len(buf)
		buf = EncodeEvent(buf, ev)
		frames[i] = Frame{
			CallID: ev.CallID,
			Seq:    ev.Seq,
			Type:   ev.Type,
			// The capacity stops at the end, so an append to one frame's
			// bytes cannot overwrite the next frame.
			Bytes: buf[start:len(buf):len(buf)],
		}
	}
	return frames
}

// deliver sends f to every active subscription in subs without blocking and
// appends the ones it drops to dropped. The caller holds h.mu for reading.
func deliver(subs []*Subscription, f *Frame, dropped []*Subscription) []*Subscription {
	for _, s := range subs {
		if s.state.Load() != stateActive {
			continue
		}
		select {
		case s.ch <- f:
		default:
			// Concurrent publishers may both fail to send, so only the one
			// that wins the transition reports the drop.
			if s.state.CompareAndSwap(stateActive, stateDropped) {
				dropped = append(dropped, s)
			}
		}
	}
	return dropped
}

// removeDropped closes and removes the subscriptions that Publish dropped,
// then counts and logs the drops.
func (h *Hub) removeDropped(dropped []*Subscription) {
	h.mu.Lock()
	for _, s := range dropped {
		h.removeLocked(s)
	}
	h.mu.Unlock()

	h.metrics.dropped.Add(float64(len(dropped)))
	h.logDrops(dropped)
}

// removeLocked closes s's channel and removes s from h.subs, deleting the call's
// key when s was its last subscription. It does nothing if s is already
// removed. The caller holds h.mu for writing.
func (h *Hub) removeLocked(s *Subscription) {
	if s.removed {
		return
	}
	s.removed = true
	close(s.ch)

	// Swap the last subscription into s's place to remove s in O(1).
	subs := h.subs[s.callID]
	last := len(subs) - 1
	subs[s.index] = subs[last]
	subs[s.index].index = s.index
	subs[last] = nil
	subs = subs[:last]

	switch {
	case len(subs) == 0:
		delete(h.subs, s.callID)
	case cap(subs) > shrinkMinCap && len(subs) < cap(subs)/4:
		// Release the array that a crowd of past subscribers grew, because
		// the call's key may live for the rest of the call.
		h.subs[s.callID] = slices.Clone(subs)
	default:
		h.subs[s.callID] = subs
	}

	h.count--
	h.metrics.subscribers.Dec()
}

// logDrops logs at most one line per dropLogInterval. The line names the call
// of the drop that triggered it and counts every drop since the last line.
// NOTE: drops after the last line are not logged until the next drop, but the
// dropped subscribers counter includes them.
func (h *Hub) logDrops(dropped []*Subscription) {
	h.dropLog.mu.Lock()
	defer h.dropLog.mu.Unlock()

	now := h.now()
	for _, s := range dropped {
		h.dropLog.pending++
		if !h.dropLog.last.IsZero() && now.Sub(h.dropLog.last) < dropLogInterval {
			continue
		}

		scope := slog.String("call_id", s.callID)
		if s.callID == "" {
			scope = slog.Bool("all_calls", true)
		}
		h.logger.Info("stream subscriber dropped",
			scope,
			slog.Int("buffer_size", h.bufferSize),
			slog.Int("dropped_since_last_log", h.dropLog.pending))
		h.dropLog.last = now
		h.dropLog.pending = 0
	}
}

// Subscription is one subscriber's bounded queue of frames.
type Subscription struct {
	hub    *Hub
	callID string
	ch     chan *Frame
	state  atomic.Int32

	// Guarded by hub.mu.
	index   int  // position in hub.subs[callID]
	removed bool // ch is closed and the subscription is out of hub.subs
}

// C returns the channel of frames. It is closed when the subscription is
// dropped or closed, or when the hub closes. Frames buffered before that are
// still received first.
func (s *Subscription) C() <-chan *Frame {
	return s.ch
}

// Dropped reports whether the hub dropped the subscription because its buffer
// was full. The value is final once C is closed.
func (s *Subscription) Dropped() bool {
	return s.state.Load() == stateDropped
}

// Err returns why the subscription ended: ErrDropped, ErrUnsubscribed or
// ErrClosed. It returns nil while the subscription is active, and its value
// is final once C is closed.
func (s *Subscription) Err() error {
	switch s.state.Load() {
	case stateDropped:
		return ErrDropped
	case stateUnsubscribed:
		return ErrUnsubscribed
	case stateHubClosed:
		return ErrClosed
	default:
		return nil
	}
}

// Close ends the subscription and closes C. It is idempotent and safe to call
// concurrently with Publish and Hub.Close.
func (s *Subscription) Close() {
	s.state.CompareAndSwap(stateActive, stateUnsubscribed)

	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.removeLocked(s)
}
