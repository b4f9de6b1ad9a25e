package app_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/openapi"
	"github.com/callcat/callcat/internal/sim"
)

// apiResponse is one captured response of the calls API.
type apiResponse struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, url, idempotencyKey, body string) apiResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return apiResponse{}
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("%s %s: read body: %v", method, url, err)
	}
	return apiResponse{status: resp.StatusCode, header: resp.Header, body: out}
}

// placedCall is the part of the call view the tests read.
type placedCall struct {
	CallID     string          `json:"call_id"`
	Status     string          `json:"status"`
	Direction  *string         `json:"direction"`
	FromNumber *string         `json:"from_number"`
	ToNumber   *string         `json:"to_number"`
	AgentID    *string         `json:"agent_id"`
	Metadata   json.RawMessage `json:"metadata"`
}

// checkDocumented validates a captured JSON response against the schema the
// OpenAPI document gives for its operation and status.
func checkDocumented(t *testing.T, method, path string, r apiResponse) {
	t.Helper()
	spec, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.ValidateResponse(method, path, r.status, r.body); err != nil {
		t.Fatalf("response does not match the OpenAPI document: %v", err)
	}
}

func decodeCall(t *testing.T, r apiResponse) placedCall {
	t.Helper()
	var c placedCall
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatalf("decode call: %v; body %s", err, r.body)
	}
	return c
}

func startCallSimulation(t *testing.T) *simulation {
	t.Helper()
	return startSimulation(t, sim.Config{
		TotalCalls: 1,
		CallLength: 6 * time.Second,
		Speed:      20,
		Seed:       3,
	}, app.Config{})
}

const placeBody = `{"from_number":"+15550100001","to_number":"+15550100002","agent_id":"agent_override","metadata":{"order":42,"tags":["a"]},"dynamic_variables":{"name":"Ada"}}`

func TestPlaceCall(t *testing.T) {
	sm := startCallSimulation(t)
	base := "http://" + sm.svc.Addr

	resp := do(t, http.MethodPost, base+"/v1/calls", "", placeBody)
	if resp.status != http.StatusCreated {
		t.Fatalf("status=%d, want 201; body %s", resp.status, resp.body)
	}
	checkDocumented(t, http.MethodPost, "/v1/calls", resp)
	created := decodeCall(t, resp)
	if created.Status != "registered" {
		t.Fatalf("status=%q, want registered", created.Status)
	}
	if created.ToNumber == nil || *created.ToNumber != "+15550100002" {
		t.Fatalf("to_number=%v, want +15550100002", created.ToNumber)
	}
	if created.AgentID == nil || *created.AgentID != "agent_override" {
		t.Fatalf("agent_id=%v, want agent_override", created.AgentID)
	}
	if !sm.svc.Tracker.IsTracked(created.CallID) {
		t.Fatalf("call %s is not tracked", created.CallID)
	}

	// The response has the shape of GET /v1/calls/{id}.
	got := do(t, http.MethodGet, base+"/v1/calls/"+created.CallID, "", "")
	if got.status != http.StatusOK {
		t.Fatalf("get status=%d, want 200", got.status)
	}
	checkDocumented(t, http.MethodGet, "/v1/calls/{id}", got)
	if !bytes.Equal(bytes.TrimSpace(got.body), bytes.TrimSpace(resp.body)) {
		t.Fatalf("get body=%s, want the create body %s", got.body, resp.body)
	}

	sm.run(t, time.Minute)
	waitFor(t, 15*time.Second, "the placed call to end", func() bool {
		var c placedCall
		getJSON(t, base+"/v1/calls/"+created.CallID, &c)
		return c.Status == "ended"
	})

	ended := do(t, http.MethodGet, base+"/v1/calls/"+created.CallID, "", "")
	checkDocumented(t, http.MethodGet, "/v1/calls/{id}", ended)
	list := do(t, http.MethodGet, base+"/v1/calls", "", "")
	checkDocumented(t, http.MethodGet, "/v1/calls", list)
	transcript := do(t, http.MethodGet, base+"/v1/calls/"+created.CallID+"/transcript", "", "")
	checkDocumented(t, http.MethodGet, "/v1/calls/{id}/transcript", transcript)
	if !strings.Contains(string(transcript.body), `"words":[{`) {
		t.Fatalf("transcript has no timed words: %.200s", transcript.body)
	}

	for _, tc := range []struct{ format, contentType, prefix string }{
		{"vtt", "text/vtt; charset=utf-8", "WEBVTT\n"},
		{"srt", "application/x-subrip", "1\n"},
	} {
		r := do(t, http.MethodGet, base+"/v1/calls/"+created.CallID+"/transcript?format="+tc.format, "", "")
		if r.status != http.StatusOK {
			t.Fatalf("%s: status=%d, want 200; body %s", tc.format, r.status, r.body)
		}
		if got := r.header.Get("Content-Type"); got != tc.contentType {
			t.Fatalf("%s: content type=%q, want %q", tc.format, got, tc.contentType)
		}
		if !strings.HasPrefix(string(r.body), tc.prefix) {
			t.Fatalf("%s: body starts %.40q, want %q", tc.format, r.body, tc.prefix)
		}
		if !strings.Contains(string(r.body), " --> ") {
			t.Fatalf("%s: body has no cue: %s", tc.format, r.body)
		}
	}
}

func TestPlaceCallInvalid(t *testing.T) {
	sm := startCallSimulation(t)
	base := "http://" + sm.svc.Addr

	cases := []struct {
		name string
		key  string
		body string
		want string // a word of the message
	}{
		{"NotJSON", "", `{`, "JSON"},
		{"UnknownField", "", `{"from_number":"+15550100001","to_number":"+15550100002","agent":"x"}`, "agent"},
		{"FromMissing", "", `{"to_number":"+15550100002"}`, "from_number"},
		{"FromNotE164", "", `{"from_number":"5550100001","to_number":"+15550100002"}`, "from_number"},
		{"ToMissing", "", `{"from_number":"+15550100001"}`, "to_number"},
		{"ToNotE164", "", `{"from_number":"+15550100001","to_number":"+0123"}`, "to_number"},
		{"ToTooLong", "", `{"from_number":"+15550100001","to_number":"+1234567890123456"}`, "to_number"},
		{"AgentEmpty", "", `{"from_number":"+15550100001","to_number":"+15550100002","agent_id":""}`, "agent_id"},
		{"MetadataArray", "", `{"from_number":"+15550100001","to_number":"+15550100002","metadata":[1]}`, "metadata"},
		{"MetadataLarge", "", `{"from_number":"+15550100001","to_number":"+15550100002","metadata":{"x":"` + strings.Repeat("a", 51<<10) + `"}}`, "metadata"},
		{"VariablesNotStrings", "", `{"from_number":"+15550100001","to_number":"+15550100002","dynamic_variables":{"n":1}}`, "dynamic_variables"},
		{"KeyInvalid", "bad key!", placeBody, "Idempotency-Key"},
		{"KeyTooLong", strings.Repeat("k", 256), placeBody, "Idempotency-Key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, http.MethodPost, base+"/v1/calls", tc.key, tc.body)
			if resp.status != http.StatusBadRequest {
				t.Fatalf("status=%d, want 400; body %s", resp.status, resp.body)
			}
			if !strings.Contains(string(resp.body), tc.want) {
				t.Fatalf("body=%s, want a message naming %s", resp.body, tc.want)
			}
			checkDocumented(t, http.MethodPost, "/v1/calls", resp)
		})
	}
	if n := sm.sim.Stats().CallsStarted; n != 0 {
		t.Fatalf("calls started=%d, want 0", n)
	}
}

func TestPlaceCallIdempotent(t *testing.T) {
	sm := startCallSimulation(t)
	url := "http://" + sm.svc.Addr + "/v1/calls"

	const n = 50
	responses := make([]apiResponse, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			responses[i] = do(t, http.MethodPost, url, "order-42_retry", placeBody)
		})
	}
	wg.Wait()

	if got := sm.sim.Stats().CallsStarted; got != 1 {
		t.Fatalf("calls started=%d, want 1", got)
	}
	for i, r := range responses {
		if r.status != http.StatusCreated {
			t.Fatalf("response %d: status=%d, want 201; body %s", i, r.status, r.body)
		}
		if !bytes.Equal(r.body, responses[0].body) {
			t.Fatalf("response %d: body=%s, want %s", i, r.body, responses[0].body)
		}
	}

	// The same body with other spacing and key order is the same request.
	reordered := `{"to_number":"+15550100002", "from_number":"+15550100001","dynamic_variables":{"name":"Ada"},"metadata":{"tags":["a"],"order":42},"agent_id":"agent_override"}`
	again := do(t, http.MethodPost, url, "order-42_retry", reordered)
	if again.status != http.StatusCreated {
		t.Fatalf("reordered: status=%d, want 201; body %s", again.status, again.body)
	}
	if again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("reordered: Idempotent-Replayed=%q, want true", again.header.Get("Idempotent-Replayed"))
	}

	other := do(t, http.MethodPost, url, "order-42_retry", `{"from_number":"+15550100001","to_number":"+15550100003"}`)
	if other.status != http.StatusConflict {
		t.Fatalf("other body: status=%d, want 409; body %s", other.status, other.body)
	}
	checkDocumented(t, http.MethodPost, "/v1/calls", other)
	if got := sm.sim.Stats().CallsStarted; got != 1 {
		t.Fatalf("calls started after retries=%d, want 1", got)
	}
}

func TestStopCall(t *testing.T) {
	sm := startCallSimulation(t)
	base := "http://" + sm.svc.Addr

	resp := do(t, http.MethodPost, base+"/v1/calls", "", placeBody)
	if resp.status != http.StatusCreated {
		t.Fatalf("place status=%d, want 201; body %s", resp.status, resp.body)
	}
	id := decodeCall(t, resp).CallID

	stop := do(t, http.MethodPost, base+"/v1/calls/"+id+"/stop", "", "")
	if stop.status != http.StatusAccepted {
		t.Fatalf("stop status=%d, want 202; body %s", stop.status, stop.body)
	}
	checkDocumented(t, http.MethodPost, "/v1/calls/{id}/stop", stop)

	sm.run(t, time.Minute)
	waitFor(t, 15*time.Second, "the stopped call to end", func() bool {
		var c placedCall
		getJSON(t, base+"/v1/calls/"+id, &c)
		return c.Status == "ended" || c.Status == "not_connected"
	})

	again := do(t, http.MethodPost, base+"/v1/calls/"+id+"/stop", "", "")
	if again.status != http.StatusNoContent {
		t.Fatalf("stop of ended call: status=%d, want 204; body %s", again.status, again.body)
	}

	unknown := do(t, http.MethodPost, base+"/v1/calls/call_unknown/stop", "", "")
	if unknown.status != http.StatusNotFound {
		t.Fatalf("stop of unknown call: status=%d, want 404", unknown.status)
	}
	checkDocumented(t, http.MethodPost, "/v1/calls/{id}/stop", unknown)
}

func TestListCallsFilters(t *testing.T) {
	sm := startCallSimulation(t)
	base := "http://" + sm.svc.Addr

	ids := make(map[string]string) // to_number → call id
	for i, body := range []string{
		`{"from_number":"+15550100001","to_number":"+15550100011"}`,
		`{"from_number":"+15550100001","to_number":"+15550100012","agent_id":"agent_filter"}`,
		`{"from_number":"+15550100002","to_number":"+15550100013"}`,
	} {
		r := do(t, http.MethodPost, base+"/v1/calls", "", body)
		if r.status != http.StatusCreated {
			t.Fatalf("place %d: status=%d, want 201; body %s", i, r.status, r.body)
		}
		c := decodeCall(t, r)
		ids[*c.ToNumber] = c.CallID
	}

	cases := []struct {
		query string
		want  []string
	}{
		{"number=%2B15550100012", []string{ids["+15550100012"]}},
		{"number=%2B15550100001", []string{ids["+15550100012"], ids["+15550100011"]}},
		{"agent_id=agent_filter", []string{ids["+15550100012"]}},
		{"direction=outbound&status=live", []string{ids["+15550100013"], ids["+15550100012"], ids["+15550100011"]}},
		{"direction=inbound", nil},
		{"from=2020-01-01T00:00:00Z", nil}, // registered calls have not started
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			var page struct {
				Calls []placedCall `json:"calls"`
			}
			getJSON(t, base+"/v1/calls?"+tc.query, &page)
			var got []string
			for _, c := range page.Calls {
				got = append(got, c.CallID)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("ids (-want +got):\n%s", diff)
			}
		})
	}

	for _, query := range []string{"direction=sideways", "number=15550100001", "from=yesterday", "from=2000&to=1000", "agent_id=%00"} {
		t.Run("Invalid/"+query, func(t *testing.T) {
			r := do(t, http.MethodGet, base+"/v1/calls?"+query, "", "")
			if r.status != http.StatusBadRequest {
				t.Fatalf("status=%d, want 400; body %s", r.status, r.body)
			}
		})
	}
}

// TestRetention runs the service with retention so short that an ended call
// and its webhook delivery record are pruned in the next round.
func TestRetention(t *testing.T) {
	sm := startSimulation(t, sim.Config{}, app.Config{Retention: app.RetentionConfig{
		Calls:      time.Millisecond,
		Deliveries: time.Millisecond,
		Interval:   20 * time.Millisecond,
	}})
	base := "http://" + sm.svc.Addr

	body := readFixture(t, "outbound/webhook_6_call_ended.json")
	if code := postWebhook(t, base, body, fixtureKey); code != http.StatusNoContent {
		t.Fatalf("webhook status=%d, want 204", code)
	}
	var ended struct {
		Call struct {
			CallID string `json:"call_id"`
		} `json:"call"`
	}
	if err := json.Unmarshal(body, &ended); err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(body)

	waitFor(t, 10*time.Second, "the ended call to be pruned", func() bool {
		return do(t, http.MethodGet, base+"/v1/calls/"+ended.Call.CallID, "", "").status == http.StatusNotFound
	})
	waitFor(t, 10*time.Second, "the delivery record to be pruned", func() bool {
		has, err := sm.svc.Store.HasDelivery(t.Context(), hex.EncodeToString(digest[:]))
		if err != nil {
			t.Fatal(err)
		}
		return !has
	})
	if got := metricValue(t, sm.svc, "callcat_pruned_records_total", map[string]string{"kind": "calls"}); got != 1 {
		t.Fatalf("pruned calls=%v, want 1", got)
	}
}

// TestPlaceCallProviderErrors checks how each provider failure of
// create-phone-call is answered, and that the API key never appears.
func TestPlaceCallProviderErrors(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		want       int
		wantText   string
		retryAfter string
	}{
		{"Invalid", http.StatusUnprocessableEntity, http.StatusUnprocessableEntity, "number not owned", ""},
		{"BadRequest", http.StatusBadRequest, http.StatusUnprocessableEntity, "number not owned", ""},
		{"Unauthorized", http.StatusUnauthorized, http.StatusBadGateway, "provider rejected callcat's API key", ""},
		{"RateLimited", http.StatusTooManyRequests, http.StatusServiceUnavailable, "number not owned", "7"},
		{"ServerError", http.StatusInternalServerError, http.StatusBadGateway, "provider answered 500", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v2/create-phone-call" {
					http.NotFound(w, r)
					return
				}
				if tc.status == http.StatusTooManyRequests {
					w.Header().Set("Retry-After", "7")
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				// The provider echoing the key must not leak it.
				fmt.Fprintf(w, `{"status":"error","message":"number not owned (key %s)"}`, fixtureKey)
			}))
			t.Cleanup(provider.Close)
			svc := startService(t, app.Config{RetellBaseURL: provider.URL})

			r := do(t, http.MethodPost, svc.URL()+"/v1/calls", "key-"+tc.name, placeBody)
			if r.status != tc.want {
				t.Fatalf("status=%d, want %d; body %s", r.status, tc.want, r.body)
			}
			if !strings.Contains(string(r.body), tc.wantText) {
				t.Fatalf("body=%s, want it to contain %q", r.body, tc.wantText)
			}
			if strings.Contains(string(r.body), fixtureKey) {
				t.Fatalf("body=%s contains the API key", r.body)
			}
			if got := r.header.Get("Retry-After"); got != tc.retryAfter {
				t.Fatalf("Retry-After=%q, want %q", got, tc.retryAfter)
			}
			checkDocumented(t, http.MethodPost, "/v1/calls", r)

			// A failure is not remembered: the same key tries again.
			again := do(t, http.MethodPost, svc.URL()+"/v1/calls", "key-"+tc.name, placeBody)
			if again.header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("retry after a failure was replayed")
			}
		})
	}
}

func TestParseRetention(t *testing.T) {
	valid := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"90d", 90 * 24 * time.Hour},
		{"0d", 0},
		{"36h", 36 * time.Hour},
		{"90m", 90 * time.Minute},
	}
	for _, tc := range valid {
		got, err := app.ParseRetention(tc.in)
		if err != nil {
			t.Fatalf("ParseRetention(%q): %v", tc.in, err)
		}
		if got != tc.want {
			t.Fatalf("ParseRetention(%q)=%v, want %v", tc.in, got, tc.want)
		}
	}
	for _, in := range []string{"-1d", "1.5d", "d", "90", "-3h", "ninety", "999999999d"} {
		if _, err := app.ParseRetention(in); err == nil {
			t.Fatalf("ParseRetention(%q) err=nil, want an error", in)
		}
	}
}
