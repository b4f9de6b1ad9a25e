package app_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/app"
)

// fixtureProvider serves get-call from fixture files: the test sets which
// body each call returns at each step, as the provider's state moves on.
type fixtureProvider struct {
	t      *testing.T
	mu     sync.Mutex
	bodies map[string][]byte // call_id → get-call body
	polls  map[string]int
}

func newFixtureProvider(t *testing.T) (*fixtureProvider, *httptest.Server) {
	p := &fixtureProvider{t: t, bodies: make(map[string][]byte), polls: make(map[string]int)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+fixtureKey {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write(readFixture(t, "http_errors/401.json"))
			return
		}
		id, ok := strings.CutPrefix(r.URL.Path, "/v2/get-call/")
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		p.mu.Lock()
		body, known := p.bodies[id]
		p.polls[id]++
		p.mu.Unlock()
		if !known {
			w.WriteHeader(http.StatusUnprocessableEntity)
			w.Write(readFixture(t, "http_errors/422.json"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return p, srv
}

// serve makes get-call of callID return the named fixture.
func (p *fixtureProvider) serve(callID, fixture string) {
	body := readFixture(p.t, fixture)
	p.mu.Lock()
	p.bodies[callID] = body
	p.mu.Unlock()
}

func (p *fixtureProvider) pollCount(callID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.polls[callID]
}

// expectation is one scenario of expected.json, with the fields every
// scenario shares.
type expectation struct {
	CallID              string  `json:"call_id"`
	FinalStatus         string  `json:"final_status"`
	DisconnectionReason string  `json:"disconnection_reason"`
	FinalUtteranceCount int     `json:"final_utterance_count"`
	FinalTranscriptText string  `json:"final_transcript_text"`
	StartTimestamp      *int64  `json:"start_timestamp"`
	EndTimestamp        *int64  `json:"end_timestamp"`
	DurationMS          *int64  `json:"duration_ms"`
	CallType            string  `json:"call_type"`
	Direction           string  `json:"direction"`
	CallSuccessful      *bool   `json:"call_successful"`
	UserSentiment       *string `json:"user_sentiment"`

	UtterancesAfterSnapshot map[string]int `json:"utterances_after_snapshot"`
}

func loadExpectations(t *testing.T) map[string]expectation {
	t.Helper()
	var all map[string]expectation
	if err := json.Unmarshal(readFixture(t, "expected.json"), &all); err != nil {
		t.Fatalf("decode expected.json: %v", err)
	}
	// The outbound scenario names its status "ended" only implicitly.
	out := all["outbound"]
	out.FinalStatus = "ended"
	all["outbound"] = out
	return all
}

// checkFinal compares the stored call and transcript with a scenario's
// expected values once the call left tracking.
func checkFinal(t *testing.T, svc *app.Service, want expectation) {
	t.Helper()

	waitFor(t, 10*time.Second, "call to leave tracking", func() bool {
		return !svc.Tracker.IsTracked(want.CallID)
	})

	var call callJSON
	getJSON(t, svc.URL()+"/v1/calls/"+want.CallID, &call)
	if call.Status != want.FinalStatus {
		t.Errorf("status=%q, want %q", call.Status, want.FinalStatus)
	}
	if got := deref(call.DisconnectionReason); got != want.DisconnectionReason {
		t.Errorf("disconnection_reason=%q, want %q", got, want.DisconnectionReason)
	}
	if call.UtteranceCount != want.FinalUtteranceCount {
		t.Errorf("utterance_count=%d, want %d", call.UtteranceCount, want.FinalUtteranceCount)
	}
	checkInt(t, "start_timestamp", call.StartTimestamp, want.StartTimestamp)
	checkInt(t, "end_timestamp", call.EndTimestamp, want.EndTimestamp)
	checkInt(t, "duration_ms", call.DurationMS, want.DurationMS)
	if want.CallType != "" && deref(call.CallType) != want.CallType {
		t.Errorf("call_type=%q, want %q", deref(call.CallType), want.CallType)
	}
	if want.Direction != "" && deref(call.Direction) != want.Direction {
		t.Errorf("direction=%q, want %q", deref(call.Direction), want.Direction)
	}

	if want.CallSuccessful != nil || want.UserSentiment != nil {
		var analysis struct {
			CallSuccessful *bool   `json:"call_successful"`
			UserSentiment  *string `json:"user_sentiment"`
		}
		if err := json.Unmarshal(call.CallAnalysis, &analysis); err != nil {
			t.Fatalf("call_analysis=%s: %v", call.CallAnalysis, err)
		}
		if want.CallSuccessful != nil && (analysis.CallSuccessful == nil || *analysis.CallSuccessful != *want.CallSuccessful) {
			t.Errorf("call_successful=%v, want %v", analysis.CallSuccessful, *want.CallSuccessful)
		}
		if want.UserSentiment != nil && deref(analysis.UserSentiment) != *want.UserSentiment {
			t.Errorf("user_sentiment=%q, want %q", deref(analysis.UserSentiment), *want.UserSentiment)
		}
	}

	text := getText(t, svc.URL()+"/v1/calls/"+want.CallID+"/transcript?format=text")
	if text != want.FinalTranscriptText {
		t.Errorf("transcript text=%q\nwant %q", text, want.FinalTranscriptText)
	}

	var tr transcriptJSON
	getJSON(t, svc.URL()+"/v1/calls/"+want.CallID+"/transcript", &tr)
	if len(tr.Utterances) != want.FinalUtteranceCount {
		t.Errorf("transcript utterances=%d, want %d", len(tr.Utterances), want.FinalUtteranceCount)
	}
	for i, u := range tr.Utterances {
		if u.Index != i {
			t.Errorf("utterance %d index=%d", i, u.Index)
		}
		var joined strings.Builder
		for _, w := range u.Words {
			joined.WriteString(w.Word)
		}
		if joined.String() != u.Content {
			t.Errorf("utterance %d words join=%q, want content %q", i, joined.String(), u.Content)
		}
	}

	// The stream of an ended call replays every event and closes.
	f := &transcriptFollower{}
	if err := follow(t.Context(), svc.URL(), want.CallID, f); err != nil {
		t.Fatalf("follow ended call: %v", err)
	}
	if !f.ended {
		t.Errorf("stream of ended call closed without an ended event")
	}
	if got := f.text(); got != want.FinalTranscriptText {
		t.Errorf("streamed transcript=%q\nwant %q", got, want.FinalTranscriptText)
	}
}

func checkInt(t *testing.T, name string, got, want *int64) {
	t.Helper()
	switch {
	case want == nil && got != nil:
		t.Errorf("%s=%d, want null", name, *got)
	case want != nil && got == nil:
		t.Errorf("%s=null, want %d", name, *want)
	case want != nil && *got != *want:
		t.Errorf("%s=%d, want %d", name, *got, *want)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// outboundWebhooks are the outbound call's webhooks in the provider's order.
var outboundWebhooks = []string{
	"outbound/webhook_1_call_started.json",
	"outbound/webhook_2_transcript_updated.json",
	"outbound/webhook_3_transcript_updated.json",
	"outbound/webhook_4_transcript_updated.json",
	"outbound/webhook_5_transcript_updated_final.json",
	"outbound/webhook_6_call_ended.json",
	"outbound/webhook_7_call_analyzed.json",
}

func TestFixtureOutboundInOrder(t *testing.T) {
	want := loadExpectations(t)["outbound"]
	provider, providerSrv := newFixtureProvider(t)
	provider.serve(want.CallID, "outbound/get_call_2_ongoing_no_transcript.json")
	svc := startService(t, app.Config{RetellBaseURL: providerSrv.URL})

	counts := map[string]int{
		"outbound/webhook_2_transcript_updated.json":       want.UtterancesAfterSnapshot["webhook_2_transcript_updated"],
		"outbound/webhook_3_transcript_updated.json":       want.UtterancesAfterSnapshot["webhook_3_transcript_updated"],
		"outbound/webhook_4_transcript_updated.json":       want.UtterancesAfterSnapshot["webhook_4_transcript_updated"],
		"outbound/webhook_5_transcript_updated_final.json": want.UtterancesAfterSnapshot["webhook_5_transcript_updated_final"],
	}

	for _, name := range outboundWebhooks {
		if name == "outbound/webhook_6_call_ended.json" {
			provider.serve(want.CallID, "outbound/get_call_5_ended.json")
		}
		if name == "outbound/webhook_7_call_analyzed.json" {
			provider.serve(want.CallID, "outbound/get_call_6_ended_analyzed.json")
		}

		if code := postWebhook(t, svc.URL(), readFixture(t, name), fixtureKey); code != http.StatusNoContent {
			t.Fatalf("%s: status %d, want 204", name, code)
		}

		var call callJSON
		getJSON(t, svc.URL()+"/v1/calls/"+want.CallID, &call)
		if n, ok := counts[name]; ok && call.UtteranceCount != n {
			t.Fatalf("after %s: utterance_count=%d, want %d", name, call.UtteranceCount, n)
		}
		if name == "outbound/webhook_5_transcript_updated_final.json" && call.Status != "ongoing" {
			t.Fatalf("after the final transcript_updated: status=%q, want ongoing until call_ended", call.Status)
		}
	}

	checkFinal(t, svc, want)
}

func TestFixtureOutboundDisordered(t *testing.T) {
	expect := loadExpectations(t)["outbound"]
	w := outboundWebhooks

	cases := []struct {
		name  string
		order []string
	}{
		{"Duplicates", []string{w[0], w[0], w[1], w[2], w[1], w[3], w[3], w[4], w[5], w[4], w[5], w[6], w[6]}},
		{"EndedBeforeFinalUpdate", []string{w[0], w[1], w[2], w[3], w[5], w[4], w[6]}},
		{"StaleUpdateAfterLater", []string{w[0], w[2], w[3], w[1], w[4], w[5], w[6]}},
		{"StartedAfterEnded", []string{w[1], w[2], w[3], w[4], w[5], w[0], w[6]}},
		{"StartedMissing", []string{w[1], w[2], w[3], w[4], w[5], w[6]}},
		{"AnalyzedFirst", []string{w[6], w[5], w[4], w[3], w[2], w[1], w[0]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			provider, providerSrv := newFixtureProvider(t)
			provider.serve(expect.CallID, "outbound/get_call_2_ongoing_no_transcript.json")
			svc := startService(t, app.Config{RetellBaseURL: providerSrv.URL})

			for i, name := range tc.order {
				if name == w[5] || name == w[6] {
					provider.serve(expect.CallID, "outbound/get_call_6_ended_analyzed.json")
				}
				if code := postWebhook(t, svc.URL(), readFixture(t, name), fixtureKey); code != http.StatusNoContent {
					t.Fatalf("delivery %d (%s): status %d, want 204", i, name, code)
				}
			}
			checkFinal(t, svc, expect)
		})
	}
}

func TestFixtureOtherCalls(t *testing.T) {
	all := loadExpectations(t)
	cases := []struct {
		scenario string
		webhooks []string
		getCall  string
	}{
		{"web_call", []string{"web_call/webhook_call_ended.json"}, "web_call/get_call_ended_analyzed.json"},
		{"not_connected", []string{"not_connected/webhook_call_ended.json", "not_connected/webhook_call_analyzed.json"}, "not_connected/get_call_not_connected.json"},
		{"error", []string{"error/webhook_call_started.json", "error/webhook_call_ended.json"}, "error/get_call_error.json"},
	}
	for _, tc := range cases {
		t.Run(tc.scenario, func(t *testing.T) {
			want := all[tc.scenario]
			if want.FinalStatus == "" {
				want.FinalStatus = "ended"
			}
			provider, providerSrv := newFixtureProvider(t)
			provider.serve(want.CallID, tc.getCall)
			svc := startService(t, app.Config{RetellBaseURL: providerSrv.URL})

			for _, name := range tc.webhooks {
				if code := postWebhook(t, svc.URL(), readFixture(t, name), fixtureKey); code != http.StatusNoContent {
					t.Fatalf("%s: status %d, want 204", name, code)
				}
			}
			checkFinal(t, svc, want)
		})
	}
}

// TestFixturePollOnly tracks a call from call_started and then learns
// everything from get-call: the hypothetical live transcripts, the cut
// utterance replaced in place, and the ended call.
func TestFixturePollOnly(t *testing.T) {
	want := loadExpectations(t)["outbound"]
	provider, providerSrv := newFixtureProvider(t)
	provider.serve(want.CallID, "outbound/get_call_2_ongoing_no_transcript.json")
	svc := startService(t, app.Config{RetellBaseURL: providerSrv.URL})

	if code := postWebhook(t, svc.URL(), readFixture(t, "outbound/webhook_1_call_started.json"), fixtureKey); code != http.StatusNoContent {
		t.Fatalf("call_started: status %d, want 204", code)
	}

	steps := []struct {
		fixture    string
		utterances int
	}{
		{"outbound/get_call_3_ongoing_partial.json", want.UtterancesAfterSnapshot["get_call_3_ongoing_partial"]},
		{"outbound/get_call_4_ongoing_later.json", want.UtterancesAfterSnapshot["get_call_4_ongoing_later"]},
	}
	for _, step := range steps {
		provider.serve(want.CallID, step.fixture)
		waitFor(t, 5*time.Second, step.fixture+" to be polled", func() bool {
			var call callJSON
			getJSON(t, svc.URL()+"/v1/calls/"+want.CallID, &call)
			return call.UtteranceCount == step.utterances
		})
	}

	var tr transcriptJSON
	getJSON(t, svc.URL()+"/v1/calls/"+want.CallID+"/transcript", &tr)
	if got := tr.Utterances[len(tr.Utterances)-1].Content; got != "Done! You're booked for Friday" {
		t.Fatalf("cut utterance=%q, want the partial text", got)
	}

	provider.serve(want.CallID, "outbound/get_call_6_ended_analyzed.json")
	checkFinal(t, svc, want)
}
