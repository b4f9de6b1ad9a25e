package sim_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/callcat/callcat/internal/sim"
)

var transcriptKeys = []string{"transcript", "transcript_object", "transcript_with_tool_calls"}

// checkErrorBody fails unless body is the provider's error shape.
func checkErrorBody(t *testing.T, body []byte) {
	t.Helper()
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if e["status"] != "error" {
		t.Errorf("error body status=%v, want \"error\"", e["status"])
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("error body message=%v, want a message", e["message"])
	}
	if len(e) != 2 {
		t.Errorf("error body keys=%v, want status and message", e)
	}
}

func TestGetCallAuth(t *testing.T) {
	s, api := newSim(t, sim.Config{})
	id := s.StartCall()

	for _, key := range []string{"", "key_wrong"} {
		status, body := do(t, api, http.MethodGet, "/v2/get-call/"+id, key, "")
		if status != http.StatusUnauthorized {
			t.Errorf("get-call with key %q status=%d, want 401", key, status)
		}
		checkErrorBody(t, body)
	}
	if got := s.Stats().GetCallRequests; got != 0 {
		t.Errorf("GetCallRequests=%d after rejected requests, want 0", got)
	}
}

func TestGetCallUnknown(t *testing.T) {
	_, api := newSim(t, sim.Config{})
	status, body := do(t, api, http.MethodGet, "/v2/get-call/call_00000000000000000000000000a", testKey, "")
	if status != http.StatusUnprocessableEntity {
		t.Errorf("status=%d, want 422", status)
	}
	checkErrorBody(t, body)
}

func TestUnknownRoute(t *testing.T) {
	_, api := newSim(t, sim.Config{})
	status, body := do(t, api, http.MethodGet, "/v2/list-agents", testKey, "")
	if status != http.StatusNotFound {
		t.Errorf("status=%d, want 404", status)
	}
	checkErrorBody(t, body)
}

func TestGetCallOngoingDefault(t *testing.T) {
	clk := newClock()
	s, api := newSim(t, sim.Config{Now: clk.Now, Seed: 9})
	id := s.StartCall()
	startRun(t, s)

	clk.Advance(10 * time.Second)
	waitStatus(t, s, id, "ongoing")
	for range 5 {
		got, _ := getCall(t, api, id)
		for _, k := range transcriptKeys {
			if _, ok := got[k]; ok {
				t.Errorf("ongoing get-call has %q, want no transcript fields", k)
			}
		}
		if got["call_status"] != "ongoing" {
			t.Errorf("call_status=%v, want ongoing", got["call_status"])
		}
		clk.Advance(3 * time.Second)
	}
	if got := s.Stats().GetCallRequests; got != 5 {
		t.Errorf("GetCallRequests=%d, want 5", got)
	}
}

func TestGetCallLiveTranscript(t *testing.T) {
	clk := newClock()
	s, api := newSim(t, sim.Config{Now: clk.Now, LiveTranscript: true, CallLength: 90 * time.Second, Seed: 9})
	id := s.StartCall()
	startRun(t, s)

	clk.Advance(8 * time.Second)
	waitStatus(t, s, id, "ongoing")

	// Poll every 0.3 simulated seconds: each snapshot keeps the earlier
	// utterances and replaces the last one with the same or longer text.
	var previous []map[string]any
	cut := 0
	for range 150 {
		got, _ := getCall(t, api, id)
		if got["call_status"] != "ongoing" {
			break
		}
		current := utterances(got, "transcript_with_tool_calls")
		text, _ := got["transcript"].(string)
		if text != formatTranscript(utterances(got, "transcript_object")) {
			t.Fatalf("transcript=%q, want the lines of transcript_object", text)
		}
		if len(current) < len(previous) {
			t.Fatalf("snapshot has %d utterances after %d", len(current), len(previous))
		}
		for i, p := range previous {
			before, now := p["content"].(string), current[i]["content"].(string)
			if i < len(previous)-1 && now != before {
				t.Fatalf("utterance %d changed from %q to %q", i, before, now)
			}
			if !strings.HasPrefix(now, before) {
				t.Fatalf("utterance %d went from %q to %q, want it to grow", i, before, now)
			}
			if i == len(previous)-1 && len(now) > len(before) {
				cut++
			}
		}
		previous = current
		clk.Advance(300 * time.Millisecond)
	}
	if len(previous) < 4 {
		t.Errorf("last live snapshot has %d utterances, want the transcript to grow", len(previous))
	}
	if cut == 0 {
		t.Errorf("no snapshot showed an utterance in progress")
	}
}

func TestGetCallEnded(t *testing.T) {
	clk := newClock()
	s, api := newSim(t, sim.Config{Now: clk.Now, Seed: 4})
	id := s.StartCall()
	startRun(t, s)

	clk.Advance(10 * time.Minute)
	waitFor(t, "analysis", func() bool { info, _ := s.Call(id); return info.Analyzed })
	info, _ := s.Call(id)
	got, _ := getCall(t, api, id)

	if got["call_status"] != "ended" {
		t.Errorf("call_status=%v, want ended", got["call_status"])
	}
	if info.FinalTranscript == "" {
		t.Errorf("FinalTranscript is empty, want the transcript")
	}
	if got["transcript"] != info.FinalTranscript {
		t.Errorf("transcript=%q, want FinalTranscript %q", got["transcript"], info.FinalTranscript)
	}
	if n := len(utterances(got, "transcript_object")); n != info.Utterances {
		t.Errorf("transcript_object has %d utterances, want %d", n, info.Utterances)
	}
	start, _ := got["start_timestamp"].(json.Number).Int64()
	end, _ := got["end_timestamp"].(json.Number).Int64()
	duration, _ := got["duration_ms"].(json.Number).Int64()
	if end-start != duration {
		t.Errorf("end_timestamp-start_timestamp=%d, want duration_ms %d", end-start, duration)
	}
	if _, ok := got["call_analysis"]; !ok {
		t.Errorf("analyzed call has no call_analysis")
	}
}

func TestCreatePhoneCallInvalid(t *testing.T) {
	_, api := newSim(t, sim.Config{})
	cases := []struct{ name, body string }{
		{"no from", `{"to_number":"+15550142310"}`},
		{"from not E.164", `{"from_number":"5550100001","to_number":"+15550142310"}`},
		{"no to", `{"from_number":"+15550100001"}`},
		{"to with leading zero", `{"from_number":"+15550100001","to_number":"+05550142310"}`},
		{"to too long", `{"from_number":"+15550100001","to_number":"+1555014231099999"}`},
		{"dynamic variable not a string", `{"from_number":"+15550100001","to_number":"+15550142310","retell_llm_dynamic_variables":{"n":1}}`},
		{"empty agent id", `{"from_number":"+15550100001","to_number":"+15550142310","override_agent_id":""}`},
		{"not JSON", `{"from_number":`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := do(t, api, http.MethodPost, "/v2/create-phone-call", testKey, c.body)
			if status != http.StatusBadRequest {
				t.Errorf("status=%d, want 400; body %s", status, body)
			}
			checkErrorBody(t, body)
		})
	}
}

func TestCreatePhoneCall(t *testing.T) {
	s, api := newSim(t, sim.Config{})
	body := `{"from_number":"+15550100009","to_number":"+15550177777","override_agent_id":"agent_00000000000000000000000abc",` +
		`"metadata":{"order":"A-1","tags":["x"]},"retell_llm_dynamic_variables":{"customer_name":"Ada"}}`
	id, created := createCall(t, api, body)
	got := decodeObject(t, created)

	want := map[string]any{
		"call_status": "registered",
		"direction":   "outbound",
		"from_number": "+15550100009",
		"to_number":   "+15550177777",
		"agent_id":    "agent_00000000000000000000000abc",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%v, want %v", k, got[k], v)
		}
	}
	var payload struct {
		Metadata         json.RawMessage `json:"metadata"`
		DynamicVariables json.RawMessage `json:"retell_llm_dynamic_variables"`
	}
	if err := json.Unmarshal(created, &payload); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if string(payload.Metadata) != `{"order":"A-1","tags":["x"]}` {
		t.Errorf("metadata=%s, want the request's", payload.Metadata)
	}
	if string(payload.DynamicVariables) != `{"customer_name":"Ada"}` {
		t.Errorf("retell_llm_dynamic_variables=%s, want the request's", payload.DynamicVariables)
	}
	if _, ok := got["start_timestamp"]; ok {
		t.Errorf("registered call has start_timestamp")
	}
	if info, ok := s.Call(id); !ok || info.Status != "registered" {
		t.Errorf("Call(%s)=%+v, %v; want a registered call", id, info, ok)
	}

	// Without metadata the keys are omitted, as the provider omits them.
	_, created = createCall(t, api, `{"from_number":"+15550100009","to_number":"+15550177777"}`)
	bare := decodeObject(t, created)
	for _, k := range []string{"metadata", "retell_llm_dynamic_variables"} {
		if _, ok := bare[k]; ok {
			t.Errorf("call created without %s has it", k)
		}
	}
}

func TestCreatedCallRuns(t *testing.T) {
	rec := newRecorder(t, nil)
	s, api := newSim(t, sim.Config{WebhookURL: rec.srv.URL, TotalCalls: 1, Speed: 300, AnalysisDelay: time.Second})
	id, _ := createCall(t, api, createBody)
	if err := startRun(t, s).wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	seq := events(rec.delivered()[id])
	if want := "call_started call_ended call_analyzed"; seq != want {
		t.Errorf("webhooks=%q, want %q", seq, want)
	}
	hooks := rec.delivered()[id]
	if len(hooks) > 0 && hooks[0].call["from_number"] != "+15550100001" {
		t.Errorf("call_started from_number=%v, want the request's", hooks[0].call["from_number"])
	}
}

func TestStopCall(t *testing.T) {
	clk := newClock()
	s, api := newSim(t, sim.Config{Now: clk.Now, Seed: 2})
	id, _ := createCall(t, api, createBody)
	startRun(t, s)

	clk.Advance(15 * time.Second)
	waitStatus(t, s, id, "ongoing")
	status, body := do(t, api, http.MethodPost, "/v2/stop-call/"+id, testKey, "")
	if status != http.StatusNoContent {
		t.Fatalf("stop-call status=%d, want 204", status)
	}
	if len(body) != 0 {
		t.Errorf("stop-call body=%q, want none", body)
	}

	clk.Advance(2 * time.Second)
	info := waitStatus(t, s, id, "ended")
	if info.DisconnectionReason != "manual_stopped" {
		t.Errorf("disconnection_reason=%q, want manual_stopped", info.DisconnectionReason)
	}
	got, _ := getCall(t, api, id)
	if got["disconnection_reason"] != "manual_stopped" {
		t.Errorf("get-call disconnection_reason=%v, want manual_stopped", got["disconnection_reason"])
	}
	duration, _ := got["duration_ms"].(json.Number).Int64()
	if duration > 17_000 {
		t.Errorf("duration_ms=%d, want the call cut within 17 s", duration)
	}

	status, body = do(t, api, http.MethodPost, "/v2/stop-call/"+id, testKey, "")
	if status != http.StatusUnprocessableEntity {
		t.Errorf("second stop-call status=%d, want 422", status)
	}
	checkErrorBody(t, body)
}

func TestStopCallUnknown(t *testing.T) {
	_, api := newSim(t, sim.Config{})
	status, body := do(t, api, http.MethodPost, "/v2/stop-call/call_00000000000000000000000000a", testKey, "")
	if status != http.StatusUnprocessableEntity {
		t.Errorf("status=%d, want 422", status)
	}
	checkErrorBody(t, body)
}

// listPage is a decoded list-calls page.
type listPage struct {
	Items         []map[string]any `json:"items"`
	HasMore       bool             `json:"has_more"`
	PaginationKey string           `json:"pagination_key"`
}

func listCalls(t *testing.T, api *httptest.Server, body string) listPage {
	t.Helper()
	status, out := do(t, api, http.MethodPost, "/v3/list-calls", testKey, body)
	if status != http.StatusOK {
		t.Fatalf("list-calls %s status=%d, want 200; body %s", body, status, out)
	}
	var page listPage
	if err := json.Unmarshal(out, &page); err != nil {
		t.Fatalf("decoding page: %v", err)
	}
	return page
}

func TestListCallsPagination(t *testing.T) {
	s, api := newSim(t, sim.Config{Calls: 4, TotalCalls: 11, Speed: 400, NotConnectedRatio: 0.3, AnalysisDelay: time.Second, Seed: 8})
	if err := startRun(t, s).wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// The page envelope has the fixture's keys.
	_, first := do(t, api, http.MethodPost, "/v3/list-calls", testKey, `{"limit":3}`)
	envelope := slices.Sorted(maps.Keys(decodeObject(t, first)))
	fixtureEnvelope := slices.Sorted(maps.Keys(fixture(t, "list_calls_v3_200.json").(map[string]any)))
	if diff := cmp.Diff(fixtureEnvelope, envelope); diff != "" {
		t.Errorf("page keys differ from the fixture (-fixture +sim):\n%s", diff)
	}

	var seen []string
	var keys []int64
	key := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatalf("more than 10 pages for 11 calls")
		}
		body := `{"limit":3}`
		if key != "" {
			body = fmt.Sprintf(`{"limit":3,"pagination_key":%q}`, key)
		}
		page := listCalls(t, api, body)
		if len(page.Items) > 3 {
			t.Fatalf("page has %d items, want at most 3", len(page.Items))
		}
		for _, item := range page.Items {
			seen = append(seen, item["call_id"].(string))
			for _, k := range transcriptKeys {
				if _, ok := item[k]; ok {
					t.Errorf("list item %s has %q", item["call_id"], k)
				}
			}
			if ts, ok := item["start_timestamp"].(float64); ok {
				keys = append(keys, int64(ts))
			}
		}
		if page.HasMore != (page.PaginationKey != "") {
			t.Fatalf("has_more=%v with pagination_key %q", page.HasMore, page.PaginationKey)
		}
		if !page.HasMore {
			break
		}
		key = page.PaginationKey
	}

	var want []string
	for _, c := range s.Calls() {
		want = append(want, c.ID)
	}
	slices.Sort(want)
	got := slices.Clone(seen)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("listed calls differ from Calls() (-want +got):\n%s", diff)
	}
	if !slices.IsSortedFunc(keys, func(a, b int64) int { return int(b - a) }) {
		t.Errorf("start_timestamps %v, want descending", keys)
	}
}

func TestListCallsFilter(t *testing.T) {
	s, api := newSim(t, sim.Config{Calls: 4, TotalCalls: 8, Speed: 400, NotConnectedRatio: 0.4, AnalysisDelay: time.Second, Seed: 8})
	if err := startRun(t, s).wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	wantCount := 0
	for _, c := range s.Calls() {
		if c.Status == "not_connected" {
			wantCount++
		}
	}
	page := listCalls(t, api, `{"filter_criteria":{"call_status":{"type":"enum","op":"in","value":["not_connected"]}},"limit":1000}`)
	if wantCount == 0 {
		t.Fatalf("no not-connected call among 8, want some (change the seed)")
	}
	if len(page.Items) != wantCount {
		t.Errorf("filtered items=%d, want %d not connected calls", len(page.Items), wantCount)
	}
	for _, item := range page.Items {
		if item["call_status"] != "not_connected" {
			t.Errorf("item %s call_status=%v, want not_connected", item["call_id"], item["call_status"])
		}
	}
}

func TestListCallsInvalid(t *testing.T) {
	_, api := newSim(t, sim.Config{})
	cases := []struct{ name, body string }{
		{"limit zero", `{"limit":0}`},
		{"limit too large", `{"limit":1001}`},
		{"bad sort order", `{"sort_order":"random"}`},
		{"skip and key", `{"skip":1,"pagination_key":"pk_00000000000000000000000000000000"}`},
		{"bad key", `{"pagination_key":"call_123"}`},
		{"registered status", `{"filter_criteria":{"call_status":{"type":"enum","op":"in","value":["registered"]}}}`},
		{"wrong op", `{"filter_criteria":{"call_status":{"type":"enum","op":"eq","value":["ended"]}}}`},
		{"unsupported field", `{"filter_criteria":{"duration_ms":{"type":"number","op":"gt","value":1}}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := do(t, api, http.MethodPost, "/v3/list-calls", testKey, c.body)
			if status != http.StatusBadRequest {
				t.Errorf("status=%d, want 400; body %s", status, body)
			}
			checkErrorBody(t, body)
		})
	}
}

func TestRetainedCallsBound(t *testing.T) {
	s, api := newSim(t, sim.Config{Calls: 2, TotalCalls: 6, Speed: 400, AnalysisDelay: time.Second, MaxRetainedCalls: 2, Seed: 3})
	first := s.StartCall()
	if err := startRun(t, s).wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	if n := len(s.Calls()); n != 2 {
		t.Errorf("Calls()=%d, want 2 retained", n)
	}
	if n := s.Stats().RetainedCalls; n != 2 {
		t.Errorf("RetainedCalls=%d, want 2", n)
	}
	if _, ok := s.Call(first); ok {
		t.Errorf("Call(%s) found, want the oldest call evicted", first)
	}
	status, _ := do(t, api, http.MethodGet, "/v2/get-call/"+first, testKey, "")
	if status != http.StatusUnprocessableEntity {
		t.Errorf("get-call of an evicted call status=%d, want 422", status)
	}
}

func TestDeterministicContent(t *testing.T) {
	transcripts := func() []string {
		s, _ := newSim(t, sim.Config{Calls: 3, TotalCalls: 3, Speed: 500, AnalysisDelay: time.Second, Seed: 77})
		if err := startRun(t, s).wait(t); err != nil {
			t.Fatalf("Run: %v", err)
		}
		var out []string
		for _, c := range s.Calls() {
			out = append(out, c.FinalTranscript)
		}
		return out
	}
	first, second := transcripts(), transcripts()
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("same seed gave different transcripts (-first +second):\n%s", diff)
	}
}

func TestNewInvalid(t *testing.T) {
	cases := []struct {
		name string
		cfg  sim.Config
	}{
		{"no key", sim.Config{}},
		{"relative webhook URL", sim.Config{APIKey: "k", WebhookURL: "/hooks"}},
		{"negative speed", sim.Config{APIKey: "k", Speed: -1}},
		{"ratio above 1", sim.Config{APIKey: "k", NotConnectedRatio: 1.5}},
		{"negative length", sim.Config{APIKey: "k", CallLength: -time.Second}},
		{"negative 429 log", sim.Config{APIKey: "k", RateLimitLog: -1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := sim.New(c.cfg); err == nil {
				t.Errorf("New succeeded, want an error")
			}
		})
	}
}
