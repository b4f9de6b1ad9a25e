package sim

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"
)

// slowBodyPieces is the number of pieces a slow body is sent in.
const slowBodyPieces = 16

// unknownField is the member that UnknownFieldRatio inserts into JSON
// objects: a name no provider payload uses, holding several JSON types.
const unknownField = `"callcat_sim_unknown":{"list":[1,2.5,"three",null,true],"nested":{"deeper":{}}},`

// withFaults serves next with the configured API faults. It also feeds the
// request log and the per-second request count, for every authorised
// request, faulted or not. With no API faults configured, next writes the
// response directly.
func (s *Sim) withFaults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived := s.now()
		callID := r.PathValue("call_id")
		s.noteRequest(arrived, callID)

		var d apiDecision
		if s.cfg.Faults.apiEnabled() {
			d = s.faults.decideAPI()
		}
		if d.delay > 0 && !sleepContext(r.Context(), d.delay) {
			return
		}

		logged := &statusWriter{ResponseWriter: w}
		var retryAt time.Time
		switch {
		case d.fault == responseRateLimit:
			retryAt = s.writeRateLimited(logged, d)
		case d.fault == responseServerError:
			writeError(logged, d.status, "internal server error (simulated)")
		case d.fault == responseNormal && !d.unknownFields:
			next.ServeHTTP(logged, r)
		default:
			capture := newCapture()
			next.ServeHTTP(capture, r)
			s.writeFaulty(logged, r.Context(), capture, d)
			logged.code = capture.status
		}
		s.noteAnswered(callID, r, arrived, logged.status(), d.fault, retryAt)
	})
}

// writeRateLimited answers 429 with Retry-After and returns the time before
// which the client was asked not to come back.
func (s *Sim) writeRateLimited(w http.ResponseWriter, d apiDecision) time.Time {
	now := s.now()
	seconds := int64(math.Ceil(s.cfg.Faults.RetryAfter.Seconds()))
	retryAt := now.Add(time.Duration(seconds) * time.Second)
	value := strconv.FormatInt(seconds, 10)
	if d.retryAfterDate {
		// An HTTP-date has whole seconds, so round up to keep the full delay.
		retryAt = now.Add(s.cfg.Faults.RetryAfter)
		if retryAt.Nanosecond() != 0 {
			retryAt = retryAt.Truncate(time.Second).Add(time.Second)
		}
		value = retryAt.UTC().Format(http.TimeFormat)
	}
	w.Header().Set("Retry-After", value)
	writeError(w, http.StatusTooManyRequests, "rate limit exceeded (simulated), retry after "+value)
	return retryAt
}

// writeFaulty writes a captured response with the decided fault.
func (s *Sim) writeFaulty(w http.ResponseWriter, ctx context.Context, c *capture, d apiDecision) {
	body := c.body.Bytes()
	if d.unknownFields {
		body = addUnknownFields(body)
	}

	h := w.Header()
	for k, v := range c.header {
		h[k] = v
	}

	switch d.fault {
	case responseReset:
		resetMidResponse(w, c.status, body, cutAt(len(body), d.cut))

	case responseTruncate:
		cut := cutAt(len(body), d.cut)
		h.Set("Content-Length", strconv.Itoa(cut))
		w.WriteHeader(c.status)
		_, _ = w.Write(body[:cut])

	case responseSlow:
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(c.status)
		writeSlowly(ctx, w, body, s.cfg.Faults.SlowBodyDuration)

	case responseOversize:
		pad := max(0, s.cfg.Faults.OversizeBytes+1-len(body))
		h.Set("Content-Length", strconv.Itoa(len(body)+pad))
		w.WriteHeader(c.status)
		if _, err := w.Write(body); err != nil {
			return
		}
		writePadding(w, pad)

	default:
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(c.status)
		_, _ = w.Write(body)
	}
}

// cutAt returns where to cut a body of n bytes at share of its length:
// never at either end, so at least one byte is sent and one is missing. An
// empty or one-byte body (stop-call's 204 has none) is cut at 0.
func cutAt(n int, share float64) int {
	if n <= 1 {
		return 0
	}
	return max(1, min(n-1, int(float64(n)*share)))
}

// resetMidResponse sends the head of a response that announces all of body,
// then the first cut bytes, then resets the connection. Without a hijackable
// connection (HTTP/2), it aborts the response instead.
func resetMidResponse(w http.ResponseWriter, status int, body []byte, cut int) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		_, _ = w.Write(body[:cut])
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
	defer conn.Close()

	writeHead(buf.Writer, status, w.Header(), len(body))
	_, _ = buf.Write(body[:cut])
	_ = buf.Flush()
	if tcp, ok := conn.(*net.TCPConn); ok {
		// A zero linger time makes Close send RST instead of FIN.
		_ = tcp.SetLinger(0)
	}
}

func writeHead(w *bufio.Writer, status int, h http.Header, contentLength int) {
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	h = h.Clone()
	h.Set("Content-Length", strconv.Itoa(contentLength))
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	_ = h.Write(w)
	_, _ = w.WriteString("\r\n")
}

// writeSlowly sends body in slowBodyPieces pieces, flushing each, with equal
// pauses adding up to total.
func writeSlowly(ctx context.Context, w http.ResponseWriter, body []byte, total time.Duration) {
	rc := http.NewResponseController(w)
	pause := total / slowBodyPieces
	size := (len(body) + slowBodyPieces - 1) / slowBodyPieces
	for len(body) > 0 {
		n := min(size, len(body))
		if _, err := w.Write(body[:n]); err != nil {
			return
		}
		_ = rc.Flush()
		body = body[n:]
		if len(body) > 0 && !sleepContext(ctx, pause) {
			return
		}
	}
}

var padding = bytes.Repeat([]byte{' '}, 64<<10)

func writePadding(w http.ResponseWriter, n int) {
	for n > 0 {
		k := min(n, len(padding))
		if _, err := w.Write(padding[:k]); err != nil {
			return
		}
		n -= k
	}
}

// addUnknownFields returns body with unknownField inserted at the start of
// the top-level object and of its "call" object, when they exist.
func addUnknownFields(body []byte) []byte {
	top := bytes.IndexByte(body, '{')
	if top < 0 {
		return body
	}
	out := make([]byte, 0, len(body)+2*len(unknownField))
	out = append(out, body[:top+1]...)
	out = appendUnknownField(out, body[top+1:])
	rest := body[top+1:]
	if i := bytes.Index(rest, []byte(`"call":{`)); i >= 0 {
		end := i + len(`"call":{`)
		out = append(out, rest[:end]...)
		out = appendUnknownField(out, rest[end:])
		rest = rest[end:]
	}
	return append(out, rest...)
}

// appendUnknownField appends unknownField to out, which ends just after an
// object's opening brace. next is what follows the brace: when the object is
// empty, the member takes no trailing comma.
func appendUnknownField(out, next []byte) []byte {
	if len(next) > 0 && next[0] == '}' {
		return append(out, unknownField[:len(unknownField)-1]...)
	}
	return append(out, unknownField...)
}

// sleepContext waits for d and reports false when ctx ended first.
func sleepContext(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// capture is a ResponseWriter that keeps the whole response.
type capture struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newCapture() *capture { return &capture{header: make(http.Header)} }

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(p)
}

// statusWriter records the status written through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.code == 0 {
		w.code = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int { return w.code }
