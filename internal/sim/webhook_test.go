package sim_test

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/sim"
)

// utterances returns the spoken items of a transcript list.
func utterances(call map[string]any, list string) []map[string]any {
	items, _ := call[list].([]any)
	var out []map[string]any
	for _, it := range items {
		m, _ := it.(map[string]any)
		switch m["role"] {
		case "agent", "user", "transfer_target":
			out = append(out, m)
		}
	}
	return out
}

// formatTranscript renders utterances as the provider's transcript string.
func formatTranscript(utts []map[string]any) string {
	var b strings.Builder
	for _, u := range utts {
		switch u["role"] {
		case "agent":
			b.WriteString("Agent: ")
		case "user":
			b.WriteString("User: ")
		}
		b.WriteString(u["content"].(string))
		b.WriteString("\n")
	}
	return b.String()
}

func events(hooks []hook) string {
	var names []string
	for _, h := range hooks {
		names = append(names, h.event)
	}
	return strings.Join(names, " ")
}

func TestLifecycle(t *testing.T) {
	rec := newRecorder(t, nil)
	s, api := newSim(t, sim.Config{
		WebhookURL:        rec.srv.URL,
		Calls:             5,
		TotalCalls:        5,
		Speed:             200,
		PushTranscripts:   true,
		NotConnectedRatio: 0.3,
		AnalysisDelay:     time.Second,
		Seed:              42,
	})
	if err := startRun(t, s).wait(t); err != nil {
		t.Fatalf("Run: %v, want nil", err)
	}

	calls := s.Calls()
	if len(calls) != 5 {
		t.Fatalf("calls=%d, want 5", len(calls))
	}
	byCall := rec.delivered()
	var connected, notConnected int
	for _, info := range calls {
		hooks := byCall[info.ID]
		seq := events(hooks)

		if info.Status == "not_connected" {
			notConnected++
			if seq != "call_ended call_analyzed" {
				t.Errorf("call %s (not connected) webhooks=%q, want %q", info.ID, seq, "call_ended call_analyzed")
			}
			if info.FinalTranscript != "" {
				t.Errorf("call %s (not connected) FinalTranscript=%q, want empty", info.ID, info.FinalTranscript)
			}
			continue
		}

		connected++
		if info.Status != "ended" {
			t.Errorf("call %s status=%q, want ended", info.ID, info.Status)
		}
		if !info.Analyzed {
			t.Errorf("call %s Analyzed=false, want true", info.ID)
		}
		if !strings.HasPrefix(seq, "call_started transcript_updated ") || !strings.HasSuffix(seq, " transcript_updated call_ended call_analyzed") {
			t.Errorf("call %s webhooks=%q, want call_started, transcript_updated..., call_ended, call_analyzed", info.ID, seq)
		}
		if strings.Count(seq, "call_started") != 1 {
			t.Errorf("call %s webhooks=%q, want one call_started", info.ID, seq)
		}
		if info.FinalTranscript == "" {
			t.Errorf("call %s FinalTranscript is empty, want the transcript", info.ID)
		}
		if info.Utterances == 0 {
			t.Errorf("call %s Utterances=0, want some", info.ID)
		}

		for i, h := range hooks {
			if h.event != "transcript_updated" && h.event != "call_ended" && h.event != "call_analyzed" {
				continue
			}
			checkTranscript(t, info.ID, h)
			last := i == len(hooks)-3 // the final transcript_updated
			if (last || h.event == "call_ended") && h.call["transcript"] != info.FinalTranscript {
				t.Errorf("call %s %s transcript=%q, want FinalTranscript %q", info.ID, h.event, h.call["transcript"], info.FinalTranscript)
			}
		}
		checkGrowth(t, info.ID, hooks)

		// get-call of the ended call carries the same final transcript.
		got, _ := getCall(t, api, info.ID)
		if got["transcript"] != info.FinalTranscript {
			t.Errorf("call %s get-call transcript=%q, want %q", info.ID, got["transcript"], info.FinalTranscript)
		}
	}
	if connected == 0 {
		t.Fatalf("no connected call among 5, want some (change the seed)")
	}
	if notConnected == 0 {
		t.Fatalf("no not-connected call among 5, want some (change the seed)")
	}

	stats := s.Stats()
	if stats.CallsStarted != 5 {
		t.Errorf("CallsStarted=%d, want 5", stats.CallsStarted)
	}
	if stats.CallsEnded != int64(connected) {
		t.Errorf("CallsEnded=%d, want %d", stats.CallsEnded, connected)
	}
	if stats.CallsNotConnected != int64(notConnected) {
		t.Errorf("CallsNotConnected=%d, want %d", stats.CallsNotConnected, notConnected)
	}
	if stats.CallsAnalyzed != 5 {
		t.Errorf("CallsAnalyzed=%d, want 5", stats.CallsAnalyzed)
	}
	if stats.LiveCalls != 0 {
		t.Errorf("LiveCalls=%d, want 0", stats.LiveCalls)
	}
	if stats.WebhooksQueued != 0 {
		t.Errorf("WebhooksQueued=%d, want 0", stats.WebhooksQueued)
	}
	if want := int64(len(rec.all())); stats.WebhooksSent != want {
		t.Errorf("WebhooksSent=%d, want %d received", stats.WebhooksSent, want)
	}

	// Run's goroutines are gone once it returned; only the test's servers remain.
	rec.srv.Close()
	api.Close()
	goleak.VerifyNone(t)
}

// checkTranscript checks the transcript fields of one webhook: the text
// equals the Agent:/User: lines of transcript_object, both lists hold the same
// utterances, and every utterance's words concatenate to its content with
// times that increase along the call.
func checkTranscript(t *testing.T, id string, h hook) {
	t.Helper()
	object := utterances(h.call, "transcript_object")
	withTools := utterances(h.call, "transcript_with_tool_calls")
	text, _ := h.call["transcript"].(string)
	if text != formatTranscript(object) {
		t.Errorf("call %s %s transcript=%q, want the lines of transcript_object %q", id, h.event, text, formatTranscript(object))
	}
	if formatTranscript(withTools) != formatTranscript(object) {
		t.Errorf("call %s %s: transcript_with_tool_calls utterances differ from transcript_object", id, h.event)
	}

	previousEnd := -1.0
	for i, u := range object {
		words, _ := u["words"].([]any)
		var joined strings.Builder
		for _, w := range words {
			wm := w.(map[string]any)
			joined.WriteString(wm["word"].(string))
			start, end := wm["start"].(float64), wm["end"].(float64)
			if start < previousEnd || end <= start {
				t.Errorf("call %s %s utterance %d word %q start=%v end=%v after end %v, want increasing times", id, h.event, i, wm["word"], start, end, previousEnd)
			}
			previousEnd = end
		}
		if joined.String() != u["content"] {
			t.Errorf("call %s %s utterance %d words=%q, want content %q", id, h.event, i, joined.String(), u["content"])
		}
	}
}

// checkGrowth checks that each transcript_updated of a call holds at least
// the utterances of the one before, unchanged.
func checkGrowth(t *testing.T, id string, hooks []hook) {
	t.Helper()
	var previous []map[string]any
	for _, h := range hooks {
		if h.event != "transcript_updated" {
			continue
		}
		current := utterances(h.call, "transcript_with_tool_calls")
		if len(current) < len(previous) {
			t.Errorf("call %s: transcript_updated has %d utterances after %d", id, len(current), len(previous))
			return
		}
		for i := range previous {
			if current[i]["content"] != previous[i]["content"] {
				t.Errorf("call %s: utterance %d changed from %q to %q", id, i, previous[i]["content"], current[i]["content"])
			}
		}
		previous = current
	}
}

func TestWebhookSignatures(t *testing.T) {
	rec := newRecorder(t, nil)
	s, _ := newSim(t, sim.Config{
		WebhookURL:        rec.srv.URL,
		Calls:             3,
		TotalCalls:        3,
		Speed:             300,
		PushTranscripts:   true,
		NotConnectedRatio: 0.3,
		AnalysisDelay:     time.Second,
		Seed:              5,
	})
	if err := startRun(t, s).wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	hooks := rec.all()
	if len(hooks) == 0 {
		t.Fatalf("no webhooks received")
	}
	for i, h := range hooks {
		if _, err := retell.VerifySignature(h.body, h.signature, testKey, h.receivedAt); err != nil {
			t.Errorf("webhook %d (%s) signature %q: %v", i, h.event, h.signature, err)
		}
		_, err := retell.VerifySignature(h.body, h.signature, "key_wrong", h.receivedAt)
		if !errors.Is(err, retell.ErrSignatureMismatch) {
			t.Errorf("webhook %d verified with a wrong key: err=%v, want %v", i, err, retell.ErrSignatureMismatch)
		}
		if bytes.HasSuffix(h.body, []byte("\n")) || bytes.Contains(h.body, []byte(`": `)) {
			t.Errorf("webhook %d body is not compact JSON without a trailing newline: %.80s", i, h.body)
		}
	}
}

func TestWebhookRetry(t *testing.T) {
	// The receiver fails the very first delivery and accepts every later one.
	rec := newRecorder(t, func(n int) int {
		if n == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	s, _ := newSim(t, sim.Config{
		WebhookURL:    rec.srv.URL,
		Calls:         1,
		TotalCalls:    1,
		Speed:         300,
		AnalysisDelay: time.Second,
		RetryBackoff:  10 * time.Millisecond,
		Seed:          1,
	})
	if err := startRun(t, s).wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	hooks := rec.all()
	if len(hooks) < 2 {
		t.Fatalf("received %d webhooks, want at least 2", len(hooks))
	}
	if !bytes.Equal(hooks[1].body, hooks[0].body) {
		t.Errorf("retry body differs from the first attempt:\n%s\n%s", hooks[1].body, hooks[0].body)
	}
	if hooks[1].signature != hooks[0].signature {
		t.Errorf("retry signature=%q, want the first attempt's %q", hooks[1].signature, hooks[0].signature)
	}
	stats := s.Stats()
	if stats.WebhooksRetried != 1 {
		t.Errorf("WebhooksRetried=%d, want 1", stats.WebhooksRetried)
	}
	if stats.WebhooksFailed != 0 {
		t.Errorf("WebhooksFailed=%d, want 0", stats.WebhooksFailed)
	}
	if want := int64(len(hooks) - 1); stats.WebhooksSent != want {
		t.Errorf("WebhooksSent=%d, want %d", stats.WebhooksSent, want)
	}
	for id, delivered := range rec.delivered() {
		if seq, want := events(delivered), "call_started call_ended call_analyzed"; seq != want {
			t.Errorf("call %s delivered %q, want %q", id, seq, want)
		}
	}
}

func TestWebhookGiveUp(t *testing.T) {
	rec := newRecorder(t, func(int) int { return http.StatusServiceUnavailable })
	s, _ := newSim(t, sim.Config{
		WebhookURL:    rec.srv.URL,
		Calls:         1,
		TotalCalls:    1,
		Speed:         300,
		AnalysisDelay: time.Second,
		RetryBackoff:  time.Millisecond,
		Seed:          1,
	})
	if err := startRun(t, s).wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	stats := s.Stats()
	received := int64(len(rec.all()))
	if received != 4*stats.WebhooksFailed {
		t.Errorf("received %d attempts for %d webhooks given up, want 4 attempts each", received, stats.WebhooksFailed)
	}
	if stats.WebhooksFailed < 3 {
		t.Errorf("WebhooksFailed=%d, want at least 3 (started or ended, ended, analyzed)", stats.WebhooksFailed)
	}
	if stats.WebhooksRetried != 3*stats.WebhooksFailed {
		t.Errorf("WebhooksRetried=%d, want %d", stats.WebhooksRetried, 3*stats.WebhooksFailed)
	}
	if stats.WebhooksSent != 0 {
		t.Errorf("WebhooksSent=%d, want 0", stats.WebhooksSent)
	}
}
