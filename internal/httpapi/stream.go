package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/stream"
)

// Sizes of a replay: replayBatch is the number of stored events read per
// store query, and replayWriteBytes the size from which the encoded events
// are written out.
const (
	replayBatch      = 500
	replayWriteBytes = 16 << 10
)

// handleCallStream serves GET /v1/calls/{id}/stream as Server-Sent Events:
// stored events after Last-Event-ID (or ?after=), then live ones, a heartbeat
// comment every HeartbeatInterval, and the end of the response after the
// ended event. A client whose buffer in the hub fills is disconnected and
// resumes from its last id.
func (s *server) handleCallStream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")

		after, err := resumePoint(r)
		if err != nil {
			s.writeError(w, http.StatusBadRequest, err.Error())
			return
		}

		call, err := s.cfg.Store.Call(r.Context(), id)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}

		// Subscribe before replaying so no event falls between the two.
		st, ok := s.startStream(w, r, id)
		if !ok {
			return
		}
		cs := &callStream{st: st, id: id, last: after}
		st.run(func() bool { return cs.catchUp(&call) }, cs.live)
	})
}

// callStream is the state of one GET /v1/calls/{id}/stream response.
// catchUp and then live use it, never both at once.
type callStream struct {
	st   *sseStream
	id   string
	last int64 // seq of the last event written
}

// catchUp replays the stored events after cs.last. It returns false when the
// stream has nothing more to send: the replay failed or wrote the ended
// event, or the client already has every event of an ended call.
func (cs *callStream) catchUp(call *callcat.Call) bool {
	ended, err := cs.st.s.replay(cs.st, cs.id, &cs.last)
	if err != nil || ended {
		return false
	}
	return !call.Status.Terminal() || cs.last < call.LastSeq
}

// live writes the call's events from the hub and the heartbeats until the
// ended event, the client's departure or the end of the subscription.
func (cs *callStream) live() {
	st := cs.st
	heartbeat := time.NewTicker(st.s.cfg.HeartbeatInterval)
	defer heartbeat.Stop()

	for {
		select {
		case <-st.ctx.Done():
			return

		case <-st.killed:
			return

		case <-heartbeat.C:
			if err := st.write(heartbeatComment); err != nil {
				return
			}

		case frame, ok := <-st.sub.C():
			if !ok {
				cs.logEnd()
				return
			}
			if !cs.sendFrames(frame) {
				return
			}
		}
	}
}

// sendFrames writes frame and the frames queued behind it, at most
// maxBatchFrames, under one write deadline and with one flush. It returns
// false when the stream must end: a write failed, the ended event was
// written or the subscription ended.
func (cs *callStream) sendFrames(frame *stream.Frame) bool {
	st := cs.st
	if err := st.setDeadline(); err != nil {
		return false
	}

	more, closed := true, false
	for n := 1; frame != nil; n++ {
		ended, err := cs.addFrame(frame)
		if err != nil {
			return false
		}
		if ended {
			more = false
			break
		}
		if n == maxBatchFrames {
			break
		}
		frame, closed = st.queued()
		if closed {
			// The frames buffered before the end are still written.
			more = false
			break
		}
	}

	err := st.flush()
	if closed {
		cs.logEnd()
	}
	return err == nil && more
}

// addFrame adds one hub frame to the batch, or reads the events it shows
// missing from the store. It reports whether the ended event was written.
func (cs *callStream) addFrame(f *stream.Frame) (ended bool, err error) {
	if f.Seq <= cs.last {
		return false, nil
	}
	if f.Seq > cs.last+1 {
		// A gap: events reached the hub out of order or were missed. The
		// store has them all. The batch so far goes first.
		if err := cs.st.flush(); err != nil {
			return false, err
		}
		return cs.st.s.replay(cs.st, cs.id, &cs.last)
	}
	if err := cs.st.add(f.Bytes); err != nil {
		return false, err
	}
	cs.last = f.Seq
	return f.Type == callcat.EventEnded, nil
}

// logEnd logs why the subscription ended when the hub dropped a slow client.
func (cs *callStream) logEnd() {
	if cs.st.sub.Dropped() {
		cs.st.s.limited.Log(cs.st.ctx, slog.LevelWarn, "sse_drop", "slow stream client disconnected", "call_id", cs.id, "last_event_id", cs.last)
	}
}

// replay writes stored events with seq > *last and advances *last. It reports
// whether the ended event was written. Events are written in chunks of about
// replayWriteBytes, each under its own write deadline.
func (s *server) replay(st *sseStream, callID string, last *int64) (bool, error) {
	var buf []byte
	for {
		events, err := s.cfg.Store.Events(st.ctx, callID, *last, replayBatch)
		if err != nil {
			if st.ctx.Err() == nil {
				s.limited.Log(st.ctx, slog.LevelError, "sse_replay", "stream replay failed", "call_id", callID, "err", err)
			}
			return false, err
		}

		buf = buf[:0]
		for i := range events {
			buf = stream.EncodeEvent(buf, &events[i])
			ended := events[i].Type == callcat.EventEnded
			if ended || len(buf) >= replayWriteBytes || i == len(events)-1 {
				if err := st.write(buf); err != nil {
					return false, err
				}
				buf = buf[:0]
				*last = events[i].Seq
			}
			if ended {
				return true, nil
			}
		}
		if len(events) < replayBatch {
			return false, nil
		}
	}
}

// resumePoint returns the last seq the client has: the Last-Event-ID header,
// else the after query parameter, else 0.
func resumePoint(r *http.Request) (int64, error) {
	raw := r.Header.Get("Last-Event-ID")
	name := "Last-Event-ID"
	if raw == "" {
		raw = r.URL.Query().Get("after")
		name = "after"
	}
	if raw == "" {
		return 0, nil
	}

	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("invalid " + name + " " + strconv.Quote(raw) + ": use a non-negative event id")
	}
	return n, nil
}

// StreamCloser ends the SSE responses open at a given moment, as a restart
// would: clients reconnect and resume from their last event. Tests use it to
// cut streams from the server side, and the server's owner uses Shutdown to
// wait for the streams that took over their connection, which
// http.Server.Shutdown does not track. The zero value is ready to use.
type StreamCloser struct {
	mu sync.Mutex
	ch chan struct{} // closed by the next CloseAll; nil until a stream needs it

	hijacked map[*sseStream]struct{} // open streams that own their connection
	stopped  bool                    // Shutdown ran, so no stream starts
	drained  chan struct{}           // closed when hijacked is empty after Shutdown
}

// CloseAll ends every SSE response open now. Streams opened later are not
// affected.
func (c *StreamCloser) CloseAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeAllLocked()
}

func (c *StreamCloser) closeAllLocked() {
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

// Shutdown ends every SSE response open now, as CloseAll does, makes later
// stream requests fail with 503, and waits until every stream that took over
// its connection has closed it. When ctx ends first, Shutdown closes those
// connections, waits for their goroutines to return and returns ctx's
// error. It does not wait for streams on net/http's own path (HTTP/2), which
// http.Server.Shutdown tracks.
func (c *StreamCloser) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.stopped = true
	c.closeAllLocked()
	if c.drained == nil {
		c.drained = make(chan struct{})
		if len(c.hijacked) == 0 {
			close(c.drained)
		}
	}
	drained := c.drained
	c.mu.Unlock()

	select {
	case <-drained:
		return nil
	case <-ctx.Done():
	}

	c.mu.Lock()
	for st := range c.hijacked {
		st.abort()
	}
	c.mu.Unlock()
	<-drained
	return ctx.Err()
}

// closed returns a channel that the next CloseAll closes. A stream takes it
// before it subscribes, so a CloseAll after that point ends the stream. A nil
// *StreamCloser returns nil, which never ends a stream.
func (c *StreamCloser) closed() <-chan struct{} {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

// accepting reports whether new streams may start, that is whether Shutdown
// has not run.
func (c *StreamCloser) accepting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.stopped
}

// track adds a hijacked stream, unless Shutdown ran.
func (c *StreamCloser) track(st *sseStream) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return false
	}
	if c.hijacked == nil {
		c.hijacked = make(map[*sseStream]struct{})
	}
	c.hijacked[st] = struct{}{}
	return true
}

// untrack removes a hijacked stream whose goroutines have stopped.
func (c *StreamCloser) untrack(st *sseStream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.hijacked, st)
	if len(c.hijacked) == 0 && c.drained != nil {
		select {
		case <-c.drained:
		default:
			close(c.drained)
		}
	}
}
