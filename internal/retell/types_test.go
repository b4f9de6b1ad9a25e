package retell_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
)

// scenario is one entry of expected.json. Fields a scenario lacks stay zero.
type scenario struct {
	CallID                  string         `json:"call_id"`
	CallType                string         `json:"call_type"`
	Direction               string         `json:"direction"`
	FinalStatus             string         `json:"final_status"`
	DisconnectionReason     string         `json:"disconnection_reason"`
	FinalUtteranceCount     int            `json:"final_utterance_count"`
	FinalTranscriptText     string         `json:"final_transcript_text"`
	StartTimestamp          *int64         `json:"start_timestamp"`
	EndTimestamp            *int64         `json:"end_timestamp"`
	DurationMS              *int64         `json:"duration_ms"`
	StatusSequenceGetCall   []string       `json:"status_sequence_get_call"`
	WebhookSequence         []string       `json:"webhook_sequence"`
	UtterancesAfterSnapshot map[string]int `json:"utterances_after_snapshot"`
	GetCall4LastContent     string         `json:"get_call_4_last_utterance_content_partial"`
	AgentUtterances         int            `json:"agent_utterances"`
	UserUtterances          int            `json:"user_utterances"`
	TotalWords              int            `json:"total_words"`
	LastWordEndSec          float64        `json:"last_word_end_sec"`
	HasFromToDirection      *bool          `json:"has_from_to_direction"`
	CallSuccessful          *bool          `json:"call_successful"`
	UserSentiment           string         `json:"user_sentiment"`
}

func loadExpected(t *testing.T) map[string]scenario {
	t.Helper()
	var expected map[string]scenario
	if err := json.Unmarshal(readFixture(t, "expected.json"), &expected); err != nil {
		t.Fatalf("decode expected.json: %v", err)
	}
	return expected
}

// loadCall decodes a fixture the way callcat receives it: webhook bodies
// through ParseWebhook, API responses through DecodeCall.
func loadCall(t *testing.T, name string) *retell.Call {
	t.Helper()
	data := readFixture(t, name)
	if strings.HasPrefix(filepath.Base(name), "webhook_") {
		w, err := retell.ParseWebhook(data)
		if err != nil {
			t.Fatalf("%s: ParseWebhook: %v", name, err)
		}
		return &w.Call
	}
	c, err := retell.DecodeCall(data)
	if err != nil {
		t.Fatalf("%s: DecodeCall: %v", name, err)
	}
	return c
}

func loadUtterances(t *testing.T, name string) []callcat.Utterance {
	t.Helper()
	utterances, present := loadCall(t, name).Utterances()
	if !present {
		t.Fatalf("%s: transcript present=false, want true", name)
	}
	return utterances
}

func TestFixturesDecode(t *testing.T) {
	expected := loadExpected(t)
	for name, sc := range expected {
		files, err := filepath.Glob(filepath.Join(fixtureDir, name, "*.json"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no fixtures (err %v)", name, err)
		}
		for _, path := range files {
			rel := name + "/" + filepath.Base(path)
			c := loadCall(t, rel)
			if c.CallID != sc.CallID {
				t.Fatalf("%s: call_id=%q, want %q", rel, c.CallID, sc.CallID)
			}

			// json.Unmarshal through Call.UnmarshalJSON gives the same call.
			if strings.HasPrefix(filepath.Base(path), "webhook_") {
				continue
			}
			var viaUnmarshal retell.Call
			if err := json.Unmarshal(readFixture(t, rel), &viaUnmarshal); err != nil {
				t.Fatalf("%s: json.Unmarshal: %v", rel, err)
			}
			if diff := cmp.Diff(c, &viaUnmarshal); diff != "" {
				t.Fatalf("%s: json.Unmarshal differs from DecodeCall (-DecodeCall +Unmarshal):\n%s", rel, diff)
			}
		}
	}
}

func TestOutboundSnapshots(t *testing.T) {
	sc := loadExpected(t)["outbound"]
	if len(sc.UtterancesAfterSnapshot) == 0 {
		t.Fatal("expected.json: outbound.utterances_after_snapshot empty")
	}

	for snapshot, want := range sc.UtterancesAfterSnapshot {
		utterances := loadUtterances(t, "outbound/"+snapshot+".json")
		if len(utterances) != want {
			t.Fatalf("%s: utterances=%d, want %d", snapshot, len(utterances), want)
		}
		for i, u := range utterances {
			if u.Index != i {
				t.Fatalf("%s: utterance %d has Index %d", snapshot, i, u.Index)
			}
		}
	}

	partial := loadUtterances(t, "outbound/get_call_4_ongoing_later.json")
	if got := partial[len(partial)-1].Content; got != sc.GetCall4LastContent {
		t.Fatalf("get_call_4 last content=%q, want %q", got, sc.GetCall4LastContent)
	}
}

func TestOutboundStatusSequence(t *testing.T) {
	sc := loadExpected(t)["outbound"]
	getCalls := []string{
		"get_call_1_registered",
		"get_call_2_ongoing_no_transcript",
		"get_call_3_ongoing_partial",
		"get_call_4_ongoing_later",
		"get_call_5_ended",
		"get_call_6_ended_analyzed",
	}
	if len(getCalls) != len(sc.StatusSequenceGetCall) {
		t.Fatalf("status_sequence_get_call has %d entries, want %d", len(sc.StatusSequenceGetCall), len(getCalls))
	}
	for i, name := range getCalls {
		if got := loadCall(t, "outbound/"+name+".json").Fields().Status; got != callcat.Status(sc.StatusSequenceGetCall[i]) {
			t.Fatalf("%s: status=%q, want %q", name, got, sc.StatusSequenceGetCall[i])
		}
	}

	webhooks := []string{
		"webhook_1_call_started",
		"webhook_2_transcript_updated",
		"webhook_3_transcript_updated",
		"webhook_4_transcript_updated",
		"webhook_5_transcript_updated_final",
		"webhook_6_call_ended",
		"webhook_7_call_analyzed",
	}
	if len(webhooks) != len(sc.WebhookSequence) {
		t.Fatalf("webhook_sequence has %d entries, want %d", len(sc.WebhookSequence), len(webhooks))
	}
	for i, name := range webhooks {
		w, err := retell.ParseWebhook(readFixture(t, "outbound/"+name+".json"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if w.Event != sc.WebhookSequence[i] {
			t.Fatalf("%s: event=%q, want %q", name, w.Event, sc.WebhookSequence[i])
		}
	}
}

func TestOutboundBeforeTranscript(t *testing.T) {
	sc := loadExpected(t)["outbound"]
	for _, name := range []string{
		"create_phone_call_201",
		"get_call_1_registered",
		"get_call_2_ongoing_no_transcript",
		"webhook_1_call_started",
	} {
		c := loadCall(t, "outbound/"+name+".json")
		if utterances, present := c.Utterances(); present || utterances != nil {
			t.Fatalf("%s: utterances=%v present=%v, want nil and false", name, utterances, present)
		}
		if c.EndTimestamp != nil || c.DurationMS != nil {
			t.Fatalf("%s: end=%v duration=%v, want nil", name, c.EndTimestamp, c.DurationMS)
		}
		if c.DisconnectionReason != "" {
			t.Fatalf("%s: disconnection_reason=%q, want empty", name, c.DisconnectionReason)
		}
	}

	created := loadCall(t, "outbound/create_phone_call_201.json").Fields()
	if created.Status != callcat.StatusRegistered || created.StartTimestamp != nil {
		t.Fatalf("create_phone_call_201: status=%q start=%v, want registered and nil", created.Status, created.StartTimestamp)
	}

	ongoing := loadCall(t, "outbound/get_call_2_ongoing_no_transcript.json").Fields()
	if ongoing.StartTimestamp == nil || *ongoing.StartTimestamp != *sc.StartTimestamp {
		t.Fatalf("get_call_2: start=%v, want %d", ongoing.StartTimestamp, *sc.StartTimestamp)
	}
}

func TestOutboundEnded(t *testing.T) {
	sc := loadExpected(t)["outbound"]
	ended := []string{
		"webhook_5_transcript_updated_final",
		"webhook_6_call_ended",
		"webhook_7_call_analyzed",
		"get_call_5_ended",
		"get_call_6_ended_analyzed",
	}
	for _, name := range ended {
		c := loadCall(t, "outbound/"+name+".json")
		f := c.Fields()
		if f.Status != callcat.StatusEnded {
			t.Fatalf("%s: status=%q, want ended", name, f.Status)
		}
		utterances, _ := c.Utterances()
		if len(utterances) != sc.FinalUtteranceCount {
			t.Fatalf("%s: utterances=%d, want %d", name, len(utterances), sc.FinalUtteranceCount)
		}
		if got := callcat.TranscriptText(utterances); got != sc.FinalTranscriptText {
			t.Fatalf("%s: transcript text differs:\n%s", name, cmp.Diff(sc.FinalTranscriptText, got))
		}
		if got := lastWordEnd(utterances); got != sc.LastWordEndSec {
			t.Fatalf("%s: last word end=%v, want %v", name, got, sc.LastWordEndSec)
		}
		if name == "webhook_5_transcript_updated_final" {
			continue // the final transcript_updated carries no end fields
		}
		checkTimes(t, name, f, sc)
		if f.DisconnectionReason != sc.DisconnectionReason {
			t.Fatalf("%s: reason=%q, want %q", name, f.DisconnectionReason, sc.DisconnectionReason)
		}
	}

	for _, name := range []string{"webhook_6_call_ended", "get_call_5_ended"} {
		if a := loadCall(t, "outbound/"+name+".json").CallAnalysis; a != nil {
			t.Fatalf("%s: call_analysis=%s, want nil", name, a)
		}
	}
	for _, name := range []string{"webhook_7_call_analyzed", "get_call_6_ended_analyzed"} {
		checkAnalysis(t, name, loadCall(t, "outbound/"+name+".json"), sc)
	}
}

func TestWebCall(t *testing.T) {
	sc := loadExpected(t)["web_call"]
	for _, name := range []string{"webhook_call_ended", "get_call_ended_analyzed"} {
		c := loadCall(t, "web_call/"+name+".json")
		f := c.Fields()
		if f.Type != sc.CallType {
			t.Fatalf("%s: call_type=%q, want %q", name, f.Type, sc.CallType)
		}
		if sc.HasFromToDirection == nil || *sc.HasFromToDirection {
			t.Fatal("expected.json: web_call.has_from_to_direction is not false")
		}
		if f.Direction != "" || f.FromNumber != "" || f.ToNumber != "" {
			t.Fatalf("%s: direction=%q from=%q to=%q, want empty", name, f.Direction, f.FromNumber, f.ToNumber)
		}
		checkFinal(t, name, c, sc)
	}
}

func TestNotConnected(t *testing.T) {
	sc := loadExpected(t)["not_connected"]
	for _, name := range []string{"get_call_not_connected", "webhook_call_ended", "webhook_call_analyzed"} {
		c := loadCall(t, "not_connected/"+name+".json")
		f := c.Fields()
		if f.Status != callcat.Status(sc.FinalStatus) || !f.Status.Terminal() {
			t.Fatalf("%s: status=%q, want terminal %q", name, f.Status, sc.FinalStatus)
		}
		if f.DisconnectionReason != sc.DisconnectionReason {
			t.Fatalf("%s: reason=%q, want %q", name, f.DisconnectionReason, sc.DisconnectionReason)
		}
		if utterances, present := c.Utterances(); present || len(utterances) != sc.FinalUtteranceCount {
			t.Fatalf("%s: utterances=%d present=%v, want %d and false", name, len(utterances), present, sc.FinalUtteranceCount)
		}
		if sc.StartTimestamp != nil || sc.DurationMS != nil {
			t.Fatal("expected.json: not_connected start or duration is not null")
		}
		checkTimes(t, name, f, sc)
	}

	analyzed := loadCall(t, "not_connected/webhook_call_analyzed.json")
	var analysis struct {
		CallSuccessful *bool `json:"call_successful"`
	}
	if err := json.Unmarshal(analyzed.CallAnalysis, &analysis); err != nil {
		t.Fatalf("webhook_call_analyzed: decode call_analysis: %v", err)
	}
	if analysis.CallSuccessful == nil || *analysis.CallSuccessful {
		t.Fatalf("webhook_call_analyzed: call_successful=%v, want false", analysis.CallSuccessful)
	}
}

func TestErrorCall(t *testing.T) {
	sc := loadExpected(t)["error"]

	started := loadCall(t, "error/webhook_call_started.json")
	if started.Direction != sc.Direction || started.FromNumber != "+15550193318" || started.ToNumber != "+15550100003" {
		t.Fatalf("webhook_call_started: direction=%q from=%q to=%q, want %q +15550193318 +15550100003",
			started.Direction, started.FromNumber, started.ToNumber, sc.Direction)
	}
	if started.Metadata != nil {
		t.Fatalf("webhook_call_started: metadata=%s, want nil", started.Metadata)
	}
	if _, present := started.Utterances(); present {
		t.Fatal("webhook_call_started: transcript present, want absent")
	}

	for _, name := range []string{"get_call_error", "webhook_call_ended"} {
		checkFinal(t, name, loadCall(t, "error/"+name+".json"), sc)
	}
}

func TestLongCall(t *testing.T) {
	sc := loadExpected(t)["long_call"]
	c := loadCall(t, "long_call/get_call_ended_analyzed.json")
	checkFinal(t, "long_call", c, sc)

	utterances, _ := c.Utterances()
	roles := map[string]int{}
	words := 0
	for _, u := range utterances {
		roles[u.Role]++
		words += len(u.Words)

		var joined strings.Builder
		for _, w := range u.Words {
			joined.WriteString(w.Word)
		}
		if joined.String() != u.Content {
			t.Fatalf("utterance %d: words joined=%q, want content %q", u.Index, joined.String(), u.Content)
		}
	}
	if roles[callcat.RoleAgent] != sc.AgentUtterances {
		t.Fatalf("agent utterances=%d, want %d", roles[callcat.RoleAgent], sc.AgentUtterances)
	}
	if roles[callcat.RoleUser] != sc.UserUtterances {
		t.Fatalf("user utterances=%d, want %d", roles[callcat.RoleUser], sc.UserUtterances)
	}
	if words != sc.TotalWords {
		t.Fatalf("words=%d, want %d", words, sc.TotalWords)
	}
	if got := lastWordEnd(utterances); got != sc.LastWordEndSec {
		t.Fatalf("last word end=%v, want %v", got, sc.LastWordEndSec)
	}
	if len(c.TranscriptWithToolCalls) != 80 {
		t.Fatalf("transcript_with_tool_calls items=%d, want 80", len(c.TranscriptWithToolCalls))
	}
}

// checkFinal checks a terminal payload against its scenario.
func checkFinal(t *testing.T, name string, c *retell.Call, sc scenario) {
	t.Helper()
	f := c.Fields()
	if f.Status != callcat.Status(sc.FinalStatus) {
		t.Fatalf("%s: status=%q, want %q", name, f.Status, sc.FinalStatus)
	}
	if f.DisconnectionReason != sc.DisconnectionReason {
		t.Fatalf("%s: reason=%q, want %q", name, f.DisconnectionReason, sc.DisconnectionReason)
	}
	checkTimes(t, name, f, sc)

	utterances, present := c.Utterances()
	if !present {
		t.Fatalf("%s: transcript absent, want present", name)
	}
	if len(utterances) != sc.FinalUtteranceCount {
		t.Fatalf("%s: utterances=%d, want %d", name, len(utterances), sc.FinalUtteranceCount)
	}
	if got := callcat.TranscriptText(utterances); got != sc.FinalTranscriptText {
		t.Fatalf("%s: transcript text differs (-want +got):\n%s", name, cmp.Diff(sc.FinalTranscriptText, got))
	}
}

func checkTimes(t *testing.T, name string, f callcat.CallFields, sc scenario) {
	t.Helper()
	if diff := cmp.Diff(sc.StartTimestamp, f.StartTimestamp); diff != "" {
		t.Fatalf("%s: start_timestamp (-want +got):\n%s", name, diff)
	}
	if diff := cmp.Diff(sc.EndTimestamp, f.EndTimestamp); diff != "" {
		t.Fatalf("%s: end_timestamp (-want +got):\n%s", name, diff)
	}
	if diff := cmp.Diff(sc.DurationMS, f.DurationMS); diff != "" {
		t.Fatalf("%s: duration_ms (-want +got):\n%s", name, diff)
	}
}

func checkAnalysis(t *testing.T, name string, c *retell.Call, sc scenario) {
	t.Helper()
	var analysis struct {
		CallSuccessful *bool  `json:"call_successful"`
		UserSentiment  string `json:"user_sentiment"`
	}
	if err := json.Unmarshal(c.CallAnalysis, &analysis); err != nil {
		t.Fatalf("%s: decode call_analysis %q: %v", name, c.CallAnalysis, err)
	}
	if diff := cmp.Diff(sc.CallSuccessful, analysis.CallSuccessful); diff != "" {
		t.Fatalf("%s: call_successful (-want +got):\n%s", name, diff)
	}
	if analysis.UserSentiment != sc.UserSentiment {
		t.Fatalf("%s: user_sentiment=%q, want %q", name, analysis.UserSentiment, sc.UserSentiment)
	}
}

func lastWordEnd(utterances []callcat.Utterance) float64 {
	var latest float64
	for _, u := range utterances {
		for _, w := range u.Words {
			latest = max(latest, w.End)
		}
	}
	return latest
}

// decodeAll decodes a call body through all three entry points and fails on
// any error. It returns the calls in the order ParseWebhook, DecodeCall,
// json.Unmarshal.
func decodeAll(t *testing.T, callJSON string) []*retell.Call {
	t.Helper()
	w, err := retell.ParseWebhook([]byte(`{"event":"transcript_updated","call":` + callJSON + `}`))
	if err != nil {
		t.Fatalf("ParseWebhook(%s): %v", callJSON, err)
	}
	decoded, err := retell.DecodeCall([]byte(callJSON))
	if err != nil {
		t.Fatalf("DecodeCall(%s): %v", callJSON, err)
	}
	var unmarshaled retell.Call
	if err := json.Unmarshal([]byte(callJSON), &unmarshaled); err != nil {
		t.Fatalf("json.Unmarshal(%s): %v", callJSON, err)
	}
	return []*retell.Call{&w.Call, decoded, &unmarshaled}
}

func TestUtterancesAbsent(t *testing.T) {
	values := []string{`null`, `""`, `[]`, `"Agent: hi\n"`, `{}`, `42`, `true`}
	var bodies []string
	bodies = append(bodies, `{"call_id":"c1"}`)
	for _, v := range values {
		bodies = append(bodies,
			`{"call_id":"c1","transcript_with_tool_calls":`+v+`}`,
			`{"call_id":"c1","transcript_object":`+v+`}`,
			`{"call_id":"c1","transcript_with_tool_calls":`+v+`,"transcript_object":`+v+`}`,
		)
	}

	for _, body := range bodies {
		for i, c := range decodeAll(t, body) {
			if utterances, present := c.Utterances(); present || utterances != nil {
				t.Fatalf("decoder %d, %s: utterances=%v present=%v, want nil and false", i, body, utterances, present)
			}
			if c.CallID != "c1" {
				t.Fatalf("decoder %d, %s: call_id=%q, want c1", i, body, c.CallID)
			}
		}
	}
}

func TestUtterancesSkipOtherRoles(t *testing.T) {
	const body = `{"call_id":"c1","future_field":{"nested":[1,2]},"transcript_with_tool_calls":[
		{"role":"agent","content":" Hello there.","words":[{"word":" Hello ","start":0.5,"end":0.7,"confidence":0.9},{"word":"there.","start":0.7,"end":1.0}],"metadata":{"response_id":1}},
		{"role":"tool_call_invocation","tool_call_id":"t1","name":"lookup","arguments":"{\"a\":1}"},
		{"role":"tool_call_result","tool_call_id":"t1","content":"{\"ok\":true}","successful":true},
		{"role":"user","content":"Hi","words":[{"word":"Hi","start":1.2,"end":1.4}]},
		{"role":"node_transition","former_node_id":"a","new_node_id":"b","transition_type":"global"},
		{"role":"dtmf","digit":"1"},
		{"role":"sms","content":"texted","time_sec":3.5},
		{"role":"injected","content":"context","time_sec":4},
		{"role":"hologram","content":"from the future"},
		{"content":"no role"},
		7,
		{"role":"transfer_target","content":"Transfer desk.","words":[]}
	]}`
	want := []callcat.Utterance{
		{Index: 0, Role: "agent", Content: " Hello there.", Words: []callcat.Word{{Word: " Hello ", Start: 0.5, End: 0.7}, {Word: "there.", Start: 0.7, End: 1.0}}},
		{Index: 1, Role: "user", Content: "Hi", Words: []callcat.Word{{Word: "Hi", Start: 1.2, End: 1.4}}},
		{Index: 2, Role: "transfer_target", Content: "Transfer desk.", Words: []callcat.Word{}},
	}

	for i, c := range decodeAll(t, body) {
		got, present := c.Utterances()
		if !present {
			t.Fatalf("decoder %d: present=false, want true", i)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("decoder %d: utterances (-want +got):\n%s", i, diff)
		}
	}
}

func TestUtterancesFallbackToTranscriptObject(t *testing.T) {
	data := readFixture(t, "outbound/webhook_4_transcript_updated.json")
	var envelope struct {
		Call map[string]json.RawMessage `json:"call"`
	}
	if err := json.Unmarshal(data, &envelope); err != nil {
		t.Fatalf("decode fixture: %v", err)
	}
	if envelope.Call["transcript_object"] == nil {
		t.Fatal("fixture has no transcript_object")
	}
	want := loadUtterances(t, "outbound/webhook_4_transcript_updated.json")

	for _, replacement := range []string{"", "null", "[]", `""`} {
		call := map[string]json.RawMessage{}
		for k, v := range envelope.Call {
			call[k] = v
		}
		delete(call, "transcript_with_tool_calls")
		if replacement != "" {
			call["transcript_with_tool_calls"] = json.RawMessage(replacement)
		}
		callJSON, err := json.Marshal(call)
		if err != nil {
			t.Fatalf("encode call: %v", err)
		}

		for i, c := range decodeAll(t, string(callJSON)) {
			got, present := c.Utterances()
			if !present {
				t.Fatalf("transcript_with_tool_calls %q, decoder %d: present=false, want true", replacement, i)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("transcript_with_tool_calls %q, decoder %d: (-want +got):\n%s", replacement, i, diff)
			}
		}
	}
}

func TestCallFields(t *testing.T) {
	c := loadCall(t, "outbound/webhook_6_call_ended.json")
	start, end, duration := int64(1781000011483), int64(1781000057040), int64(45557)
	want := callcat.CallFields{
		ID:                  "call_f0b26536b5a0b2b5c0ec60985f1",
		Status:              callcat.StatusEnded,
		Type:                "phone_call",
		Direction:           "outbound",
		FromNumber:          "+15550100001",
		ToNumber:            "+15550142310",
		AgentID:             "agent_62086c674021e77f8f507b5a57",
		StartTimestamp:      &start,
		EndTimestamp:        &end,
		DurationMS:          &duration,
		DisconnectionReason: "agent_hangup",
		Metadata:            json.RawMessage(`{"callcat_ref":"cc_000123","campaign":"dental-reminders"}`),
	}
	if diff := cmp.Diff(want, c.Fields()); diff != "" {
		t.Fatalf("Fields (-want +got):\n%s", diff)
	}
}

func TestCallFieldsLenient(t *testing.T) {
	tests := []struct {
		name string
		body string
		want callcat.CallFields
	}{
		{
			name: "unknown status",
			body: `{"call_id":"c1","call_status":"paused"}`,
			want: callcat.CallFields{ID: "c1", Status: "paused"},
		},
		{
			name: "null raw fields",
			body: `{"call_id":"c1","metadata":null,"call_analysis":null,"start_timestamp":null}`,
			want: callcat.CallFields{ID: "c1"},
		},
		{
			name: "wrong types",
			body: `{"call_id":"c1","call_type":5,"agent_id":[],"call_status":{"a":1},"start_timestamp":"1781000000000","end_timestamp":true,"duration_ms":{}}`,
			want: callcat.CallFields{ID: "c1"},
		},
		{
			name: "float timestamps",
			body: `{"call_id":"c1","start_timestamp":1.781e12,"end_timestamp":-5,"duration_ms":1.5}`,
			want: callcat.CallFields{ID: "c1", StartTimestamp: ptr(int64(1781000000000)), EndTimestamp: ptr(int64(-5))},
		},
		{
			name: "zero timestamp",
			body: `{"call_id":"c1","start_timestamp":0}`,
			want: callcat.CallFields{ID: "c1", StartTimestamp: ptr(int64(0))},
		},
		{
			name: "raw fields kept",
			body: `{"call_id":"c1","metadata":[1, "x"],"call_analysis":{"in_voicemail":false}}`,
			want: callcat.CallFields{ID: "c1", Metadata: json.RawMessage(`[1, "x"]`), Analysis: json.RawMessage(`{"in_voicemail":false}`)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, c := range decodeAll(t, tt.body) {
				if diff := cmp.Diff(tt.want, c.Fields()); diff != "" {
					t.Fatalf("decoder %d: Fields (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

func TestCallWordsWrongType(t *testing.T) {
	body := `{"call_id":"c1","transcript_with_tool_calls":[{"role":"user","content":"Hi","words":"Hi"},{"role":"agent","content":5,"words":[{"word":1,"start":"x","end":2}]}]}`
	want := []callcat.Utterance{
		{Index: 0, Role: "user", Content: "Hi"},
		{Index: 1, Role: "agent", Words: []callcat.Word{{End: 2}}},
	}
	for i, c := range decodeAll(t, body) {
		got, present := c.Utterances()
		if !present {
			t.Fatalf("decoder %d: present=false, want true", i)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("decoder %d: (-want +got):\n%s", i, diff)
		}
	}
}

func TestCallUnmarshalJSONNull(t *testing.T) {
	c := retell.Call{CallID: "kept"}
	if err := json.Unmarshal([]byte("null"), &c); err != nil {
		t.Fatalf("Unmarshal(null): %v", err)
	}
	if c.CallID != "kept" {
		t.Fatalf("call_id=%q, want kept", c.CallID)
	}
}

func TestParseWebhookErrors(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    error
		message string
	}{
		{"empty", ``, retell.ErrMalformedBody, "empty"},
		{"invalid JSON", `{"event":`, retell.ErrMalformedBody, "unexpected end"},
		{"trailing data", `{"call":{"call_id":"c1"}} {}`, retell.ErrMalformedBody, "after top-level value"},
		{"array", `[{"call":{"call_id":"c1"}}]`, retell.ErrMalformedBody, "array"},
		{"string", `"call"`, retell.ErrMalformedBody, "string"},
		{"null", `null`, retell.ErrMalformedBody, "null"},
		{"call array", `{"event":"call_started","call":[]}`, retell.ErrMalformedBody, "call is a JSON array"},
		{"call string", `{"event":"call_started","call":"c1"}`, retell.ErrMalformedBody, "call is a JSON string"},
		{"call number after bad event", `{"event":7,"call":7}`, retell.ErrMalformedBody, "call is a JSON number"},
		{"call missing", `{"event":"call_started"}`, retell.ErrMissingCallID, "call object absent"},
		{"call null", `{"event":"call_started","call":null}`, retell.ErrMissingCallID, "call object absent"},
		{"call empty", `{"event":"call_started","call":{}}`, retell.ErrMissingCallID, "call.call_id"},
		{"call_id empty", `{"event":"call_started","call":{"call_id":""}}`, retell.ErrMissingCallID, "call.call_id"},
		{"call_id number", `{"event":"call_started","call":{"call_id":42}}`, retell.ErrMissingCallID, "call.call_id"},
		{"call_id number after type error", `{"call":{"call_type":1,"call_id":42}}`, retell.ErrMissingCallID, "call.call_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := retell.ParseWebhook([]byte(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err=%v, want %v", err, tt.want)
			}
			if w != nil {
				t.Fatalf("webhook=%+v, want nil", w)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("err=%q, want it to contain %q", err, tt.message)
			}
		})
	}
}

func TestParseWebhookLenient(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		event string
	}{
		{"event not a string", `{"event":{"name":"x"},"call":{"call_id":"c1"}}`, ""},
		{"event escaped", `{"event":"call_\u0065nded","call":{"call_id":"c1"}}`, "call_ended"},
		{"unknown fields", `{"event":"e","data":{"call_id":"old"},"call":{"call_id":"c1","x":[{}]},"z":null}`, "e"},
		{"invalid UTF-8", "{\"event\":\"e\",\"call\":{\"call_id\":\"c1\",\"transcript_with_tool_calls\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}}", "e"},
		{"whitespace", " \n{\"event\":\"e\",\"call\":{\"call_id\":\"c1\"}}\n", "e"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := retell.ParseWebhook([]byte(tt.body))
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			if w.Event != tt.event {
				t.Fatalf("event=%q, want %q", w.Event, tt.event)
			}
			if w.Call.CallID != "c1" {
				t.Fatalf("call_id=%q, want c1", w.Call.CallID)
			}
		})
	}
}

func TestDecodeCallErrors(t *testing.T) {
	tests := []struct {
		body string
		want error
	}{
		{``, retell.ErrMalformedBody},
		{`not json`, retell.ErrMalformedBody},
		{`[]`, retell.ErrMalformedBody},
		{`{"call_id":"c1"`, retell.ErrMalformedBody},
		{`{}`, retell.ErrMissingCallID},
		{`{"call_id":""}`, retell.ErrMissingCallID},
		{`{"call_id":12}`, retell.ErrMissingCallID},
	}
	for _, tt := range tests {
		if _, err := retell.DecodeCall([]byte(tt.body)); !errors.Is(err, tt.want) {
			t.Fatalf("DecodeCall(%q): err=%v, want %v", tt.body, err, tt.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func BenchmarkDecodeGetCall(b *testing.B) {
	data := readFixture(b, "long_call/get_call_ended_analyzed.json")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := retell.DecodeCall(data)
		if err != nil {
			b.Fatal(err)
		}
		if _, present := c.Utterances(); !present {
			b.Fatal("transcript absent")
		}
	}
}

func BenchmarkParseWebhook(b *testing.B) {
	data := readFixture(b, "outbound/webhook_5_transcript_updated_final.json")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		w, err := retell.ParseWebhook(data)
		if err != nil {
			b.Fatal(err)
		}
		if _, present := w.Call.Utterances(); !present {
			b.Fatal("transcript absent")
		}
	}
}
