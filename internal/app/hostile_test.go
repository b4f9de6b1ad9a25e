package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/stream"
)

// hostileWebhookLimit is MaxWebhookBytes of the service TestHostileInput
// attacks: large enough for a transcript of 10,000 utterances.
const hostileWebhookLimit = 4 << 20

// startHostileTarget runs a service whose provider refuses connections, so
// that calls created by hostile webhooks are polled in vain.
func startHostileTarget(t *testing.T, cfg app.Config) *app.Service {
	t.Helper()
	cfg.RetellBaseURL = "http://127.0.0.1:1"
	if cfg.MaxWebhookBytes == 0 {
		cfg.MaxWebhookBytes = hostileWebhookLimit
	}
	return startService(t, cfg)
}

// signedPost posts body as a webhook signed now and returns the status.
func signedPost(t *testing.T, svc *app.Service, body []byte) int {
	t.Helper()
	return postWebhook(t, svc.URL(), body, fixtureKey)
}

// transcriptBody is a transcript_updated webhook of an ongoing call whose
// utterances have the given contents, alternating agent and user.
func transcriptBody(callID string, contents ...string) []byte {
	type item struct {
		Role    string `json:"role"`
		Content string `json:"content"`
		Words   []any  `json:"words"`
	}
	items := make([]item, len(contents))
	for i, c := range contents {
		role := "agent"
		if i%2 == 1 {
			role = "user"
		}
		items[i] = item{Role: role, Content: c, Words: []any{}}
	}
	body, err := json.Marshal(map[string]any{
		"event": "transcript_updated",
		"call": map[string]any{
			"call_id":           callID,
			"call_type":         "phone_call",
			"call_status":       "ongoing",
			"transcript_object": items,
		},
	})
	if err != nil {
		panic(err)
	}
	return body
}

func TestHostileWebhookBodies(t *testing.T) {
	svc := startHostileTarget(t, app.Config{})

	deepArray := bytes.Repeat([]byte("["), 100_000)
	deepInCall := append([]byte(`{"event":"call_started","call":{"call_id":"call_deep","metadata":`), deepArray...)
	deepInCall = append(deepInCall, `}}`...)
	hugeNumbers := []byte(`{"event":"call_started","call":{"call_id":"call_huge_numbers","call_status":"ongoing",` +
		`"start_timestamp":1e400,"end_timestamp":-99999999999999999999999999,` +
		`"duration_ms":123456789012345678901234567890,"metadata":{"n":1e999999,"m":-0.0e-999999}}}`)
	invalidUTF8 := []byte("{\"event\":\"transcript_updated\",\"call\":{\"call_id\":\"call_bad_utf8\",\"call_status\":\"ongoing\"," +
		"\"transcript_object\":[{\"role\":\"agent\",\"content\":\"caf\xe9 \xff\xfe ok\",\"words\":[]}]}}")
	rawNUL := []byte("{\"event\":\"call_started\",\"call\":{\"call_id\":\"call_raw\x00nul\"}}")

	cases := []struct {
		name string
		body []byte
		want int
	}{
		{"DeepArray", deepArray, http.StatusBadRequest},
		{"DeepNestingInCall", deepInCall, http.StatusBadRequest},
		{"HugeNumbers", hugeNumbers, http.StatusNoContent},
		{"InvalidUTF8", invalidUTF8, http.StatusNoContent},
		{"RawNULInString", rawNUL, http.StatusBadRequest},
		{"EscapedNUL", transcriptBody("call_escaped_nul", "before\x00after"), http.StatusNoContent},
		{"NULInCallID", transcriptBody("call_nul\x00id", "hello"), http.StatusNoContent},
		{"LineSeparator", transcriptBody("call_line_separator", "one\u2028two\u2029three\r\nfour"), http.StatusNoContent},
		{"EmptyBody", nil, http.StatusBadRequest},
		{"OnlyWhitespace", []byte(" \n\t "), http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := signedPost(t, svc, tc.body); got != tc.want {
				t.Fatalf("status=%d, want %d", got, tc.want)
			}
		})
	}

	t.Run("HugeNumbersStored", func(t *testing.T) {
		var c callJSON
		getJSON(t, svc.URL()+"/v1/calls/call_huge_numbers", &c)
		if c.StartTimestamp != nil || c.EndTimestamp != nil || c.DurationMS != nil {
			t.Errorf("timestamps start=%v end=%v duration=%v, want null for numbers out of range",
				c.StartTimestamp, c.EndTimestamp, c.DurationMS)
		}
		if !json.Valid(c.Metadata) {
			t.Errorf("metadata %s is not valid JSON", c.Metadata)
		}
	})

	t.Run("InvalidUTF8Replaced", func(t *testing.T) {
		var tr transcriptJSON
		getJSON(t, svc.URL()+"/v1/calls/call_bad_utf8/transcript", &tr)
		if len(tr.Utterances) != 1 {
			t.Fatalf("utterances=%d, want 1", len(tr.Utterances))
		}
		if got := tr.Utterances[0].Content; !utf8.ValidString(got) || !strings.Contains(got, "\uFFFD") {
			t.Errorf("content=%q, want valid UTF-8 with U+FFFD for the invalid bytes", got)
		}
	})

	t.Run("EscapedNULKept", func(t *testing.T) {
		var tr transcriptJSON
		getJSON(t, svc.URL()+"/v1/calls/call_escaped_nul/transcript", &tr)
		if len(tr.Utterances) != 1 || tr.Utterances[0].Content != "before\x00after" {
			t.Errorf("utterances=%+v, want one with content %q", tr.Utterances, "before\x00after")
		}
	})

	t.Run("NULCallIDFound", func(t *testing.T) {
		var c callJSON
		getJSON(t, svc.URL()+"/v1/calls/"+url.PathEscape("call_nul\x00id"), &c)
		if c.CallID != "call_nul\x00id" {
			t.Errorf("call_id=%q, want %q", c.CallID, "call_nul\x00id")
		}
	})

	t.Run("LineSeparatorOneDataLine", func(t *testing.T) {
		frame := firstFrame(t, svc, "call_line_separator", "utterance")
		if n := strings.Count(frame, "\ndata: "); n != 1 {
			t.Errorf("frame has %d data lines, want 1:\n%q", n, frame)
		}
		for _, r := range []string{"\u2028", "\u2029", "\r"} {
			if strings.Contains(frame, r) {
				t.Errorf("frame contains a raw %q, which some clients read as a line end:\n%q", r, frame)
			}
		}
		var d struct {
			Content string `json:"content"`
		}
		data := frame[strings.Index(frame, "\ndata: ")+7:]
		data = data[:strings.IndexByte(data, '\n')]
		if err := json.Unmarshal([]byte(data), &d); err != nil || d.Content != "one\u2028two\u2029three\r\nfour" {
			t.Errorf("data %q decodes to %q (err %v), want the original content", data, d.Content, err)
		}
	})
}

// firstFrame reads the SSE stream of callID until the first event of type
// event and returns that frame's lines.
func firstFrame(t *testing.T, svc *app.Service, callID, event string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, svc.URL()+"/v1/calls/"+url.PathEscape(callID)+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream status=%d, want 200", resp.StatusCode)
	}

	br := bufio.NewReader(resp.Body)
	var frame strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before a %s event: %v", event, err)
		}
		if line == "\n" {
			if strings.Contains(frame.String(), "event: "+event+"\n") {
				return "\n" + frame.String()
			}
			frame.Reset()
			continue
		}
		frame.WriteString(line)
	}
}

func TestHostileCallIDs(t *testing.T) {
	svc := startHostileTarget(t, app.Config{})

	ids := []struct {
		name string
		id   string
	}{
		{"DotDotSlash", "../x"},
		{"SQL", "'; DROP TABLE calls;--"},
		{"EncodedSlash", "%2F"},
		{"Slash", "a/b"},
		{"QueryAndFragment", "x?status=all#y"},
		{"Long", "call_" + strings.Repeat("x", 10_000-5)},
	}
	for _, tc := range ids {
		t.Run(tc.name, func(t *testing.T) {
			if got := signedPost(t, svc, transcriptBody(tc.id, "hello")); got != http.StatusNoContent {
				t.Fatalf("webhook status=%d, want 204", got)
			}
			var c callJSON
			getJSON(t, svc.URL()+"/v1/calls/"+url.PathEscape(tc.id), &c)
			if c.CallID != tc.id {
				t.Errorf("call_id=%.40q, want %.40q", c.CallID, tc.id)
			}
			text := getText(t, svc.URL()+"/v1/calls/"+url.PathEscape(tc.id)+"/transcript?format=text")
			if text != "Agent: hello\n" {
				t.Errorf("transcript=%q, want %q", text, "Agent: hello\n")
			}
		})
	}

	// The calls table survived every id.
	var list struct {
		Calls []callJSON `json:"calls"`
	}
	getJSON(t, svc.URL()+"/v1/calls?status=all&limit=500", &list)
	if len(list.Calls) != len(ids) {
		t.Errorf("listed calls=%d, want %d", len(list.Calls), len(ids))
	}
}

func TestHostileLargeTranscript(t *testing.T) {
	svc := startHostileTarget(t, app.Config{})
	const utterances = 10_000

	contents := make([]string, utterances)
	for i := range contents {
		contents[i] = "utterance number " + strconv.Itoa(i) + " of a very long call"
	}

	heapBefore := heapAfterGC()
	for round := range 2 {
		id := fmt.Sprintf("call_large_%d", round)
		body := transcriptBody(id, contents...)
		if got := signedPost(t, svc, body); got != http.StatusNoContent {
			t.Fatalf("round %d: status=%d, want 204 for a %d-byte body", round, got, len(body))
		}

		var tr transcriptJSON
		getJSON(t, svc.URL()+"/v1/calls/"+id+"/transcript", &tr)
		if len(tr.Utterances) != utterances {
			t.Fatalf("round %d: utterances=%d, want %d", round, len(tr.Utterances), utterances)
		}
		if got := countEvents(t, svc, id, utterances+1); got != utterances+1 {
			t.Fatalf("round %d: streamed events=%d, want %d (status and utterances)", round, got, utterances+1)
		}
	}
	http.DefaultClient.CloseIdleConnections()

	// What the large calls needed is released: only the store holds them.
	heapAfter := heapAfterGC()
	t.Logf("heap after GC: %d KiB before, %d KiB after two %d-utterance calls", heapBefore>>10, heapAfter>>10, utterances)
	if grown := int64(heapAfter) - int64(heapBefore); grown > 16<<20 {
		t.Errorf("heap grew by %d KiB after the large transcripts, want under 16 MiB", grown>>10)
	}
}

// heapAfterGC returns the live heap after two collections.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// countEvents reads a call's stream until want events arrived or 20 s
// passed, and returns how many arrived.
func countEvents(t *testing.T, svc *app.Service, callID string, want int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, svc.URL()+"/v1/calls/"+callID+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	readSSE(resp.Body, func(sseEvent) bool {
		n++
		return n == want
	})
	return n
}

func TestHostileTransport(t *testing.T) {
	svc := startHostileTarget(t, app.Config{})

	t.Run("OversizedHeaders", func(t *testing.T) {
		t.Parallel()
		req := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + strings.Repeat("a", 100<<10) + "\r\n\r\n"
		resp := rawExchange(t, svc.Addr, []byte(req))
		if resp == nil {
			t.Fatalf("connection closed without a response, want 431")
		}
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status=%d, want 431", resp.StatusCode)
		}
	})

	t.Run("ChunkedOverLimit", func(t *testing.T) {
		t.Parallel()
		status, err := chunkedPost(t, svc.Addr, 2*hostileWebhookLimit)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status=%d, want 413", status)
		}
	})

	t.Run("Slowloris", func(t *testing.T) {
		t.Parallel()
		// ReadHeaderTimeout is 10 s in app.Serve and not configurable, so
		// this case takes about 10 s. It sends a 60-byte request head at one
		// byte per second and must be cut off long before the end.
		const head = "POST /webhooks/retell HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: bbbb\r\n\r\n"
		conn, err := net.Dial("tcp", svc.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()

		closed := make(chan struct{})
		go func() {
			defer close(closed)
			_, _ = io.Copy(io.Discard, conn)
		}()

		sent := 0
	send:
		for sent < len(head) {
			if _, err := conn.Write([]byte{head[sent]}); err != nil {
				break
			}
			sent++
			select {
			case <-closed:
				break send
			case <-time.After(time.Second):
			}
		}
		if sent == len(head) {
			t.Fatalf("the server took the whole %d-byte head at one byte per second", len(head))
		}
		t.Logf("server closed the connection after %d bytes", sent)
	})
}

// rawExchange writes req on a new connection and reads one response, or
// returns nil when the server closed the connection without one.
func rawExchange(t *testing.T, addr string, req []byte) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := conn.Write(req); err != nil {
		// The server may answer and close before it read everything.
		t.Logf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil
	}
	resp.Body.Close()
	return resp
}

// chunkedPost sends a signed-looking webhook body of size bytes with
// Transfer-Encoding: chunked, so the server learns the size only by reading,
// and returns the response status.
func chunkedPost(t *testing.T, addr string, size int) (int, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))

	// The response may come before the whole body is written; a writer
	// goroutine lets the reader see it either way.
	go func() {
		w := bufio.NewWriter(conn)
		fmt.Fprintf(w, "POST /webhooks/retell HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"+
			"%s: %s\r\nTransfer-Encoding: chunked\r\n\r\n", retell.SignatureHeader, retell.Sign(nil, fixtureKey, time.Now()))
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			fmt.Fprintf(w, "%x\r\n", len(chunk))
			w.Write(chunk)
			if _, err := w.WriteString("\r\n"); err != nil {
				return
			}
		}
		w.WriteString("0\r\n\r\n")
		w.Flush()
	}()

	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, fmt.Errorf("read response: %w", err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestHostileStreamLimit(t *testing.T) {
	const limit = 4
	svc := startHostileTarget(t, app.Config{Stream: stream.Config{MaxSubscribers: limit}})
	if got := signedPost(t, svc, transcriptBody("call_streams", "hello")); got != http.StatusNoContent {
		t.Fatalf("webhook status=%d, want 204", got)
	}

	open := func() (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, svc.URL()+"/v1/calls/call_streams/stream", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		return resp, cancel
	}

	var cancels []context.CancelFunc
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for i := range limit {
		resp, cancel := open()
		cancels = append(cancels, cancel)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d status=%d, want 200", i, resp.StatusCode)
		}
	}

	for i := range 3 {
		resp, cancel := open()
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("stream %d past the limit: status=%d, want 503", limit+i, resp.StatusCode)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After")
		}
		if !json.Valid(body) {
			t.Errorf("503 body %q is not JSON", body)
		}
	}

	// Closing one stream frees its place.
	cancels[0]()
	waitFor(t, 10*time.Second, "a freed stream place", func() bool {
		resp, cancel := open()
		defer cancel()
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
