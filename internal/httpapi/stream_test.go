package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/httpapi"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/stream"
)

// rawStream is an SSE response read from a plain TCP connection, so that a
// test reads the exact bytes of the head and controls when the client reads.
type rawStream struct {
	conn net.Conn
	br   *bufio.Reader
	head string // the response head, blank line included
}

// dialStream sends GET path with the given header lines on a new connection
// and reads the response head. readBuffer, when not zero, shrinks the
// client's receive buffer before the request.
func dialStream(t *testing.T, addr, path string, header []string, readBuffer int) *rawStream {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if readBuffer > 0 {
		if err := conn.(*net.TCPConn).SetReadBuffer(readBuffer); err != nil {
			t.Fatal(err)
		}
	}

	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	for _, line := range header {
		req += line + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}

	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rs := &rawStream{conn: conn, br: bufio.NewReaderSize(conn, 64)}
	var head strings.Builder
	for !strings.HasSuffix(head.String(), "\r\n\r\n") {
		line, err := rs.br.ReadString('\n')
		head.WriteString(line)
		if err != nil {
			t.Fatalf("read response head: %v after %q", err, head.String())
		}
	}
	rs.head = head.String()
	return rs
}

// readUntil reads until the bytes read end with marker and returns them.
func (rs *rawStream) readUntil(t *testing.T, marker string) string {
	t.Helper()
	rs.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got strings.Builder
	for !strings.HasSuffix(got.String(), marker) {
		b, err := rs.br.ReadByte()
		if err != nil {
			t.Fatalf("read until %q: %v after %q", marker, err, got.String())
		}
		got.WriteByte(b)
	}
	return got.String()
}

func TestStreamHijackedHead(t *testing.T) {
	ts := startServer(t, func(cfg *httpapi.Config) {
		cfg.Security.CORSOrigins = []string{allowedOrigin}
	})
	postFixture(t, ts.URL, "outbound/webhook_1_call_started.json")

	rs := dialStream(t, ts.Addr, "/v1/calls/"+outboundCallID+"/stream", []string{"Origin: " + allowedOrigin}, 0)

	// Date is the only header whose value changes; it is checked apart and
	// then compared like the others.
	_, afterDate, ok := strings.Cut(rs.head, "\r\nDate: ")
	if !ok {
		t.Fatalf("head has no Date header:\n%s", rs.head)
	}
	date, _, _ := strings.Cut(afterDate, "\r\n")
	at, err := http.ParseTime(date)
	if err != nil {
		t.Fatalf("Date %q: %v", date, err)
	}
	if d := time.Since(at); d < -time.Minute || d > time.Minute {
		t.Errorf("Date %q is %v away from now", date, d)
	}

	want := "HTTP/1.1 200 OK\r\n" +
		"Access-Control-Allow-Origin: " + allowedOrigin + "\r\n" +
		"Cache-Control: no-cache\r\n" +
		"Connection: close\r\n" +
		"Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n" +
		"Content-Type: text/event-stream\r\n" +
		"Date: " + date + "\r\n" +
		"Referrer-Policy: no-referrer\r\n" +
		"Vary: Origin\r\n" +
		"X-Accel-Buffering: no\r\n" +
		"X-Content-Type-Options: nosniff\r\n" +
		"X-Frame-Options: DENY\r\n" +
		"\r\n"
	if rs.head != want {
		t.Errorf("head:\n%q\nwant:\n%q", rs.head, want)
	}

	// The body follows unchunked: the retry hint, then the stored event.
	if got := rs.readUntil(t, "\n\n"); got != "retry: 2000\n\n" {
		t.Errorf("first message=%q, want the retry hint", got)
	}
	if got := rs.readUntil(t, "\n\n"); !strings.HasPrefix(got, "id: 1\nevent: status\ndata: {") {
		t.Errorf("second message=%q, want the stored status event 1", got)
	}
}

func TestStreamClientGoneLeavesHub(t *testing.T) {
	// Heartbeats would also find the closed connection, by a failed write;
	// with an hour between them the stream must notice by reading.
	ts := startServer(t, func(cfg *httpapi.Config) {
		cfg.HeartbeatInterval = time.Hour
	})
	postFixture(t, ts.URL, "outbound/webhook_1_call_started.json")

	for _, path := range []string{"/v1/calls/" + outboundCallID + "/stream", "/v1/stream"} {
		t.Run(strings.ReplaceAll(path, "/", "_"), func(t *testing.T) {
			rs := dialStream(t, ts.Addr, path, nil, 0)
			rs.readUntil(t, "retry: 2000\n\n")
			if got := ts.Hub.Subscribers(); got != 1 {
				t.Fatalf("subscribers=%d with one open stream, want 1", got)
			}

			rs.conn.Close()
			waitFor(t, 10*time.Second, "the stream to leave the hub", func() bool {
				return ts.Hub.Subscribers() == 0 && metricSum(t, ts.Reg, "callcat_sse_streams") == 0
			})
		})
	}
}

func TestStreamResumeLastEventID(t *testing.T) {
	ts := startServer(t, nil)
	for _, name := range []string{
		"outbound/webhook_1_call_started.json",
		"outbound/webhook_2_transcript_updated.json",
		"outbound/webhook_3_transcript_updated.json",
	} {
		if code := postFixture(t, ts.URL, name); code != http.StatusNoContent {
			t.Fatalf("%s: status %d", name, code)
		}
	}
	stored, err := ts.Store.Events(context.Background(), outboundCallID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) < 3 {
		t.Fatalf("stored events=%d, want at least 3", len(stored))
	}

	req := streamRequest(t, ts.URL+"/v1/calls/"+outboundCallID+"/stream", "")
	req.Header.Set("Last-Event-ID", "2")
	c := openSSE(t, req)
	if !c.resp.Close || len(c.resp.TransferEncoding) != 0 {
		t.Errorf("Close=%v Transfer-Encoding=%v, want a hijacked response: closed, not chunked", c.resp.Close, c.resp.TransferEncoding)
	}

	// The stored events after 2, in order.
	for _, want := range stored[2:] {
		ev, ok := c.next(t, 5*time.Second)
		if !ok {
			t.Fatalf("stream ended before event %d", want.Seq)
		}
		if ev.ID != strconv.FormatInt(want.Seq, 10) || ev.Event != string(want.Type) {
			t.Fatalf("event id=%s type=%s, want id=%d type=%s", ev.ID, ev.Event, want.Seq, want.Type)
		}
	}

	// Then live ones.
	last := stored[len(stored)-1].Seq
	postFixture(t, ts.URL, "outbound/webhook_4_transcript_updated.json")
	ev, ok := c.next(t, 5*time.Second)
	if !ok || ev.ID != strconv.FormatInt(last+1, 10) {
		t.Fatalf("live event=%+v (open %v), want id %d", ev, ok, last+1)
	}

	// A client that resumes at the last id gets nothing twice.
	c.close()
	req = streamRequest(t, ts.URL+"/v1/calls/"+outboundCallID+"/stream", "")
	req.Header.Set("Last-Event-ID", ev.ID)
	again := openSSE(t, req)
	postFixture(t, ts.URL, "outbound/webhook_5_transcript_updated_final.json")
	next, ok := again.next(t, 5*time.Second)
	if !ok || next.ID != strconv.FormatInt(last+2, 10) {
		t.Fatalf("first event after resuming at %s=%+v (open %v), want id %d", ev.ID, next, ok, last+2)
	}
}

func TestStreamBatchKeepsOrder(t *testing.T) {
	ts := startServer(t, nil)
	postFixture(t, ts.URL, "outbound/webhook_1_call_started.json")

	c := openSSE(t, streamRequest(t, ts.URL+"/v1/calls/"+outboundCallID+"/stream", ""))
	if ev := c.nextOf(t, "status", 5*time.Second); ev.ID != "1" {
		t.Fatalf("first event id=%s, want 1", ev.ID)
	}

	// More frames at once than one batch writes, so the stream writes
	// several batches of queued frames.
	const frames = 40
	events := make([]callcat.Event, frames)
	for i := range events {
		events[i] = callcat.Event{
			CallID: outboundCallID, Seq: int64(i + 2), Type: callcat.EventUtterance,
			Data: json.RawMessage(fmt.Sprintf(`{"index":%d,"role":"agent","content":"line %d"}`, i, i)),
		}
	}
	ts.Hub.Publish(events)

	for i := range frames {
		ev, ok := c.next(t, 5*time.Second)
		if !ok {
			t.Fatalf("stream ended after %d of %d frames", i, frames)
		}
		if want := strconv.Itoa(i + 2); ev.ID != want {
			t.Fatalf("frame %d has id %s, want %s", i, ev.ID, want)
		}
		if want := fmt.Sprintf(`"content":"line %d"`, i); !strings.Contains(ev.Data, want) {
			t.Fatalf("frame %s data=%s, want %s", ev.ID, ev.Data, want)
		}
	}
}

// bigFrame returns an utterance event of about size bytes.
func bigFrame(seq int64, size int) callcat.Event {
	return callcat.Event{
		CallID: outboundCallID, Seq: seq, Type: callcat.EventUtterance,
		Data: json.RawMessage(`{"index":0,"role":"agent","content":"` + strings.Repeat("x", size) + `"}`),
	}
}

func TestStreamSlowClientWriteTimeout(t *testing.T) {
	ts := startServerWith(t, serverOptions{
		listener: func(l net.Listener) net.Listener { return smallBuffers{l} },
		config: func(cfg *httpapi.Config) {
			cfg.StreamWriteTimeout = time.Second
		},
	})
	postFixture(t, ts.URL, "outbound/webhook_1_call_started.json")

	rs := dialStream(t, ts.Addr, "/v1/calls/"+outboundCallID+"/stream", nil, 4<<10)
	rs.readUntil(t, "id: 1\n")
	waitFor(t, 5*time.Second, "the stream to subscribe", func() bool { return ts.Hub.Subscribers() == 1 })

	// The client reads no more. One frame larger than both sockets'
	// buffers stops the server's write until the deadline.
	ts.Hub.Publish([]callcat.Event{bigFrame(2, 4<<20)})

	waitFor(t, 10*time.Second, "the stream to end", func() bool {
		return ts.Hub.Subscribers() == 0 && metricSum(t, ts.Reg, "callcat_sse_streams") == 0
	})
	if got := metricSum(t, ts.Reg, "callcat_sse_dropped_subscribers_total"); got != 0 {
		t.Errorf("dropped subscribers=%v, want 0: the write deadline, not the hub, must end this stream", got)
	}
}

func TestStreamShutdown(t *testing.T) {
	ts := startServer(t, nil)
	postFixture(t, ts.URL, "outbound/webhook_1_call_started.json")

	call := openSSE(t, streamRequest(t, ts.URL+"/v1/calls/"+outboundCallID+"/stream", ""))
	lifecycle := openSSE(t, streamRequest(t, ts.URL+"/v1/stream", ""))
	call.nextOf(t, "status", 5*time.Second)
	lifecycle.nextOf(t, "snapshot", 5*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Streams.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v, want nil: idle streams end at once", err)
	}
	if got := ts.Hub.Subscribers(); got != 0 {
		t.Errorf("subscribers=%d after Shutdown, want 0", got)
	}
	if got := metricSum(t, ts.Reg, "callcat_sse_streams"); got != 0 {
		t.Errorf("callcat_sse_streams=%v after Shutdown, want 0", got)
	}
	call.waitEnd(t, 5*time.Second)
	lifecycle.waitEnd(t, 5*time.Second)

	resp := get(t, ts.URL+"/v1/calls/"+outboundCallID+"/stream", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(resp.Body, "shutting down") {
		t.Errorf("stream after Shutdown: status %d, body %s; want 503 shutting down", resp.StatusCode, resp.Body)
	}
	if err := ts.Streams.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v, want nil", err)
	}
}

func TestStreamShutdownClosesBlockedStream(t *testing.T) {
	ts := startServerWith(t, serverOptions{
		listener: func(l net.Listener) net.Listener { return smallBuffers{l} },
		config: func(cfg *httpapi.Config) {
			cfg.StreamWriteTimeout = time.Minute
		},
	})
	postFixture(t, ts.URL, "outbound/webhook_1_call_started.json")

	rs := dialStream(t, ts.Addr, "/v1/calls/"+outboundCallID+"/stream", nil, 4<<10)
	rs.readUntil(t, "id: 1\n")
	waitFor(t, 5*time.Second, "the stream to subscribe", func() bool { return ts.Hub.Subscribers() == 1 })

	// Once the client has read the start of the large frame, the server is
	// inside a write that cannot finish before the deadline a minute away.
	ts.Hub.Publish([]callcat.Event{bigFrame(2, 4<<20)})
	rs.readUntil(t, "id: 2\n")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := ts.Streams.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want %v for a stream stuck in a write", err, context.DeadlineExceeded)
	}
	if got := ts.Hub.Subscribers(); got != 0 {
		t.Errorf("subscribers=%d after Shutdown, want 0", got)
	}

	// The connection is closed: the client reads what was sent, then the
	// end.
	rs.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, rs.br); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Errorf("read after Shutdown: %v, want the end of the connection", err)
	}
}

// isReset reports whether err is a connection reset, which a client may see
// when the server closes a connection with unsent data.
func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

func TestStreamHTTP2Fallback(t *testing.T) {
	ts := startServerWith(t, serverOptions{http2: true})
	post := func(name string) {
		t.Helper()
		body := readFixture(t, name)
		req, err := http.NewRequest(http.MethodPost, ts.URL+"/webhooks/retell", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(retell.SignatureHeader, retell.Sign(body, webhookKey, time.Now()))
		resp, err := ts.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s: status %d, want 204", name, resp.StatusCode)
		}
	}
	post("outbound/webhook_1_call_started.json")

	req := streamRequest(t, ts.URL+"/v1/calls/"+outboundCallID+"/stream", "")
	req.Header.Set("Last-Event-ID", "1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := ts.Client.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status=%d Content-Type=%q, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options=%q, want nosniff", got)
	}

	events := make(chan sseEvent, 16)
	go func() {
		defer close(events)
		br := bufio.NewReader(resp.Body)
		var ev sseEvent
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "" && ev.Event != "":
				events <- ev
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.Event = line[7:]
			}
		}
	}()

	post("outbound/webhook_2_transcript_updated.json")
	select {
	case ev := <-events:
		if ev.ID != "2" {
			t.Fatalf("first event after resuming at 1 has id %q, want 2", ev.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}

	// The client goes away, and net/http cancels the request's context.
	cancel()
	waitFor(t, 10*time.Second, "the stream to leave the hub", func() bool { return ts.Hub.Subscribers() == 0 })
	for range events {
	}
}

// A stream that has not started when the hub is full still gets a JSON 503,
// before any connection is taken over.
func TestStreamLimitBeforeHijack(t *testing.T) {
	ts := startServerWith(t, serverOptions{hub: stream.Config{MaxSubscribers: 1}})
	postFixture(t, ts.URL, "outbound/webhook_1_call_started.json")

	c := openSSE(t, streamRequest(t, ts.URL+"/v1/calls/"+outboundCallID+"/stream", ""))
	c.nextOf(t, "status", 5*time.Second)

	resp := get(t, ts.URL+"/v1/calls/"+outboundCallID+"/stream", "")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second stream: status %d, want 503", resp.StatusCode)
	}
	if resp.Header.Get("Retry-After") != "5" || !json.Valid([]byte(resp.Body)) {
		t.Errorf("Retry-After=%q body=%q, want 5 and a JSON body", resp.Header.Get("Retry-After"), resp.Body)
	}
}
