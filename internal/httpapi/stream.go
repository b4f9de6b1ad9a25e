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

// replayBatch is the number of stored events read per store query while
// replaying.
const replayBatch = 500

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
		killed := s.cfg.StreamCloser.closed()
		sub, st, ok := s.startStream(w, r, id)
		if !ok {
			return
		}
		defer s.endStream(sub)

		last := after
		ended, err := s.replay(r.Context(), st, id, &last)
		if err != nil || ended {
			return
		}
		if call.Status.Terminal() && last >= call.LastSeq {
			// The client already has every event of an ended call.
			return
		}

		heartbeat := time.NewTicker(s.cfg.HeartbeatInterval)
		defer heartbeat.Stop()

		for {
			select {
			case <-r.Context().Done():
				return

			case <-killed:
				return

			case <-heartbeat.C:
				if err := st.write([]byte(": heartbeat\n\n")); err != nil {
					return
				}

			case frame, ok := <-sub.C():
				if !ok {
					if sub.Dropped() {
						s.limited.Log(r.Context(), slog.LevelWarn, "sse_drop", "slow stream client disconnected", "call_id", id, "last_event_id", last)
					}
					return
				}
				if frame.Seq <= last {
					continue
				}
				if frame.Seq > last+1 {
					// A gap: events reached the hub out of order or were
					// missed. The store has them all.
					ended, err := s.replay(r.Context(), st, id, &last)
					if err != nil || ended {
						return
					}
					continue
				}
				if err := st.write(frame.Bytes); err != nil {
					return
				}
				last = frame.Seq
				if frame.Type == callcat.EventEnded {
					return
				}
			}
		}
	})
}

// startStream subscribes to the events of callID ("" for every call), then
// writes the SSE response header and the client's retry hint. When it
// cannot subscribe, it writes a 503 response itself and returns false. The caller must
// pass the subscription to endStream.
func (s *server) startStream(w http.ResponseWriter, r *http.Request, callID string) (*stream.Subscription, *sseWriter, bool) {
	sub, err := s.cfg.Hub.Subscribe(callID)
	if err != nil {
		if errors.Is(err, stream.ErrTooManySubscribers) {
			scope := slog.String("call_id", callID)
			if callID == "" {
				scope = slog.Bool("all_calls", true)
			}
			s.limited.Log(r.Context(), slog.LevelWarn, "sse_limit", "stream rejected: subscriber limit reached", scope)
			w.Header().Set("Retry-After", "5")
			s.writeError(w, http.StatusServiceUnavailable, "too many open streams; retry later")
			return nil, nil, false
		}
		s.writeError(w, http.StatusServiceUnavailable, "streaming is shutting down")
		return nil, nil, false
	}
	s.metrics.streams.Inc()

	st := &sseWriter{
		w:       w,
		rc:      http.NewResponseController(w),
		timeout: s.cfg.StreamWriteTimeout,
		now:     s.cfg.Now,
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	if err := st.write([]byte("retry: " + strconv.FormatInt(DefaultRetryHint.Milliseconds(), 10) + "\n\n")); err != nil {
		s.endStream(sub)
		return nil, nil, false
	}
	return sub, st, true
}

// endStream releases what startStream took.
func (s *server) endStream(sub *stream.Subscription) {
	sub.Close()
	s.metrics.streams.Dec()
}

// replay writes stored events with seq > *last and advances *last. It reports
// whether the ended event was written.
func (s *server) replay(ctx context.Context, st *sseWriter, callID string, last *int64) (bool, error) {
	var buf []byte
	for {
		events, err := s.cfg.Store.Events(ctx, callID, *last, replayBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.limited.Log(ctx, slog.LevelError, "sse_replay", "stream replay failed", "call_id", callID, "err", err)
			}
			return false, err
		}

		for i := range events {
			buf = stream.EncodeEvent(buf[:0], &events[i])
			if err := st.write(buf); err != nil {
				return false, err
			}
			*last = events[i].Seq
			if events[i].Type == callcat.EventEnded {
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

// sseWriter writes and flushes SSE messages. The server's WriteTimeout would
// cut a long stream, so each write moves the connection's deadline forward
// instead.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	now     func() time.Time
}

func (st *sseWriter) write(p []byte) error {
	if err := st.rc.SetWriteDeadline(st.now().Add(st.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := st.w.Write(p); err != nil {
		return err
	}
	return st.rc.Flush()
}

// StreamCloser ends the SSE responses open at a given moment, as a restart
// would: clients reconnect and resume from their last event. Tests use it to
// cut streams from the server side. The zero value is ready to use, and a nil
// *StreamCloser never ends a stream.
type StreamCloser struct {
	mu sync.Mutex
	ch chan struct{} // closed by the next CloseAll; nil until a stream needs it
}

// CloseAll ends every SSE response open now. Streams opened later are not
// affected.
func (c *StreamCloser) CloseAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

// closed returns a channel that the next CloseAll closes. A stream takes it
// before it subscribes, so a CloseAll after that point ends the stream.
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
