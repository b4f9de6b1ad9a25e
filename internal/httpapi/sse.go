package httpapi

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/callcat/callcat/internal/stream"
)

// maxBatchFrames bounds the hub frames that one batch writes, so that a
// stream whose buffer keeps refilling still gets to its heartbeat and to the
// end signals between batches.
const maxBatchFrames = 16

var heartbeatComment = []byte(": heartbeat\n\n")

// sseStream is one open SSE response, from the response header to its end.
//
// For an HTTP/1.x GET the handler takes over the connection (hijacks it). It
// writes the response head itself and then writes frames straight to the
// connection without chunked encoding, so the body ends when the connection
// closes. net/http then keeps neither its connection buffers nor the request
// for the stream. After the replay or the snapshot, the live part runs on a
// new goroutine (see run) with a small stack, and the goroutine that served the
// request exits. A second goroutine (watchClose) reads the connection to
// notice a client that goes away. Requests that cannot be hijacked, such as
// HTTP/2 ones, stay on net/http's ResponseWriter.
type sseStream struct {
	s      *server
	sub    *stream.Subscription
	killed <-chan struct{} // closed by StreamCloser

	// ctx ends when the client goes away. A hijacked stream's ctx also ends
	// when StreamCloser.Shutdown gives up waiting for it.
	ctx context.Context

	// A hijacked stream has conn, cancel and pending; the others have w and
	// rc.
	conn    net.Conn
	cancel  context.CancelFunc
	pending net.Buffers // frames added since the last flush
	w       http.ResponseWriter
	rc      *http.ResponseController

	// refs counts the goroutines that still use conn: the stream's own and
	// watchClose. The last one to stop removes the stream from StreamCloser.
	refs atomic.Int32

	timeout time.Duration
	now     func() time.Time
}

// startStream subscribes to the events of callID ("" for every call), then
// writes the SSE response header and the client's retry hint. When it
// cannot subscribe, it writes a 503 response itself and returns false. The
// caller must end the stream with finish, directly or through run.
func (s *server) startStream(w http.ResponseWriter, r *http.Request, callID string) (*sseStream, bool) {
	if !s.streams.accepting() {
		s.writeError(w, http.StatusServiceUnavailable, "streaming is shutting down")
		return nil, false
	}
	// Taken before subscribing, so that a CloseAll after the subscription
	// ends this stream.
	killed := s.streams.closed()
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
			return nil, false
		}
		s.writeError(w, http.StatusServiceUnavailable, "streaming is shutting down")
		return nil, false
	}
	s.metrics.streams.Inc()

	st := &sseStream{
		s:       s,
		sub:     sub,
		killed:  killed,
		timeout: s.cfg.StreamWriteTimeout,
		now:     s.cfg.Now,
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	retry := "retry: " + strconv.FormatInt(DefaultRetryHint.Milliseconds(), 10) + "\n\n"

	if r.ProtoMajor == 1 && r.Method == http.MethodGet {
		conn, _, err := http.NewResponseController(w).Hijack()
		switch {
		case err == nil:
			if !st.startHijacked(r, conn, responseHead(h, st.now(), retry)) {
				return nil, false
			}
			return st, true
		case !errors.Is(err, http.ErrNotSupported):
			s.limited.Log(r.Context(), slog.LevelWarn, "sse_hijack", "stream failed: taking over the connection failed", "err", err)
			s.endStream(sub)
			return nil, false
		}
		// This ResponseWriter cannot be hijacked: stay on net/http's path.
	}

	st.ctx = r.Context()
	st.w = w
	st.rc = http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := st.write([]byte(retry)); err != nil {
		s.endStream(sub)
		return nil, false
	}
	return st, true
}

// startHijacked registers a hijacked stream with StreamCloser, starts
// watchClose and writes head. It ends the stream and returns false when a
// step fails.
func (st *sseStream) startHijacked(r *http.Request, conn net.Conn, head []byte) bool {
	st.conn = conn
	// The request's context ends when the handler returns, so the stream
	// gets its own, with the request's values.
	st.ctx, st.cancel = context.WithCancel(context.WithoutCancel(r.Context()))
	if !st.s.streams.track(st) {
		// StreamCloser.Shutdown ran after accepting passed. The client sees
		// the connection close without a response and retries.
		st.cancel()
		conn.Close()
		st.s.endStream(st.sub)
		return false
	}
	// net/http may leave the server's ReadTimeout on a hijacked connection,
	// which would end watchClose's read, and with it the stream, early.
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		st.s.logger.Warn("SSE stream: clearing the read deadline failed", "remote_addr", conn.RemoteAddr().String(), "err", err)
	}
	st.refs.Store(2)
	go st.watchClose()

	if err := st.write(head); err != nil {
		st.finish()
		return false
	}
	return true
}

// responseHead returns the HTTP/1.1 head of a hijacked stream followed by
// body. It has the status line, the headers in h (those the middleware set
// included) in the sorted order net/http writes them, Date, and
// "Connection: close", because the body ends when the connection closes.
func responseHead(h http.Header, now time.Time, body string) []byte {
	h.Set("Date", now.UTC().Format(http.TimeFormat))
	h.Set("Connection", "close")
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	h.Write(&b)
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}

// watchClose reads the hijacked connection until it fails, which happens
// when the client closes it or when finish does, and then cancels ctx. An SSE
// client sends nothing after its request, so bytes it does send, such as a
// pipelined request, are read and dropped.
func (st *sseStream) watchClose() {
	defer st.release()
	buf := make([]byte, 64)
	for {
		if _, err := st.conn.Read(buf); err != nil {
			st.cancel()
			return
		}
	}
}

// run calls open on the handler's goroutine and then, when open returns
// true, live. A hijacked stream runs live on a new goroutine and run returns
// at once, so that the handler's goroutine and what net/http keeps for it are
// released. Other streams run live in the handler. The stream ends when open
// returns false or panics, and when live returns or panics.
func (st *sseStream) run(open func() bool, live func()) {
	handedOver := false
	defer func() {
		if !handedOver {
			st.finish()
		}
	}()
	if !open() {
		return
	}
	if st.conn == nil {
		live()
		return
	}

	handedOver = true
	go func() {
		defer st.finish()
		defer st.recoverPanic()
		live()
	}()
}

// recoverPanic logs a panic of a hijacked stream's goroutine and ends only
// that stream, as net/http does for a handler that panics.
func (st *sseStream) recoverPanic() {
	if err := recover(); err != nil {
		stack := make([]byte, 64<<10)
		stack = stack[:runtime.Stack(stack, false)]
		st.s.logger.Error("SSE stream panicked", "panic", err, "stack", string(stack))
	}
}

// finish ends the stream: it closes the subscription and, when the stream
// was hijacked, the connection.
func (st *sseStream) finish() {
	st.s.endStream(st.sub)
	if st.conn != nil {
		st.cancel()
		st.conn.Close()
		st.release()
	}
}

// abort makes a hijacked stream end soon: its writes and its store reads
// fail. StreamCloser.Shutdown calls it when its context ends.
func (st *sseStream) abort() {
	st.cancel()
	st.conn.Close()
}

// release drops one goroutine's reference to a hijacked stream.
func (st *sseStream) release() {
	if st.refs.Add(-1) == 0 {
		st.s.streams.untrack(st)
	}
}

// endStream releases the subscription and the stream count that startStream
// took.
func (s *server) endStream(sub *stream.Subscription) {
	sub.Close()
	s.metrics.streams.Dec()
}

// setDeadline gives the writes up to the next flush StreamWriteTimeout. The
// server's WriteTimeout would cut a long stream, so each write or batch of
// writes moves the connection's deadline forward instead.
func (st *sseStream) setDeadline() error {
	deadline := st.now().Add(st.timeout)
	if st.conn != nil {
		return st.conn.SetWriteDeadline(deadline)
	}
	if err := st.rc.SetWriteDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// add writes p, or on a hijacked stream queues it until flush, so p must
// stay unchanged until then.
func (st *sseStream) add(p []byte) error {
	if st.conn != nil {
		st.pending = append(st.pending, p)
		return nil
	}
	_, err := st.w.Write(p)
	return err
}

// flush sends what add queued or buffered. A hijacked stream on a TCP
// connection writes several queued messages with one writev system call.
func (st *sseStream) flush() error {
	if st.conn == nil {
		return st.rc.Flush()
	}

	var err error
	switch len(st.pending) {
	case 0:
	case 1:
		_, err = st.conn.Write(st.pending[0])
	default:
		// WriteTo consumes its receiver, so it gets a copy of the slice
		// header and pending keeps its array.
		bufs := st.pending
		_, err = bufs.WriteTo(st.conn)
	}
	clear(st.pending)
	st.pending = st.pending[:0]
	return err
}

// write sets the deadline, writes p and flushes.
func (st *sseStream) write(p []byte) error {
	if err := st.setDeadline(); err != nil {
		return err
	}
	if err := st.add(p); err != nil {
		return err
	}
	return st.flush()
}

// queued returns the next frame already waiting in the subscription's
// buffer, or nil when there is none. closed reports that the subscription
// ended.
func (st *sseStream) queued() (f *stream.Frame, closed bool) {
	select {
	case f, ok := <-st.sub.C():
		return f, !ok
	default:
		return nil, false
	}
}
