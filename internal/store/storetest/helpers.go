package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/callcat/callcat/internal/callcat"
)

// Word timing of makeUtterances: utterance i starts at i×utteranceSpacing
// seconds, and each word lasts wordLength seconds.
const (
	wordsPerUtterance = 4
	utteranceSpacing  = 3.0
	wordLength        = 0.25
)

// makeUtterances returns the first n utterances of a conversation that
// alternates agent and user. Every call to it returns equal values, so a
// snapshot of n utterances is always a prefix of a snapshot of n+1.
func makeUtterances(n int) []callcat.Utterance {
	utterances := make([]callcat.Utterance, n)
	for i := range utterances {
		role := callcat.RoleAgent
		if i%2 == 1 {
			role = callcat.RoleUser
		}
		u := callcat.Utterance{Index: i, Role: role}
		for j := range wordsPerUtterance {
			u = appendWord(u, float64(i)*utteranceSpacing+float64(j)*wordLength, fmt.Sprintf("u%dw%d", i, j))
		}
		utterances[i] = u
	}
	return utterances
}

// growUtterance returns u with extra more words after its last one, as the
// provider sends while someone is still speaking.
func growUtterance(u callcat.Utterance, extra int) callcat.Utterance {
	grown := u
	grown.Words = slices.Clone(u.Words)
	start := 0.0
	if len(u.Words) > 0 {
		start = u.Words[len(u.Words)-1].End
	}
	for j := range extra {
		grown = appendWord(grown, start+float64(j)*wordLength, fmt.Sprintf("more%d", j))
	}
	return grown
}

// appendWord adds one word to u. As in the provider's payloads, joining the
// words gives the content, so every word after the first starts with a space.
func appendWord(u callcat.Utterance, start float64, text string) callcat.Utterance {
	if len(u.Words) > 0 {
		text = " " + text
	}
	u.Words = append(u.Words, callcat.Word{Word: text, Start: start, End: start + wordLength})
	u.Content += text
	return u
}

// liveSnapshot returns a live snapshot of the first n utterances. TakenAt
// grows with n like the signature times of successive webhooks.
func liveSnapshot(n int) *callcat.Snapshot {
	return &callcat.Snapshot{Utterances: makeUtterances(n), TakenAt: int64(1781000000000 + n)}
}

// finalSnapshot returns a post-call snapshot of the first n utterances.
func finalSnapshot(n int) *callcat.Snapshot {
	s := liveSnapshot(n)
	s.Final = true
	return s
}

// fullUpdate returns an update for a new call with every field set.
func fullUpdate(id string) callcat.Update {
	return callcat.Update{Fields: callcat.CallFields{
		ID:                  id,
		Status:              callcat.StatusOngoing,
		Type:                "phone_call",
		Direction:           "outbound",
		FromNumber:          "+15550100001",
		ToNumber:            "+15550142310",
		AgentID:             "agent_3f1c9b2e7d4a",
		StartTimestamp:      int64Pointer(1781000011483),
		EndTimestamp:        int64Pointer(1781000057040),
		DurationMS:          int64Pointer(45557),
		DisconnectionReason: "agent_hangup",
		Metadata:            json.RawMessage(`{"customer_id":"cus_42","tags":["vip"]}`),
		Analysis:            json.RawMessage(`{"call_successful":true}`),
	}}
}

// statusUpdate returns an update that carries only an id and a status.
func statusUpdate(id string, status callcat.Status) callcat.Update {
	return callcat.Update{Fields: callcat.CallFields{ID: id, Status: status}}
}

// snapshotUpdate returns an update with a status (none when empty) and a snapshot.
func snapshotUpdate(id string, status callcat.Status, s *callcat.Snapshot) callcat.Update {
	u := statusUpdate(id, status)
	u.Snapshot = s
	return u
}

func int64Pointer(v int64) *int64 {
	return &v
}

func mustApply(t *testing.T, s callcat.Store, u callcat.Update) callcat.ApplyResult {
	t.Helper()
	res, err := s.Apply(t.Context(), u)
	if err != nil {
		t.Fatalf("Apply(%s): %v", u.Fields.ID, err)
	}
	return res
}

func mustTranscript(t *testing.T, s callcat.Store, id string) []callcat.Utterance {
	t.Helper()
	transcript, err := s.Transcript(t.Context(), id)
	if err != nil {
		t.Fatalf("Transcript(%s): %v", id, err)
	}
	return transcript
}

// allEvents reads every stored event of a call, a page at a time.
func allEvents(t *testing.T, s callcat.Store, id string) []callcat.Event {
	t.Helper()
	var events []callcat.Event
	after := int64(0)
	for {
		page, err := s.Events(t.Context(), id, after, 100)
		if err != nil {
			t.Fatalf("Events(%s, after=%d): %v", id, after, err)
		}
		if len(page) == 0 {
			return events
		}
		events = append(events, page...)
		after = page[len(page)-1].Seq
	}
}

func eventTypes(events []callcat.Event) []callcat.EventType {
	types := make([]callcat.EventType, len(events))
	for i, ev := range events {
		types[i] = ev.Type
	}
	return types
}

func decodeData(t *testing.T, ev callcat.Event, v any) {
	t.Helper()
	if err := json.Unmarshal(ev.Data, v); err != nil {
		t.Fatalf("decode %s event data %s: %v", ev.Type, ev.Data, err)
	}
}

// replayEvents rebuilds a transcript from utterance and truncate events the
// way a stream client does.
func replayEvents(t *testing.T, events []callcat.Event) []callcat.UtteranceData {
	t.Helper()
	var transcript []callcat.UtteranceData
	for _, ev := range events {
		switch ev.Type {
		case callcat.EventUtterance:
			var data callcat.UtteranceData
			decodeData(t, ev, &data)
			switch {
			case data.Index < len(transcript):
				transcript[data.Index] = data
			case data.Index == len(transcript):
				transcript = append(transcript, data)
			default:
				t.Fatalf("event %d: utterance index %d skips past length %d", ev.Seq, data.Index, len(transcript))
			}
		case callcat.EventTruncate:
			var data callcat.TruncateData
			decodeData(t, ev, &data)
			if data.UtteranceCount > len(transcript) {
				t.Fatalf("event %d: truncate to %d grows length %d", ev.Seq, data.UtteranceCount, len(transcript))
			}
			transcript = transcript[:data.UtteranceCount]
		}
	}
	return transcript
}

func utteranceData(utterances []callcat.Utterance) []callcat.UtteranceData {
	data := make([]callcat.UtteranceData, len(utterances))
	for i, u := range utterances {
		data[i] = callcat.UtteranceData{Index: u.Index, Role: u.Role, Content: u.Content}
	}
	return data
}

func callIDs(calls []callcat.Call) []string {
	ids := make([]string, len(calls))
	for i, c := range calls {
		ids[i] = c.ID
	}
	return ids
}

func sortedValues(m map[callcat.Status]string) []string {
	values := make([]string, 0, len(m))
	for _, v := range m {
		values = append(values, v)
	}
	slices.Sort(values)
	return values
}

// newerFirst reports whether a comes before b in newest-first order: by
// creation time, then by call id.
func newerFirst(a, b callcat.Call) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.After(b.CreatedAt)
	}
	return strings.Compare(a.ID, b.ID) > 0
}

// distinctTimes reports whether every call has its own creation time.
func distinctTimes(calls []callcat.Call) bool {
	for i := 1; i < len(calls); i++ {
		if !calls[i].CreatedAt.After(calls[i-1].CreatedAt) {
			return false
		}
	}
	return true
}

// matches reports whether a call with this status passes the filter.
func matches(filter callcat.StatusFilter, status callcat.Status) bool {
	switch filter {
	case callcat.FilterLive:
		return !status.Terminal()
	case callcat.FilterEnded:
		return status.Terminal()
	default:
		return true
	}
}
