package sim_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/callcat/callcat/internal/sim"
)

const fixtureDir = "../../testdata/retell"

// opaqueKeys are objects whose keys are data, not schema: the agent's
// designer or the caller of create-phone-call chooses them. keyPaths records
// that such an object is present but not what it contains.
var opaqueKeys = map[string]bool{
	"metadata":                     true,
	"retell_llm_dynamic_variables": true,
	"collected_dynamic_variables":  true,
	"custom_analysis_data":         true,
}

// keyPaths returns every key path of a decoded JSON value. Array elements
// share one path segment "[]", except transcript items, which are distinguished
// by role ("[agent]", "[tool_call_result]") because each role has its own
// fields. The metadata object of an utterance is schema, not data.
func keyPaths(v any) map[string]bool {
	out := map[string]bool{}
	var walk func(v any, path string, inItem bool)
	walk = func(v any, path string, inItem bool) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				p := k
				if path != "" {
					p = path + "." + k
				}
				out[p] = true
				if opaqueKeys[k] && !(k == "metadata" && inItem) {
					continue
				}
				walk(child, p, inItem)
			}
		case []any:
			for _, child := range v {
				seg := "[]"
				item := false
				if m, ok := child.(map[string]any); ok {
					if role, ok := m["role"].(string); ok {
						seg, item = "["+role+"]", true
					}
				}
				walk(child, path+seg, inItem || item)
			}
		}
	}
	walk(v, "", false)
	return out
}

// itemGroup returns the transcript item a path belongs to, such as
// "call.transcript_object[agent]", or "" for a path outside transcript items.
func itemGroup(path string) string {
	for _, list := range []string{"transcript_object[", "transcript_with_tool_calls["} {
		i := strings.Index(path, list)
		if i < 0 {
			continue
		}
		end := strings.Index(path[i:], "]")
		return path[:i+end+1]
	}
	return ""
}

// referenceItems maps each transcript item group, with the call prefix
// removed, to its key paths across all fixtures. Node transitions occur only
// in the long call fixture.
func referenceItems(t *testing.T) map[string]map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures found in %s: %v", fixtureDir, err)
	}
	ref := map[string]map[string]bool{}
	for _, f := range files {
		for p := range keyPaths(loadJSON(t, f)) {
			g := itemGroup(p)
			if g == "" {
				continue
			}
			short := strings.TrimPrefix(g, "call.")
			if ref[short] == nil {
				ref[short] = map[string]bool{}
			}
			ref[short][strings.TrimPrefix(p, g)] = true
		}
	}
	return ref
}

// fixture loads a fixture by its path under testdata/retell.
func fixture(t *testing.T, name string) any {
	t.Helper()
	return loadJSON(t, filepath.Join(fixtureDir, name))
}

func loadJSON(t *testing.T, path string) any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading fixture: %v", err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	return v
}

func decodeAny(t *testing.T, body []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

// checkParity fails unless body has the key set of fixture: every path
// outside transcript items is the same, and every transcript item of body has
// exactly the keys the fixtures give items of its role. Which roles occur
// depends on the conversation, so roles are not compared.
func checkParity(t *testing.T, kind string, body []byte, fixtureValue any, ref map[string]map[string]bool) {
	t.Helper()
	got := keyPaths(decodeAny(t, body))
	want := keyPaths(fixtureValue)

	outside := func(paths map[string]bool) []string {
		var out []string
		for p := range paths {
			if itemGroup(p) == "" {
				out = append(out, p)
			}
		}
		slices.Sort(out)
		return out
	}
	if diff := cmp.Diff(outside(want), outside(got)); diff != "" {
		t.Errorf("%s: key paths differ from the fixture (-fixture +sim):\n%s", kind, diff)
	}

	groups := map[string]map[string]bool{}
	for p := range got {
		if g := itemGroup(p); g != "" {
			short := strings.TrimPrefix(g, "call.")
			if groups[short] == nil {
				groups[short] = map[string]bool{}
			}
			groups[short][strings.TrimPrefix(p, g)] = true
		}
	}
	for g, keys := range groups {
		if diff := cmp.Diff(ref[g], keys); diff != "" {
			t.Errorf("%s: keys of %s items differ from the fixtures (-fixture +sim):\n%s", kind, g, diff)
		}
	}
}

// roles returns the roles of the transcript_with_tool_calls items of call.
func roles(call map[string]any) []string {
	items, _ := call["transcript_with_tool_calls"].([]any)
	var out []string
	for _, it := range items {
		m, _ := it.(map[string]any)
		role, _ := m["role"].(string)
		out = append(out, role)
	}
	return out
}

func TestParityWebhooks(t *testing.T) {
	ref := referenceItems(t)
	rec := newRecorder(t, nil)
	s, _ := newSim(t, sim.Config{
		WebhookURL:        rec.srv.URL,
		Calls:             4,
		TotalCalls:        12,
		Speed:             400,
		PushTranscripts:   true,
		NotConnectedRatio: 0.25,
		AnalysisDelay:     time.Second,
		Seed:              7,
	})
	if err := startRun(t, s).wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// The first webhook of each kind, with conditions that make the
	// comparison cover tool calls and node transitions.
	type want struct {
		kind, fixture string
		match         func(h hook) bool
	}
	connected := func(h hook) bool { return h.call["start_timestamp"] != nil }
	hasRole := func(role string) func(h hook) bool {
		return func(h hook) bool { return slices.Contains(roles(h.call), role) }
	}
	cases := []want{
		{"call_started", "outbound/webhook_1_call_started.json", func(h hook) bool { return h.event == "call_started" }},
		{"transcript_updated", "outbound/webhook_4_transcript_updated.json", func(h hook) bool {
			return h.event == "transcript_updated" && h.call["call_status"] == "ongoing" && hasRole("tool_call_result")(h)
		}},
		{"transcript_updated with node transition", "outbound/webhook_2_transcript_updated.json", func(h hook) bool {
			return h.event == "transcript_updated" && h.call["call_status"] == "ongoing" && hasRole("node_transition")(h)
		}},
		{"final transcript_updated", "outbound/webhook_5_transcript_updated_final.json", func(h hook) bool {
			return h.event == "transcript_updated" && h.call["call_status"] == "ended" && hasRole("tool_call_invocation")(h)
		}},
		{"call_ended", "outbound/webhook_6_call_ended.json", func(h hook) bool {
			return h.event == "call_ended" && connected(h) && hasRole("tool_call_invocation")(h)
		}},
		{"call_analyzed", "outbound/webhook_7_call_analyzed.json", func(h hook) bool {
			return h.event == "call_analyzed" && connected(h)
		}},
		{"not connected call_ended", "not_connected/webhook_call_ended.json", func(h hook) bool {
			return h.event == "call_ended" && h.call["call_status"] == "not_connected"
		}},
		{"not connected call_analyzed", "not_connected/webhook_call_analyzed.json", func(h hook) bool {
			return h.event == "call_analyzed" && h.call["call_status"] == "not_connected"
		}},
	}

	hooks := rec.all()
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			i := slices.IndexFunc(hooks, c.match)
			if i < 0 {
				t.Fatalf("no %s webhook among %d", c.kind, len(hooks))
			}
			checkParity(t, c.kind, hooks[i].body, fixture(t, c.fixture), ref)
		})
	}
}

func TestParityAPI(t *testing.T) {
	ref := referenceItems(t)
	clk := newClock()
	s, api := newSim(t, sim.Config{Now: clk.Now, AnalysisDelay: 10 * time.Minute, Seed: 3})
	live, liveAPI := newSim(t, sim.Config{Now: clk.Now, LiveTranscript: true, Seed: 3})
	failed, failedAPI := newSim(t, sim.Config{Now: clk.Now, NotConnectedRatio: 1, AnalysisDelay: time.Hour, Seed: 3})

	id, created := createCall(t, api, createBody)
	checkParity(t, "create-phone-call", created, fixture(t, "outbound/create_phone_call_201.json"), ref)
	_, body := getCall(t, api, id)
	checkParity(t, "get-call registered", body, fixture(t, "outbound/get_call_1_registered.json"), ref)

	liveID, _ := createCall(t, liveAPI, createBody)
	failedID, _ := createCall(t, failedAPI, createBody)
	startRun(t, s)
	startRun(t, live)
	startRun(t, failed)

	clk.Advance(25 * time.Second)
	waitStatus(t, s, id, "ongoing")
	waitStatus(t, live, liveID, "ongoing")
	_, body = getCall(t, api, id)
	checkParity(t, "get-call ongoing", body, fixture(t, "outbound/get_call_2_ongoing_no_transcript.json"), ref)
	_, body = getCall(t, liveAPI, liveID)
	checkParity(t, "get-call ongoing with live transcript", body, fixture(t, "outbound/get_call_3_ongoing_partial.json"), ref)

	clk.Advance(5 * time.Minute)
	waitStatus(t, s, id, "ended")
	_, body = getCall(t, api, id)
	checkParity(t, "get-call ended", body, fixture(t, "outbound/get_call_5_ended.json"), ref)

	clk.Advance(10 * time.Minute)
	waitFor(t, "analysis", func() bool { info, _ := s.Call(id); return info.Analyzed })
	_, body = getCall(t, api, id)
	checkParity(t, "get-call analyzed", body, fixture(t, "outbound/get_call_6_ended_analyzed.json"), ref)

	status, page := do(t, api, http.MethodPost, "/v3/list-calls", testKey, `{}`)
	if status != http.StatusOK {
		t.Fatalf("list-calls status=%d, want 200", status)
	}
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal(page, &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("list-calls items=%d (%v), want 1", len(list.Items), err)
	}
	// The fixture page's fourth item is the analyzed outbound call.
	items := fixture(t, "list_calls_v3_200.json").(map[string]any)["items"].([]any)
	checkParity(t, "list-calls item", list.Items[0], items[3], ref)

	waitStatus(t, failed, failedID, "not_connected")
	_, body = getCall(t, failedAPI, failedID)
	checkParity(t, "get-call not connected", body, fixture(t, "not_connected/get_call_not_connected.json"), ref)
}
