package sim_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/sim"
)

// getRaw sends one get-call and returns the response, or the error of the
// exchange, with the whole body read.
func getRaw(t *testing.T, api *httptest.Server, id string, header map[string]string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, api.URL+"/v2/get-call/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := api.Client().Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestFaultRateLimitSeconds(t *testing.T) {
	s, api := newSim(t, sim.Config{Faults: sim.Faults{RateLimitRatio: 1, RetryAfter: 1500 * time.Millisecond}})
	id := s.StartCall()

	resp, body, err := getRaw(t, api, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status=%d, want 429", resp.StatusCode)
	}
	if got := resp.Header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After=%q, want 2 (1.5 s rounded up)", got)
	}
	checkErrorBody(t, body)

	limited := s.RateLimited()
	if len(limited) != 1 {
		t.Fatalf("RateLimited has %d records, want 1", len(limited))
	}
	if got := limited[0].RetryAt.Sub(limited[0].At); got < 2*time.Second {
		t.Errorf("RetryAt-At=%v, want at least 2s", got)
	}
	if !limited[0].NextAt.IsZero() {
		t.Errorf("NextAt=%v before a next request, want zero", limited[0].NextAt)
	}

	if _, _, err := getRaw(t, api, id, nil); err != nil {
		t.Fatal(err)
	}
	limited = s.RateLimited()
	if len(limited) != 2 {
		t.Fatalf("RateLimited has %d records, want 2", len(limited))
	}
	if limited[0].NextAt.IsZero() {
		t.Errorf("first 429's NextAt is zero after a second request")
	}
	if got := s.Stats().Faults.RateLimited; got != 2 {
		t.Errorf("Faults.RateLimited=%d, want 2", got)
	}
}

func TestFaultRateLimitDate(t *testing.T) {
	s, api := newSim(t, sim.Config{Faults: sim.Faults{RateLimitRatio: 1, RetryAfter: time.Second, RetryAfterDateRatio: 1}})
	id := s.StartCall()

	before := time.Now()
	resp, _, err := getRaw(t, api, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	at, err := http.ParseTime(resp.Header.Get("Retry-After"))
	if err != nil {
		t.Fatalf("Retry-After %q is not an HTTP-date: %v", resp.Header.Get("Retry-After"), err)
	}
	if !at.After(before) {
		t.Errorf("Retry-After date %v is not after the request at %v", at, before)
	}
	if d := retell.RetryAfter(resp.Header, before); d < time.Second {
		t.Errorf("parsed delay=%v, want at least 1s", d)
	}
	limited := s.RateLimited()
	if len(limited) != 1 || !limited[0].RetryAt.Equal(at) {
		t.Errorf("RateLimited=%+v, want one record with RetryAt %v", limited, at)
	}
}

func TestRateLimitLogBound(t *testing.T) {
	s, api := newSim(t, sim.Config{RateLimitLog: 2, Faults: sim.Faults{RateLimitRatio: 1}})
	id := s.StartCall()

	var arrivals []time.Time
	for range 5 {
		arrivals = append(arrivals, time.Now())
		resp, _, err := getRaw(t, api, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("status=%d, want 429", resp.StatusCode)
		}
	}

	limited := s.RateLimited()
	if len(limited) != 2 {
		t.Fatalf("RateLimited has %d records, want 2 (RateLimitLog)", len(limited))
	}
	if limited[0].At.Before(arrivals[3]) {
		t.Errorf("oldest record kept at %v, want the fourth request's (sent at %v) or later", limited[0].At, arrivals[3])
	}
	if !limited[1].NextAt.IsZero() {
		t.Errorf("newest record NextAt=%v, want zero: no request followed it", limited[1].NextAt)
	}
	if got := s.Stats().Faults.RateLimited; got != 5 {
		t.Errorf("Faults.RateLimited=%d, want 5: the bound drops records, not counts", got)
	}
}

func TestFaultServerError(t *testing.T) {
	s, api := newSim(t, sim.Config{Faults: sim.Faults{ServerErrorRatio: 1}})
	id := s.StartCall()

	for range 20 {
		resp, body, err := getRaw(t, api, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode < 500 || resp.StatusCode > 504 {
			t.Fatalf("status=%d, want 500, 502, 503 or 504", resp.StatusCode)
		}
		checkErrorBody(t, body)
	}
	if got := s.Stats().Faults.ServerErrors; got != 20 {
		t.Errorf("Faults.ServerErrors=%d, want 20", got)
	}
}

func TestFaultReset(t *testing.T) {
	s, api := newSim(t, sim.Config{RequestLog: 8, Faults: sim.Faults{ResetRatio: 1}})
	id := s.StartCall()

	resp, body, err := getRaw(t, api, id, nil)
	if err == nil {
		t.Fatalf("status=%d body %q, want the body cut by a reset", resp.StatusCode, body)
	}
	if resp != nil && resp.StatusCode != http.StatusOK {
		t.Errorf("status=%d before the reset, want 200", resp.StatusCode)
	}
	// The simulator records the request after it closed the connection, so
	// the client can see the reset first.
	var reqs []sim.Request
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if reqs = s.Requests(id); len(reqs) > 0 {
			break
		}
	}
	if len(reqs) != 1 || reqs[0].Fault != "reset" {
		t.Errorf("request log=%+v, want one request with fault reset", reqs)
	}
}

func TestFaultTruncate(t *testing.T) {
	s, api := newSim(t, sim.Config{Faults: sim.Faults{TruncateRatio: 1}})
	id := s.StartCall()

	resp, body, err := getRaw(t, api, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status=%d, want 200", resp.StatusCode)
	}
	if json.Valid(body) {
		t.Errorf("truncated body is valid JSON: %s", body)
	}
	if got, want := resp.Header.Get("Content-Length"), strconv.Itoa(len(body)); got != want {
		t.Errorf("Content-Length=%s, want %s", got, want)
	}
	if _, err := retell.DecodeCall(body); !errors.Is(err, retell.ErrMalformedBody) {
		t.Errorf("DecodeCall err=%v, want ErrMalformedBody", err)
	}
}

func TestFaultSlowBody(t *testing.T) {
	s, api := newSim(t, sim.Config{Faults: sim.Faults{SlowBodyRatio: 1, SlowBodyDuration: 50 * time.Millisecond}})
	id := s.StartCall()

	resp, body, err := getRaw(t, api, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status=%d, want 200", resp.StatusCode)
	}
	if _, err := retell.DecodeCall(body); err != nil {
		t.Errorf("slow body does not decode: %v", err)
	}
	if got := s.Stats().Faults.SlowBodies; got != 1 {
		t.Errorf("Faults.SlowBodies=%d, want 1", got)
	}
}

func TestFaultOversize(t *testing.T) {
	const limit = 100_000
	s, api := newSim(t, sim.Config{Faults: sim.Faults{OversizeRatio: 1, OversizeBytes: limit}})
	id := s.StartCall()

	resp, body, err := getRaw(t, api, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(body) <= limit {
		t.Fatalf("body has %d bytes, want more than %d", len(body), limit)
	}
	if got, want := resp.Header.Get("Content-Length"), strconv.Itoa(len(body)); got != want {
		t.Errorf("Content-Length=%s, want %s", got, want)
	}
	call, err := retell.DecodeCall(body)
	if err != nil {
		t.Fatalf("padded body does not decode: %v", err)
	}
	if call.CallID != id {
		t.Errorf("call_id=%q, want %q", call.CallID, id)
	}
}

func TestFaultUnknownFieldsAPI(t *testing.T) {
	s, api := newSim(t, sim.Config{Faults: sim.Faults{UnknownFieldRatio: 1}})
	id := s.StartCall()

	got, _ := getCall(t, api, id)
	if _, ok := got["callcat_sim_unknown"]; !ok {
		t.Errorf("get-call body has no unknown field: %v", got)
	}
	if got["call_id"] != id {
		t.Errorf("call_id=%v, want %s", got["call_id"], id)
	}
}

func TestFaultLatency(t *testing.T) {
	s, api := newSim(t, sim.Config{Faults: sim.Faults{Latency: time.Millisecond, LatencyTailRatio: 0.5}})
	id := s.StartCall()

	for range 40 {
		if resp, _, err := getRaw(t, api, id, nil); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("get-call: %v", err)
		}
	}
	f := s.Stats().Faults
	if f.Delayed != 40 {
		t.Errorf("Faults.Delayed=%d, want 40", f.Delayed)
	}
	if f.TailDelayed == 0 || f.TailDelayed == 40 {
		t.Errorf("Faults.TailDelayed=%d, want some of 40", f.TailDelayed)
	}
}

// TestFaultRatiosDeterministic checks that a ratio is applied as a share of
// requests, and that the same seed and request order give the same faults.
func TestFaultRatiosDeterministic(t *testing.T) {
	statuses := func() []int {
		s, api := newSim(t, sim.Config{Seed: 11, Faults: sim.Faults{ServerErrorRatio: 0.2, RateLimitRatio: 0.1}})
		id := s.StartCall()
		var out []int
		for range 500 {
			resp, _, err := getRaw(t, api, id, nil)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, resp.StatusCode)
		}
		return out
	}

	first := statuses()
	var errors5xx, limited int
	for _, code := range first {
		switch {
		case code >= 500:
			errors5xx++
		case code == http.StatusTooManyRequests:
			limited++
		}
	}
	if errors5xx < 70 || errors5xx > 130 {
		t.Errorf("5xx responses=%d of 500, want about 100", errors5xx)
	}
	if limited < 30 || limited > 70 {
		t.Errorf("429 responses=%d of 500, want about 50", limited)
	}
	if diff := cmp.Diff(first, statuses()); diff != "" {
		t.Errorf("second run with the same seed differs (-first +second):\n%s", diff)
	}
}

func TestRequestLog(t *testing.T) {
	s, api := newSim(t, sim.Config{RequestLog: 3})
	id := s.StartCall()

	for i := range 5 {
		getRaw(t, api, id, map[string]string{sim.ReplicaHeader: "replica-" + strconv.Itoa(i)})
	}
	reqs := s.Requests(id)
	var replicas []string
	for _, r := range reqs {
		replicas = append(replicas, r.Replica)
		if r.Status != http.StatusOK {
			t.Errorf("logged status=%d, want 200", r.Status)
		}
	}
	if diff := cmp.Diff([]string{"replica-2", "replica-3", "replica-4"}, replicas); diff != "" {
		t.Errorf("logged replicas (-want +got):\n%s", diff)
	}
	if !slices.IsSortedFunc(reqs, func(a, b sim.Request) int { return a.At.Compare(b.At) }) {
		t.Errorf("request log is not oldest first: %+v", reqs)
	}
	if got := s.MaxRequestsPerSecond(); got < 5 {
		t.Errorf("MaxRequestsPerSecond=%d, want at least the 5 requests sent", got)
	}
}

func TestRequestsPerSecondWindow(t *testing.T) {
	clk := newClock()
	s, api := newSim(t, sim.Config{Now: clk.Now})
	id := s.StartCall()

	// 3 requests, then 4 more 1.5 s later: no one-second window holds more
	// than 4.
	for range 3 {
		getRaw(t, api, id, nil)
	}
	clk.Advance(1500 * time.Millisecond)
	for range 4 {
		getRaw(t, api, id, nil)
	}
	if got := s.MaxRequestsPerSecond(); got != 4 {
		t.Errorf("MaxRequestsPerSecond=%d, want 4", got)
	}
}

func TestDebugRoutes(t *testing.T) {
	rec := newRecorder(t, nil)
	s, api := newSim(t, sim.Config{
		WebhookURL: rec.srv.URL, Calls: 2, TotalCalls: 2, Speed: 300,
		AnalysisDelay: time.Second, Seed: 3, DebugRoutes: true,
	})
	if err := startRun(t, s).wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	status, body := do(t, api, http.MethodGet, "/_sim/delivered", testKey, "")
	if status != http.StatusOK {
		t.Fatalf("delivered status=%d, want 200", status)
	}
	var delivered struct {
		Digests []string `json:"digests"`
	}
	if err := json.Unmarshal(body, &delivered); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, h := range rec.all() {
		sum := sha256.Sum256(h.body)
		want = append(want, hex.EncodeToString(sum[:]))
	}
	// Senders of different calls run concurrently, so only the sets match.
	slices.Sort(want)
	slices.Sort(delivered.Digests)
	if diff := cmp.Diff(want, delivered.Digests); diff != "" {
		t.Errorf("delivered digests (-received +listed):\n%s", diff)
	}

	status, body = do(t, api, http.MethodGet, "/_sim/calls", testKey, "")
	var calls []sim.CallInfo
	if err := json.Unmarshal(body, &calls); status != http.StatusOK || err != nil {
		t.Fatalf("calls status=%d err=%v", status, err)
	}
	if diff := cmp.Diff(s.Calls(), calls); diff != "" {
		t.Errorf("/_sim/calls (-Calls +route):\n%s", diff)
	}

	if status, _ := do(t, api, http.MethodGet, "/_sim/stats", "", ""); status != http.StatusUnauthorized {
		t.Errorf("stats without key status=%d, want 401", status)
	}
}

func TestDebugRoutesOff(t *testing.T) {
	_, api := newSim(t, sim.Config{})
	if status, _ := do(t, api, http.MethodGet, "/_sim/calls", testKey, ""); status != http.StatusNotFound {
		t.Errorf("status=%d, want 404 without DebugRoutes", status)
	}
}

// runFaultyWebhooks runs calls with webhook faults to completion and returns
// the hooks received.
func runFaultyWebhooks(t *testing.T, calls int, faults sim.Faults) (*sim.Sim, *recorder) {
	t.Helper()
	rec := newRecorder(t, nil)
	s, _ := newSim(t, sim.Config{
		WebhookURL: rec.srv.URL, Calls: calls, TotalCalls: calls, Speed: 300,
		PushTranscripts: true, AnalysisDelay: time.Second, Seed: 21, Faults: faults,
	})
	if err := startRun(t, s).wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return s, rec
}

func TestFaultDuplicateWebhooks(t *testing.T) {
	s, rec := runFaultyWebhooks(t, 2, sim.Faults{DuplicateWebhookRatio: 1})

	for id, hooks := range rec.delivered() {
		if len(hooks)%2 != 0 {
			t.Fatalf("call %s got %d webhooks, want each twice", id, len(hooks))
		}
		for i := 0; i < len(hooks); i += 2 {
			if !bytes.Equal(hooks[i].body, hooks[i+1].body) || hooks[i].signature != hooks[i+1].signature {
				t.Errorf("call %s webhook %d (%s) not repeated with the same body and signature", id, i, hooks[i].event)
			}
		}
	}
	st := s.Stats()
	if st.Faults.Duplicates == 0 || st.WebhooksSent != 2*st.Faults.Duplicates {
		t.Errorf("WebhooksSent=%d Duplicates=%d, want twice as many sent", st.WebhooksSent, st.Faults.Duplicates)
	}
}

func TestFaultReorderedWebhooks(t *testing.T) {
	s, rec := runFaultyWebhooks(t, 2, sim.Faults{ReorderWebhookRatio: 1})

	for id, hooks := range rec.delivered() {
		seq := events(hooks)
		if strings.HasPrefix(seq, "call_started") {
			t.Errorf("call %s webhooks=%q, want call_started held behind the next one", id, seq)
		}
		if !strings.HasSuffix(seq, "call_analyzed") && !strings.HasSuffix(seq, "call_analyzed call_ended") {
			t.Errorf("call %s webhooks=%q, want call_analyzed at or next to the end", id, seq)
		}
		if strings.Count(seq, "call_started") != 1 || strings.Count(seq, "call_ended") != 1 {
			t.Errorf("call %s webhooks=%q, want each lifecycle event once", id, seq)
		}
	}
	if s.Stats().Faults.Reordered == 0 {
		t.Errorf("Faults.Reordered=0, want some")
	}
}

func TestFaultLateWebhooks(t *testing.T) {
	const age = 7 * time.Minute
	_, rec := runFaultyWebhooks(t, 1, sim.Faults{
		LateWebhookRatio: 1, LateWebhookAge: age, WebhookFaultEvents: []string{"call_ended"},
	})

	for _, h := range rec.all() {
		_, err := retell.VerifySignature(h.body, h.signature, testKey, h.receivedAt)
		if h.event != "call_ended" {
			if err != nil {
				t.Errorf("%s signature: %v, want valid", h.event, err)
			}
			continue
		}
		if !errors.Is(err, retell.ErrSignatureExpired) {
			t.Errorf("call_ended signature err=%v, want %v", err, retell.ErrSignatureExpired)
		}
		if _, err := retell.VerifySignature(h.body, h.signature, testKey, h.receivedAt.Add(-age)); err != nil {
			t.Errorf("call_ended signature %v before receipt: %v, want valid", age, err)
		}
	}
}

func TestFaultUnknownEvents(t *testing.T) {
	_, rec := runFaultyWebhooks(t, 2, sim.Faults{UnknownEventRatio: 1, UnknownFieldRatio: 1})

	for id, hooks := range rec.delivered() {
		unknown := 0
		for _, h := range hooks {
			if !json.Valid(h.body) {
				t.Errorf("call %s %s body is not valid JSON", id, h.event)
			}
			extra := h.event == "transfer_started" || h.event == "future_event"
			hasUnknown := bytes.HasPrefix(h.body, []byte(`{"callcat_sim_unknown":`)) && bytes.Contains(h.body, []byte(`"call":{"callcat_sim_unknown":`))
			if !extra && !hasUnknown {
				t.Errorf("call %s %s body lacks the unknown fields: %.120s", id, h.event, h.body)
			}
			if extra {
				unknown++
				if h.call["call_status"] != "ongoing" || h.call["transcript"] != nil {
					t.Errorf("call %s %s: status=%v transcript=%v, want ongoing without transcript", id, h.event, h.call["call_status"], h.call["transcript"])
				}
			}
		}
		if unknown == 0 {
			t.Errorf("call %s got no unknown event: %s", id, events(hooks))
		}
	}
}

func TestFaultTranscriptRewrite(t *testing.T) {
	s, rec := runFaultyWebhooks(t, 2, sim.Faults{TranscriptRewriteRatio: 1})

	for _, info := range s.Calls() {
		hooks := rec.delivered()[info.ID]
		var updates []hook
		for _, h := range hooks {
			if h.event == "transcript_updated" {
				updates = append(updates, h)
			}
		}
		if len(updates) < 3 {
			t.Fatalf("call %s has %d transcript_updated, want at least 3", info.ID, len(updates))
		}
		// Every live update shows a last utterance that the next update
		// shows longer: it was cut.
		for i := 0; i+1 < len(updates)-1; i++ {
			cur := utterances(updates[i].call, "transcript_object")
			next := utterances(updates[i+1].call, "transcript_object")
			last := len(cur) - 1
			got, full := cur[last]["content"].(string), next[last]["content"].(string)
			if !strings.HasPrefix(full, got) || len(got) >= len(full) {
				t.Errorf("call %s update %d last utterance %q, want a shortened prefix of %q", info.ID, i, got, full)
			}
			checkTranscript(t, info.ID, updates[i])
		}
		final := updates[len(updates)-1]
		if final.call["transcript"] != info.FinalTranscript {
			t.Errorf("call %s final transcript_updated was rewritten: %q, want %q", info.ID, final.call["transcript"], info.FinalTranscript)
		}
	}
}

func TestNewInvalidFaults(t *testing.T) {
	cases := []struct {
		name   string
		faults sim.Faults
	}{
		{"RatioAboveOne", sim.Faults{ServerErrorRatio: 1.5}},
		{"NegativeRatio", sim.Faults{DuplicateWebhookRatio: -0.1}},
		{"ResponseRatiosAboveOne", sim.Faults{ServerErrorRatio: 0.6, RateLimitRatio: 0.5}},
		{"NegativeLatency", sim.Faults{Latency: -time.Second}},
		{"NegativeOversize", sim.Faults{OversizeBytes: -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sim.New(sim.Config{APIKey: testKey, Faults: tc.faults}); err == nil {
				t.Fatalf("New accepted %+v", tc.faults)
			}
		})
	}
}

func TestFaultEmptyBody(t *testing.T) {
	// stop-call answers 204 without a body. The handler runs on a recorder,
	// so a panic would fail the test instead of being recovered by a server.
	for _, faults := range []sim.Faults{
		{TruncateRatio: 1},
		{OversizeRatio: 1, OversizeBytes: 10},
		{SlowBodyRatio: 1, SlowBodyDuration: time.Millisecond},
	} {
		s, err := sim.New(sim.Config{APIKey: testKey, Faults: faults})
		if err != nil {
			t.Fatal(err)
		}
		id := s.StartCall()
		req := httptest.NewRequest(http.MethodPost, "/v2/stop-call/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			t.Errorf("faults %+v: stop-call status=%d, want 204", faults, rec.Code)
		}
	}
}
