package stream_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/stream"
)

func TestPublishCallSubscribers(t *testing.T) {
	h := newHub(t, stream.Config{})
	subs := []*stream.Subscription{
		subscribe(t, h, "call-a"),
		subscribe(t, h, "call-a"),
		subscribe(t, h, "call-a"),
	}
	all := subscribe(t, h, "")
	other := subscribe(t, h, "call-b")
	events := []callcat.Event{event("call-a", 1), event("call-a", 2), event("call-a", 3)}

	h.Publish(events)

	for i, s := range append(subs, all) {
		for _, ev := range events {
			f := receive(t, s)
			want := string(stream.EncodeEvent(nil, &ev))
			if string(f.Bytes) != want {
				t.Fatalf("subscriber %d: Bytes=%q, want %q", i, f.Bytes, want)
			}
			if f.Seq != ev.Seq {
				t.Fatalf("subscriber %d: Seq=%d, want %d", i, f.Seq, ev.Seq)
			}
			if f.CallID != ev.CallID {
				t.Fatalf("subscriber %d: CallID=%q, want %q", i, f.CallID, ev.CallID)
			}
			if f.Type != ev.Type {
				t.Fatalf("subscriber %d: Type=%q, want %q", i, f.Type, ev.Type)
			}
		}
		expectEmpty(t, s)
	}
	expectEmpty(t, other)
}

func TestPublishSharesFrame(t *testing.T) {
	h := newHub(t, stream.Config{})
	first := subscribe(t, h, "call-a")
	second := subscribe(t, h, "call-a")
	all := subscribe(t, h, "")

	h.Publish([]callcat.Event{event("call-a", 1)})

	f1, f2, f3 := receive(t, first), receive(t, second), receive(t, all)
	if f1 != f2 {
		t.Fatalf("second subscriber frame=%p, want the first's %p", f2, f1)
	}
	if f1 != f3 {
		t.Fatalf("all-calls subscriber frame=%p, want the first's %p", f3, f1)
	}
}

func TestPublishMixedCalls(t *testing.T) {
	h := newHub(t, stream.Config{})
	a := subscribe(t, h, "call-a")
	b := subscribe(t, h, "call-b")
	c := subscribe(t, h, "call-c")
	all := subscribe(t, h, "")

	h.Publish([]callcat.Event{event("call-a", 1), event("call-b", 1), event("call-a", 2), event("call-b", 2)})

	tests := []struct {
		name string
		sub  *stream.Subscription
		want []string
	}{
		{"CallA", a, []string{"call-a/1", "call-a/2"}},
		{"CallB", b, []string{"call-b/1", "call-b/2"}},
		{"CallC", c, nil},
		{"AllCalls", all, []string{"call-a/1", "call-b/1", "call-a/2", "call-b/2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := drainBuffered(tt.sub)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("frames (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPublishNoSubscribers(t *testing.T) {
	h := newHub(t, stream.Config{})
	s := subscribe(t, h, "call-a")

	h.Publish([]callcat.Event{event("call-b", 1)})
	h.Publish(nil)

	expectEmpty(t, s)
	if n := stream.CallKeys(h); n != 1 {
		t.Fatalf("CallKeys=%d, want 1", n)
	}
}

func TestPublishSlowSubscriberDropped(t *testing.T) {
	const bufferSize = 4
	h := newHub(t, stream.Config{BufferSize: bufferSize})
	slow := subscribe(t, h, "call-a")
	fast := subscribe(t, h, "call-a")

	for seq := int64(1); seq <= bufferSize; seq++ {
		h.Publish([]callcat.Event{event("call-a", seq)})
		if f := receive(t, fast); f.Seq != seq {
			t.Fatalf("fast Seq=%d, want %d", f.Seq, seq)
		}
	}
	if slow.Dropped() {
		t.Fatalf("slow Dropped=true after %d frames, want false", bufferSize)
	}
	if n := h.Subscribers(); n != 2 {
		t.Fatalf("Subscribers=%d after %d frames, want 2", n, bufferSize)
	}

	h.Publish([]callcat.Event{event("call-a", bufferSize+1)})

	if f := receive(t, fast); f.Seq != bufferSize+1 {
		t.Fatalf("fast Seq=%d, want %d", f.Seq, bufferSize+1)
	}
	if !slow.Dropped() {
		t.Fatalf("slow Dropped=false after %d frames, want true", bufferSize+1)
	}
	if err := slow.Err(); !errors.Is(err, stream.ErrDropped) {
		t.Fatalf("slow Err=%v, want %v", err, stream.ErrDropped)
	}
	if n := h.Subscribers(); n != 1 {
		t.Fatalf("Subscribers=%d after drop, want 1", n)
	}
	if fast.Dropped() {
		t.Fatalf("fast Dropped=true, want false")
	}

	// The slow subscriber still reads what was buffered, then finds the
	// channel closed.
	for seq := int64(1); seq <= bufferSize; seq++ {
		if f := receive(t, slow); f.Seq != seq {
			t.Fatalf("slow Seq=%d, want %d", f.Seq, seq)
		}
	}
	expectClosed(t, slow)

	h.Publish([]callcat.Event{event("call-a", bufferSize+2)})
	if f := receive(t, fast); f.Seq != bufferSize+2 {
		t.Fatalf("fast Seq=%d, want %d", f.Seq, bufferSize+2)
	}
}

func TestPublishDropsWithinBatch(t *testing.T) {
	h := newHub(t, stream.Config{BufferSize: 2})
	slow := subscribe(t, h, "call-a")
	all := subscribe(t, h, "")

	h.Publish([]callcat.Event{event("call-a", 1), event("call-a", 2), event("call-a", 3), event("call-a", 4)})

	if !slow.Dropped() {
		t.Fatalf("call subscriber Dropped=false, want true")
	}
	if !all.Dropped() {
		t.Fatalf("all-calls subscriber Dropped=false, want true")
	}
	if got, want := drainBuffered(slow), []string{"call-a/1", "call-a/2"}; !cmp.Equal(got, want) {
		t.Fatalf("call subscriber frames=%v, want %v", got, want)
	}
	expectClosed(t, slow)
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers=%d, want 0", n)
	}
	if n := stream.CallKeys(h); n != 0 {
		t.Fatalf("CallKeys=%d, want 0", n)
	}
}

func TestSubscribeMaxSubscribers(t *testing.T) {
	h := newHub(t, stream.Config{MaxSubscribers: 2})
	first := subscribe(t, h, "call-a")
	subscribe(t, h, "")

	_, err := h.Subscribe("call-b")
	if !errors.Is(err, stream.ErrTooManySubscribers) {
		t.Fatalf("Subscribe over limit err=%v, want %v", err, stream.ErrTooManySubscribers)
	}

	first.Close()

	if _, err := h.Subscribe("call-b"); err != nil {
		t.Fatalf("Subscribe after Close err=%v, want nil", err)
	}
}

func TestSubscribeMaxSubscribersFreedByDrop(t *testing.T) {
	h := newHub(t, stream.Config{MaxSubscribers: 1, BufferSize: 1})
	subscribe(t, h, "call-a")

	h.Publish([]callcat.Event{event("call-a", 1), event("call-a", 2)})

	if _, err := h.Subscribe("call-a"); err != nil {
		t.Fatalf("Subscribe after drop err=%v, want nil", err)
	}
}

func TestSubscriptionClose(t *testing.T) {
	h := newHub(t, stream.Config{})
	s := subscribe(t, h, "call-a")

	s.Close()
	s.Close()

	expectClosed(t, s)
	if s.Dropped() {
		t.Fatalf("Dropped=true, want false")
	}
	if err := s.Err(); !errors.Is(err, stream.ErrUnsubscribed) {
		t.Fatalf("Err=%v, want %v", err, stream.ErrUnsubscribed)
	}
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers=%d, want 0", n)
	}
	if n := stream.CallKeys(h); n != 0 {
		t.Fatalf("CallKeys=%d, want 0", n)
	}
	h.Publish([]callcat.Event{event("call-a", 1)})
}

func TestSubscriptionCloseManyOnOneCall(t *testing.T) {
	const total, kept = 300, 7
	h := newHub(t, stream.Config{})
	subs := make([]*stream.Subscription, total)
	for i := range subs {
		subs[i] = subscribe(t, h, "call-a")
	}

	// Close all but every 43rd, in an order that moves subscriptions around
	// inside the hub: from both ends towards the middle.
	isKept := func(i int) bool { return i%43 == 0 }
	for lo, hi := 0, total-1; lo <= hi; lo, hi = lo+1, hi-1 {
		if !isKept(lo) {
			subs[lo].Close()
		}
		if hi != lo && !isKept(hi) {
			subs[hi].Close()
		}
	}
	if n := h.Subscribers(); n != kept {
		t.Fatalf("Subscribers=%d, want %d", n, kept)
	}

	h.Publish([]callcat.Event{event("call-a", 1)})

	for i, s := range subs {
		if !isKept(i) {
			expectClosed(t, s)
			continue
		}
		if f := receive(t, s); f.Seq != 1 {
			t.Fatalf("subscriber %d: Seq=%d, want 1", i, f.Seq)
		}
		s.Close()
	}
	if n := stream.CallKeys(h); n != 0 {
		t.Fatalf("CallKeys=%d, want 0", n)
	}
}

func TestHubClose(t *testing.T) {
	h := newHub(t, stream.Config{})
	subs := []*stream.Subscription{
		subscribe(t, h, "call-a"),
		subscribe(t, h, "call-a"),
		subscribe(t, h, "call-b"),
		subscribe(t, h, ""),
	}
	h.Publish([]callcat.Event{event("call-a", 1)})

	h.Close()
	h.Close()

	for i, s := range subs {
		drainBuffered(s)
		expectClosed(t, s)
		if s.Dropped() {
			t.Fatalf("subscriber %d: Dropped=true, want false", i)
		}
		if err := s.Err(); !errors.Is(err, stream.ErrClosed) {
			t.Fatalf("subscriber %d: Err=%v, want %v", i, err, stream.ErrClosed)
		}
		s.Close()
	}
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers=%d, want 0", n)
	}
	if n := stream.CallKeys(h); n != 0 {
		t.Fatalf("CallKeys=%d, want 0", n)
	}
	if _, err := h.Subscribe("call-a"); !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("Subscribe after Close err=%v, want %v", err, stream.ErrClosed)
	}
	h.Publish([]callcat.Event{event("call-a", 2)})
}

func TestHubCloseKeepsBufferedFrames(t *testing.T) {
	h := newHub(t, stream.Config{})
	s := subscribe(t, h, "call-a")
	h.Publish([]callcat.Event{event("call-a", 1), event("call-a", 2)})

	h.Close()

	if got, want := drainBuffered(s), []string{"call-a/1", "call-a/2"}; !cmp.Equal(got, want) {
		t.Fatalf("frames=%v, want %v", got, want)
	}
	expectClosed(t, s)
}

func TestNewHubInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  stream.Config
	}{
		{"NegativeBufferSize", stream.Config{BufferSize: -1}},
		{"NegativeMaxSubscribers", stream.Config{MaxSubscribers: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := stream.NewHub(tt.cfg)
			if err == nil {
				h.Close()
				t.Fatalf("NewHub err=nil, want an error")
			}
		})
	}
}

func TestNewHubDuplicateRegistration(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	newHub(t, stream.Config{Registerer: reg})

	h, err := stream.NewHub(stream.Config{Registerer: reg})

	if err == nil {
		h.Close()
		t.Fatalf("second NewHub err=nil, want an error")
	}
	are := prometheus.AlreadyRegisteredError{}
	if !errors.As(err, &are) {
		t.Fatalf("second NewHub err=%v, want prometheus.AlreadyRegisteredError", err)
	}
}

func TestHubMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h := newHub(t, stream.Config{Registerer: reg, BufferSize: 1})
	fast := subscribe(t, h, "call-a")
	subscribe(t, h, "call-a") // never reads
	all := subscribe(t, h, "")
	expectMetrics(t, reg, 3, 0, 0)

	h.Publish([]callcat.Event{event("call-a", 1)})
	receive(t, fast)
	receive(t, all)
	h.Publish([]callcat.Event{event("call-a", 2)})
	expectMetrics(t, reg, 2, 1, 2)

	fast.Close()
	all.Close()
	h.Publish([]callcat.Event{event("call-x", 1), event("call-x", 2)})
	expectMetrics(t, reg, 0, 1, 4)

	subscribe(t, h, "call-b")
	subscribe(t, h, "")
	expectMetrics(t, reg, 2, 1, 4)

	h.Close()
	expectMetrics(t, reg, 0, 1, 4)
}

func TestDropLogRateLimited(t *testing.T) {
	var logs bytes.Buffer
	h := newHub(t, stream.Config{
		BufferSize: 1,
		Logger:     slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	now := start
	stream.SetNow(h, func() time.Time { return now })
	dropAll := func(callID string, n int) {
		for range n {
			subscribe(t, h, callID)
		}
		h.Publish([]callcat.Event{event("call-a", 1), event("call-a", 2)})
	}

	dropAll("call-a", 3) // one line for the first drop, then two held back
	now = start.Add(500 * time.Millisecond)
	dropAll("call-a", 1) // held back
	now = start.Add(1500 * time.Millisecond)
	dropAll("", 1) // one line counting the four drops since the first

	lines := decodeLogLines(t, &logs)
	want := []map[string]any{
		{"level": "INFO", "msg": "stream subscriber dropped", "call_id": "call-a", "buffer_size": 1.0, "dropped_since_last_log": 1.0},
		{"level": "INFO", "msg": "stream subscriber dropped", "all_calls": true, "buffer_size": 1.0, "dropped_since_last_log": 4.0},
	}
	for _, line := range lines {
		delete(line, "time")
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Fatalf("log lines (-want +got):\n%s", diff)
	}
}

func TestHubConcurrentUse(t *testing.T) {
	h := newHub(t, stream.Config{BufferSize: 4, MaxSubscribers: 40})
	calls := []string{"call-a", "call-b", "call-c"}
	stop := make(chan struct{})

	// Subscriptions that never read and exist before the first Publish, so
	// every one of them overflows and is dropped.
	var idle []*stream.Subscription
	for _, callID := range append(calls, "", "", "") {
		idle = append(idle, subscribe(t, h, callID))
	}

	var publishers sync.WaitGroup
	for _, callID := range calls {
		publishers.Go(func() { publishSeqs(h, callID, 1, 400) })
	}
	var subscribers sync.WaitGroup
	for i := range 48 {
		subscribers.Go(func() { churnSubscriptions(t, h, churnCallID(calls, i), stop) })
	}

	publishers.Wait()
	close(stop)
	subscribers.Wait()

	for i, s := range idle {
		if err := s.Err(); !errors.Is(err, stream.ErrDropped) {
			t.Fatalf("idle subscriber %d: Err=%v, want %v", i, err, stream.ErrDropped)
		}
	}
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers=%d, want 0", n)
	}
	if n := stream.CallKeys(h); n != 0 {
		t.Fatalf("CallKeys=%d, want 0", n)
	}
}

func TestHubCloseConcurrentUse(t *testing.T) {
	h := newHub(t, stream.Config{BufferSize: 4, MaxSubscribers: 40})
	calls := []string{"call-a", "call-b", "call-c"}
	halfway := make(chan struct{})
	stop := make(chan struct{})

	var idle []*stream.Subscription
	for _, callID := range append(calls, "", "", "") {
		idle = append(idle, subscribe(t, h, callID))
	}

	var workers sync.WaitGroup
	for i, callID := range calls {
		workers.Go(func() {
			publishSeqs(h, callID, 1, 200)
			if i == 0 {
				close(halfway)
			}
			publishSeqs(h, callID, 201, 400)
		})
	}
	for i := range 48 {
		workers.Go(func() { churnSubscriptions(t, h, churnCallID(calls, i), stop) })
	}
	workers.Go(func() {
		<-halfway
		h.Close()
		close(stop)
	})
	workers.Wait()

	// Whether an idle subscription of call-b or call-c overflowed before the
	// hub closed depends on scheduling, so both reasons are accepted.
	for i, s := range idle {
		if err := s.Err(); !errors.Is(err, stream.ErrDropped) && !errors.Is(err, stream.ErrClosed) {
			t.Fatalf("idle subscriber %d: Err=%v, want %v or %v", i, err, stream.ErrDropped, stream.ErrClosed)
		}
	}
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers=%d, want 0", n)
	}
	if n := stream.CallKeys(h); n != 0 {
		t.Fatalf("CallKeys=%d, want 0", n)
	}
	if _, err := h.Subscribe("call-a"); !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("Subscribe after Close err=%v, want %v", err, stream.ErrClosed)
	}
}

// BenchmarkPublishOneCall10000Subscribers measures delivering one event to
// 10,000 subscribers of one call, each drained by its own goroutine. Each
// iteration waits until every subscriber has received the frame, so ns/op is
// the end-to-end fan-out time and no subscriber falls behind and is dropped.
// publish-ns/op is the part spent inside Publish.
func BenchmarkPublishOneCall10000Subscribers(b *testing.B) {
	const subscribers = 10000
	h, err := stream.NewHub(stream.Config{MaxSubscribers: subscribers})
	if err != nil {
		b.Fatalf("NewHub: %v", err)
	}

	var received, drainers sync.WaitGroup
	for range subscribers {
		s, err := h.Subscribe("call-a")
		if err != nil {
			b.Fatalf("Subscribe: %v", err)
		}
		drainers.Go(func() {
			for range s.C() {
				received.Done()
			}
		})
	}
	events := []callcat.Event{event("call-a", 0)}
	var inPublish time.Duration
	b.ReportAllocs()

	for b.Loop() {
		events[0].Seq++
		received.Add(subscribers)
		start := time.Now()
		h.Publish(events)
		inPublish += time.Since(start)
		received.Wait()
	}

	b.ReportMetric(float64(inPublish.Nanoseconds())/float64(b.N), "publish-ns/op")
	if n := h.Subscribers(); n != subscribers {
		b.Fatalf("Subscribers=%d after the run, want %d: some were dropped", n, subscribers)
	}
	h.Close()
	drainers.Wait()
}

// publishSeqs publishes seqs first to last of callID in batches of one to
// three events.
func publishSeqs(h *stream.Hub, callID string, first, last int64) {
	seq := first
	for batch := 1; seq <= last; batch = batch%3 + 1 {
		var events []callcat.Event
		for ; len(events) < batch && seq <= last; seq++ {
			events = append(events, event(callID, seq))
		}
		h.Publish(events)
	}
}

// churnSubscriptions subscribes to callID, reads up to ten frames, closes the
// subscription and starts over, until stop is closed or the hub is closed.
// Frames of one call that arrive out of seq order fail the test.
func churnSubscriptions(t *testing.T, h *stream.Hub, callID string, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}

		s, err := h.Subscribe(callID)
		switch {
		case errors.Is(err, stream.ErrClosed):
			return
		case errors.Is(err, stream.ErrTooManySubscribers):
			runtime.Gosched()
			continue
		case err != nil:
			t.Errorf("Subscribe(%q) err=%v", callID, err)
			return
		}

		readInOrder(t, s, 10, stop)

		// A second, concurrent Close checks that Close is idempotent under race.
		var closers sync.WaitGroup
		closers.Go(s.Close)
		s.Close()
		closers.Wait()
		if s.Err() == nil {
			t.Errorf("Err=nil after Close, want an error")
		}
	}
}

// churnCallID spreads churning subscribers over the calls, with every fourth
// one subscribed to all calls.
func churnCallID(calls []string, i int) string {
	if i%4 == 0 {
		return ""
	}
	return calls[i%len(calls)]
}

func readInOrder(t *testing.T, s *stream.Subscription, max int, stop <-chan struct{}) {
	last := map[string]int64{}
	for range max {
		select {
		case f, ok := <-s.C():
			if !ok {
				if s.Err() == nil {
					t.Errorf("Err=nil on a closed channel, want an error")
				}
				return
			}
			if f.Seq <= last[f.CallID] {
				t.Errorf("call %s: Seq=%d after %d, want increasing", f.CallID, f.Seq, last[f.CallID])
			}
			last[f.CallID] = f.Seq
		case <-stop:
			return
		}
	}
}

func newHub(tb testing.TB, cfg stream.Config) *stream.Hub {
	tb.Helper()
	h, err := stream.NewHub(cfg)
	if err != nil {
		tb.Fatalf("NewHub: %v", err)
	}
	tb.Cleanup(h.Close)
	return h
}

func subscribe(tb testing.TB, h *stream.Hub, callID string) *stream.Subscription {
	tb.Helper()
	s, err := h.Subscribe(callID)
	if err != nil {
		tb.Fatalf("Subscribe(%q): %v", callID, err)
	}
	return s
}

func event(callID string, seq int64) callcat.Event {
	return callcat.Event{
		CallID: callID,
		Seq:    seq,
		Type:   callcat.EventUtterance,
		Data:   json.RawMessage(fmt.Sprintf(`{"index":%d,"role":"agent","content":"utterance %d"}`, seq-1, seq)),
	}
}

// receive returns the next buffered frame. Publish sends before it returns,
// so a frame that is not buffered yet never arrives.
func receive(tb testing.TB, s *stream.Subscription) *stream.Frame {
	tb.Helper()
	select {
	case f, ok := <-s.C():
		if !ok {
			tb.Fatalf("channel closed (Err=%v), want a frame", s.Err())
		}
		return f
	default:
		tb.Fatalf("no frame buffered, want one")
		return nil
	}
}

// drainBuffered returns the buffered frames as "call/seq" without waiting.
func drainBuffered(s *stream.Subscription) []string {
	var got []string
	for {
		select {
		case f, ok := <-s.C():
			if !ok {
				return got
			}
			got = append(got, fmt.Sprintf("%s/%d", f.CallID, f.Seq))
		default:
			return got
		}
	}
}

func expectEmpty(tb testing.TB, s *stream.Subscription) {
	tb.Helper()
	select {
	case f, ok := <-s.C():
		if !ok {
			tb.Fatalf("channel closed (Err=%v), want open and empty", s.Err())
		}
		tb.Fatalf("frame %s/%d buffered, want none", f.CallID, f.Seq)
	default:
	}
}

func expectClosed(tb testing.TB, s *stream.Subscription) {
	tb.Helper()
	select {
	case f, ok := <-s.C():
		if ok {
			tb.Fatalf("frame %s/%d buffered, want a closed channel", f.CallID, f.Seq)
		}
	default:
		tb.Fatalf("channel open, want closed")
	}
}

func expectMetrics(tb testing.TB, reg prometheus.Gatherer, subscribers, dropped, published int) {
	tb.Helper()
	want := map[string]string{
		"callcat_sse_subscribers":               fmt.Sprintf("GAUGE %d", subscribers),
		"callcat_sse_dropped_subscribers_total": fmt.Sprintf("COUNTER %d", dropped),
		"callcat_events_published_total":        fmt.Sprintf("COUNTER %d", published),
	}
	if diff := cmp.Diff(want, gatherValues(tb, reg)); diff != "" {
		tb.Fatalf("metrics (-want +got):\n%s", diff)
	}
}

// gatherValues returns "<TYPE> <value>" by metric name. A metric with labels
// or more than one series is reported as such, because the hub's metrics
// must have neither.
func gatherValues(tb testing.TB, reg prometheus.Gatherer) map[string]string {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}

	got := make(map[string]string)
	for _, fam := range families {
		series := fam.GetMetric()
		if len(series) != 1 {
			got[fam.GetName()] = fmt.Sprintf("%d series", len(series))
			continue
		}
		m := series[0]
		if len(m.GetLabel()) != 0 {
			got[fam.GetName()] = fmt.Sprintf("labels %v", m.GetLabel())
			continue
		}
		value := m.GetGauge().GetValue() + m.GetCounter().GetValue()
		got[fam.GetName()] = fmt.Sprintf("%s %g", fam.GetType(), value)
	}
	return got
}

func decodeLogLines(tb testing.TB, logs *bytes.Buffer) []map[string]any {
	tb.Helper()
	var lines []map[string]any
	dec := json.NewDecoder(logs)
	for dec.More() {
		var line map[string]any
		if err := dec.Decode(&line); err != nil {
			tb.Fatalf("decode log line: %v", err)
		}
		lines = append(lines, line)
	}
	return lines
}

func TestHubResync(t *testing.T) {
	hub, err := stream.NewHub(stream.Config{BufferSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()

	a, _ := hub.Subscribe("call_a")
	b, _ := hub.Subscribe("call_b")
	defer a.Close()
	defer b.Close()

	if !hub.HasSubscribers("call_a") {
		t.Fatalf("HasSubscribers(call_a)=false, want true")
	}
	if hub.HasSubscribers("call_c") {
		t.Fatalf("HasSubscribers(call_c)=true, want false")
	}

	hub.Resync("call_a")
	f := <-a.C()
	if f.Seq != stream.ResyncSeq || f.CallID != "call_a" || len(f.Bytes) != 0 {
		t.Fatalf("resync frame=%+v, want seq ResyncSeq, call_a, no bytes", f)
	}
	select {
	case f := <-b.C():
		t.Fatalf("call_b got %+v, want nothing", f)
	default:
	}

	hub.ResyncAll()
	if f := <-b.C(); f.Seq != stream.ResyncSeq {
		t.Fatalf("ResyncAll frame seq=%d, want ResyncSeq", f.Seq)
	}

	// A full buffer drops the subscriber instead of blocking.
	hub.ResyncAll()
	hub.ResyncAll()
	hub.ResyncAll()
	if !a.Dropped() {
		t.Fatalf("subscriber with a full buffer not dropped")
	}
}
