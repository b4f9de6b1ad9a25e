package benchkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
)

// DefaultFixture is the provider payload the bodies are built from, relative
// to the repository root: a four-minute call with 80 transcript items.
const DefaultFixture = "testdata/retell/long_call/get_call_ended_analyzed.json"

// utteranceRoles are the transcript roles that count as spoken utterances.
var utteranceRoles = map[string]bool{"agent": true, "user": true, "transfer_target": true}

type fixtureCall struct {
	StartTimestamp          int64             `json:"start_timestamp"`
	DurationMS              int64             `json:"duration_ms"`
	TranscriptWithToolCalls []json.RawMessage `json:"transcript_with_tool_calls"`
}

type word struct {
	Word  string  `json:"word"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

type utterance struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	Words   []word `json:"words"`
}

// item is one transcript item with its JSON encoded once.
type item struct {
	utterance *utterance // nil for tool calls, node transitions and others
	encoded   []byte
}

// Transcripts builds signed-ready transcript_updated bodies of any size from
// the fixture's conversation, repeated with shifted word times when a body
// needs more items than the fixture has. Bodies carry transcript,
// transcript_object and transcript_with_tool_calls, as the provider's do.
type Transcripts struct {
	items []item
	// sizes[n] is the body size with the first n items, for a 27-character
	// call id and no tail.
	sizes []int
}

// LoadTranscripts reads the fixture at path and prepares bodies of up to
// maxBytes.
func LoadTranscripts(path string, maxBytes int) (*Transcripts, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read fixture: %w (run from the repository root or pass the fixture path)", err)
	}
	var fc fixtureCall
	if err := json.Unmarshal(data, &fc); err != nil {
		return nil, fmt.Errorf("decode fixture %s: %w", path, err)
	}
	if len(fc.TranscriptWithToolCalls) == 0 {
		return nil, fmt.Errorf("fixture %s has no transcript_with_tool_calls", path)
	}
	period := float64(fc.DurationMS)/1000 + 1

	t := &Transcripts{}
	t.sizes = append(t.sizes, len(t.Body("call_000000000000000000000000", 0, "")))
	for cycle := 0; t.sizes[len(t.sizes)-1] < maxBytes; cycle++ {
		for _, raw := range fc.TranscriptWithToolCalls {
			it, err := shiftedItem(raw, float64(cycle)*period)
			if err != nil {
				return nil, fmt.Errorf("fixture %s: %w", path, err)
			}
			t.items = append(t.items, it)
			t.sizes = append(t.sizes, len(t.Body("call_000000000000000000000000", len(t.items), "")))
			if t.sizes[len(t.sizes)-1] >= maxBytes {
				break
			}
		}
	}
	return t, nil
}

func shiftedItem(raw json.RawMessage, shift float64) (item, error) {
	var probe struct {
		Role string `json:"role"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return item{}, err
	}
	if !utteranceRoles[probe.Role] {
		return item{encoded: compact(raw)}, nil
	}
	u := new(utterance)
	if err := json.Unmarshal(raw, u); err != nil {
		return item{}, err
	}
	for i := range u.Words {
		u.Words[i].Start += shift
		u.Words[i].End += shift
	}
	enc, err := json.Marshal(u)
	if err != nil {
		return item{}, err
	}
	return item{utterance: u, encoded: enc}, nil
}

func compact(raw []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

// Items returns how many transcript items the largest body holds.
func (t *Transcripts) Items() int { return len(t.items) }

// ItemsFor returns the number of items whose body is closest to size bytes
// without going under it, at least 1.
func (t *Transcripts) ItemsFor(size int) int {
	n := sort.SearchInts(t.sizes, size)
	return max(1, min(n, len(t.items)))
}

// Size returns the body size with n items and no tail.
func (t *Transcripts) Size(n int) int { return t.sizes[min(n, len(t.items))] }

// Body returns a transcript_updated body for callID with the first n items.
// A non-empty tail is appended as one more word to the last utterance, so a
// receiver can match the utterance event it causes.
func (t *Transcripts) Body(callID string, n int, tail string) []byte {
	return t.body("transcript_updated", "ongoing", callID, n, tail)
}

// EndedBody returns a call_ended body for callID whose final transcript has
// the first n items.
func (t *Transcripts) EndedBody(callID string, n int) []byte {
	return t.body("call_ended", "ended", callID, n, "")
}

func (t *Transcripts) body(event, status, callID string, n int, tail string) []byte {
	n = min(n, len(t.items))
	last := -1
	if tail != "" {
		for i := n - 1; i >= 0; i-- {
			if t.items[i].utterance != nil {
				last = i
				break
			}
		}
	}
	var lastEncoded []byte
	var lastUtt *utterance
	if last >= 0 {
		u := *t.items[last].utterance
		end := 0.0
		if len(u.Words) > 0 {
			end = u.Words[len(u.Words)-1].End
		}
		u.Words = append(u.Words[:len(u.Words):len(u.Words)], word{Word: tail, Start: end + 0.05, End: end + 0.3})
		u.Content += tail
		lastUtt = &u
		lastEncoded, _ = json.Marshal(&u)
	}
	encodedAt := func(i int) []byte {
		if i == last {
			return lastEncoded
		}
		return t.items[i].encoded
	}
	utteranceAt := func(i int) *utterance {
		if i == last {
			return lastUtt
		}
		return t.items[i].utterance
	}

	size := 4096
	if n < len(t.sizes) {
		size = t.sizes[n] + len(tail)*4 + 256
	}
	b := make([]byte, 0, size)
	b = append(b, `{"event":`...)
	b = strconv.AppendQuote(b, event)
	b = append(b, `,"call":{"call_id":`...)
	b = strconv.AppendQuote(b, callID)
	b = append(b, `,"call_type":"phone_call","agent_id":"agent_62086c674021e77f8f507b5a57","agent_version":2,`+
		`"agent_name":"Callcat Bench Agent","call_status":`...)
	b = strconv.AppendQuote(b, status)
	b = append(b, `,"direction":"outbound",`+
		`"from_number":"+15550100001","to_number":"+15550142310",`+
		`"metadata":{"callcat_ref":"bench"},"data_storage_setting":"everything","opt_in_signed_url":false,`+
		`"start_timestamp":1781000011483,"telephony_identifier":{"twilio_call_sid":"CA0000000000000000000000000000bench"},`+
		`"transcript":`...)

	var text bytes.Buffer
	for i := range n {
		if u := utteranceAt(i); u != nil {
			switch u.Role {
			case "agent":
				text.WriteString("Agent: ")
			case "user":
				text.WriteString("User: ")
			default:
				text.WriteString(u.Role + ": ")
			}
			text.WriteString(u.Content)
			text.WriteByte('\n')
		}
	}
	quoted, _ := json.Marshal(text.String())
	b = append(b, quoted...)

	b = append(b, `,"transcript_object":[`...)
	first := true
	for i := range n {
		if utteranceAt(i) == nil {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, encodedAt(i)...)
	}
	b = append(b, `],"transcript_with_tool_calls":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, encodedAt(i)...)
	}
	return append(b, "]}}"...)
}

// CallStartedBody returns a call_started body for callID.
func CallStartedBody(callID string) []byte {
	b := []byte(`{"event":"call_started","call":{"call_id":`)
	b = strconv.AppendQuote(b, callID)
	return append(b, `,"call_type":"phone_call","agent_id":"agent_62086c674021e77f8f507b5a57","call_status":"ongoing",`+
		`"direction":"outbound","from_number":"+15550100001","to_number":"+15550142310","start_timestamp":1781000011483}}`...)
}

// CallID returns a provider-shaped call id ("call_" and 27 hex digits) for
// a run prefix and a sequence number.
func CallID(run uint32, n int) string {
	return fmt.Sprintf("call_%08x%019x", run, n)
}
