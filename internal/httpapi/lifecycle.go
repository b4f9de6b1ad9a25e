package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/stream"
)

// Bounds of one lifecycle stream (GET /v1/stream).
const (
	// lifecycleThrottle is the shortest time between two call events of
	// one call. Utterance changes within it are merged into one event.
	lifecycleThrottle = 500 * time.Millisecond

	// maxSnapshotCalls bounds the live calls in the snapshot event.
	maxSnapshotCalls = 1000

	// maxThrottledCalls bounds the calls whose throttle state a stream
	// keeps. Calls beyond it get their call events unthrottled.
	maxThrottledCalls = 10000

	// throttleForget is how long the throttle state of a call without
	// changes is kept.
	throttleForget = 5 * time.Minute

	// maxAwaitingAnalysis bounds the ended calls a stream checks for their
	// post-call analysis. analysisCheckInterval is the period of the check,
	// and analysisWait is how long one call is checked.
	maxAwaitingAnalysis   = 256
	analysisCheckInterval = 2 * time.Second
	analysisWait          = 10 * time.Minute

	// maxKeptEventBuffer is the largest encoding buffer a stream keeps
	// between events, in bytes.
	maxKeptEventBuffer = 64 << 10
)

// Event names of the lifecycle stream.
const (
	lifecycleSnapshot = "snapshot" // {"calls": [call…], "truncated": bool}
	lifecycleCall     = "call"     // call: started, status or utterance count changed
	lifecycleEnded    = "ended"    // call: reached a terminal status
	lifecycleAnalysis = "analysis" // call: its call_analysis arrived
)

// lifecycleSnapshotData is the data of the snapshot event.
type lifecycleSnapshotData struct {
	Calls     []callView `json:"calls"`
	Truncated bool       `json:"truncated"`
}

// handleLifecycleStream serves GET /v1/stream, the lifecycle of every call as
// Server-Sent Events for dashboards. It first sends a snapshot event with the
// live calls. Then it sends a call event when a call starts or its status or
// utterance count changes, at most one per call per lifecycleThrottle. An
// ended event follows when a call ends, and an analysis event when the
// call's analysis is stored within analysisWait. Events carry no id, so a
// client that reconnects gets a new snapshot. Heartbeats, write deadlines,
// the subscriber limit and the dropping of slow clients are those of the
// per-call stream.
func (s *server) handleLifecycleStream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, ok := s.startStream(w, r, "")
		if !ok {
			return
		}

		ls := &lifecycleStream{
			s:        s,
			ctx:      st.ctx,
			st:       st,
			calls:    make(map[string]*throttleState),
			awaiting: make(map[string]time.Time),
		}
		st.run(func() bool { return ls.sendSnapshot() == nil }, ls.live)
	})
}

// live sends the lifecycle events and the heartbeats until the client's
// departure, the end of the subscription or a failed write.
func (ls *lifecycleStream) live() {
	st := ls.st
	ls.flush = time.NewTimer(time.Hour)
	ls.flush.Stop()
	defer ls.flush.Stop()

	heartbeat := time.NewTicker(ls.s.cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	housekeeping := time.NewTicker(analysisCheckInterval)
	defer housekeeping.Stop()

	for {
		var err error
		select {
		case <-st.ctx.Done():
			return

		case <-st.killed:
			return

		case <-heartbeat.C:
			err = st.write(heartbeatComment)

		case <-ls.flush.C:
			ls.armed = false
			err = ls.flushDue()

		case <-housekeeping.C:
			err = ls.checkAnalyses()
			ls.forgetIdle()

		case frame, ok := <-st.sub.C():
			if !ok {
				if st.sub.Dropped() {
					ls.s.limited.Log(st.ctx, slog.LevelWarn, "sse_drop_lifecycle", "slow lifecycle stream client disconnected")
				}
				return
			}
			err = ls.onFrame(frame)
		}
		if err != nil {
			return
		}
	}
}

// lifecycleStream is the state of one GET /v1/stream response. Only the
// handler's goroutine uses it.
type lifecycleStream struct {
	s   *server
	ctx context.Context
	st  *sseStream
	buf []byte

	calls    map[string]*throttleState // by call id
	awaiting map[string]time.Time      // call id → end of the analysis check

	flush   *time.Timer // fires when the next throttled call event is due
	armed   bool
	flushAt time.Time
}

// throttleState paces the call events of one call.
type throttleState struct {
	lastSent time.Time
	dirty    bool // a change arrived since lastSent
}

// onFrame turns one hub frame into lifecycle events.
func (ls *lifecycleStream) onFrame(f *stream.Frame) error {
	if f.Type == callcat.EventEnded {
		delete(ls.calls, f.CallID)
		call, ok, err := ls.sendCall(lifecycleEnded, f.CallID)
		if ok && len(call.Analysis) == 0 && len(ls.awaiting) < maxAwaitingAnalysis {
			ls.awaiting[f.CallID] = time.Now().Add(analysisWait)
		}
		return err
	}

	state := ls.calls[f.CallID]
	if state == nil {
		if len(ls.calls) >= maxThrottledCalls {
			_, _, err := ls.sendCall(lifecycleCall, f.CallID)
			return err
		}
		state = &throttleState{}
		ls.calls[f.CallID] = state
	}

	now := time.Now()
	due := state.lastSent.Add(lifecycleThrottle)
	if now.Before(due) {
		state.dirty = true
		ls.arm(due)
		return nil
	}
	state.lastSent, state.dirty = now, false
	_, _, err := ls.sendCall(lifecycleCall, f.CallID)
	return err
}

// arm makes the flush timer fire at t unless it fires earlier already.
func (ls *lifecycleStream) arm(t time.Time) {
	if ls.armed && !t.Before(ls.flushAt) {
		return
	}
	ls.armed, ls.flushAt = true, t
	ls.flush.Reset(time.Until(t))
}

// flushDue sends the call events whose throttle interval has passed and arms
// the timer for the next one.
func (ls *lifecycleStream) flushDue() error {
	now := time.Now()
	var next time.Time
	for id, state := range ls.calls {
		if !state.dirty {
			continue
		}
		due := state.lastSent.Add(lifecycleThrottle)
		if now.Before(due) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		state.lastSent, state.dirty = now, false
		if _, _, err := ls.sendCall(lifecycleCall, id); err != nil {
			return err
		}
	}
	if !next.IsZero() {
		ls.arm(next)
	}
	return nil
}

// checkAnalyses sends an analysis event for each awaited call whose analysis
// is now stored, and stops waiting for calls past their time.
func (ls *lifecycleStream) checkAnalyses() error {
	now := time.Now()
	for id, until := range ls.awaiting {
		call, err := ls.s.cfg.Store.Call(ls.ctx, id)
		switch {
		case err != nil:
			delete(ls.awaiting, id)
			ls.logReadError(id, err)
		case len(call.Analysis) > 0:
			delete(ls.awaiting, id)
			if err := ls.writeEvent(lifecycleAnalysis, newSummaryView(&call)); err != nil {
				return err
			}
		case now.After(until):
			delete(ls.awaiting, id)
		}
	}
	return ls.ctx.Err()
}

// forgetIdle drops the throttle state of calls that sent nothing for
// throttleForget, such as calls that ended while the hub missed the event.
func (ls *lifecycleStream) forgetIdle() {
	now := time.Now()
	for id, state := range ls.calls {
		if !state.dirty && now.Sub(state.lastSent) > throttleForget {
			delete(ls.calls, id)
		}
	}
}

// sendSnapshot sends the live calls, oldest first.
func (ls *lifecycleStream) sendSnapshot() error {
	live, err := ls.s.cfg.Store.LiveCalls(ls.ctx, maxSnapshotCalls+1)
	if err != nil {
		ls.logReadError("", err)
		return err
	}
	data := lifecycleSnapshotData{Calls: make([]callView, 0, min(len(live), maxSnapshotCalls))}
	if len(live) > maxSnapshotCalls {
		live, data.Truncated = live[:maxSnapshotCalls], true
	}
	for i := range live {
		data.Calls = append(data.Calls, newSummaryView(&live[i]))
	}
	return ls.writeEvent(lifecycleSnapshot, data)
}

// sendCall reads the call and sends it as event. It returns false when the
// call could not be read; only a failed write is an error.
func (ls *lifecycleStream) sendCall(event, id string) (callcat.Call, bool, error) {
	call, err := ls.s.cfg.Store.Call(ls.ctx, id)
	if err != nil {
		ls.logReadError(id, err)
		return call, false, ls.ctx.Err()
	}
	return call, true, ls.writeEvent(event, newSummaryView(&call))
}

func (ls *lifecycleStream) logReadError(id string, err error) {
	if ls.ctx.Err() != nil || errors.Is(err, callcat.ErrNotFound) {
		return
	}
	ls.s.limited.Log(ls.ctx, slog.LevelError, "sse_lifecycle_read", "lifecycle stream: store read failed", "call_id", id, "err", err)
}

// writeEvent writes one SSE message without an id.
func (ls *lifecycleStream) writeEvent(event string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b := ls.buf[:0]
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	b = append(b, "\n\n"...)
	err = ls.st.write(b)

	// Keep the buffer for the next event unless a large snapshot grew it.
	if cap(b) <= maxKeptEventBuffer {
		ls.buf = b
	} else {
		ls.buf = nil
	}
	return err
}
