package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
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
		sub, err := s.cfg.Hub.Subscribe(id)
		if err != nil {
			if errors.Is(err, stream.ErrTooManySubscribers) {
				s.limited.Log(r.Context(), slog.LevelWarn, "sse_limit", "stream rejected: subscriber limit reached", "call_id", id)
				w.Header().Set("Retry-After", "5")
				s.writeError(w, http.StatusServiceUnavailable, "too many open streams; retry later")
				return
			}
			s.writeError(w, http.StatusServiceUnavailable, "streaming is shutting down")
			return
		}
		defer sub.Close()

		s.metrics.streams.Inc()
		defer s.metrics.streams.Dec()

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
			return
		}

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
