package callcat

import (
	"encoding/json"
	"time"
)

// EventType names the kind of a call event. The names are the SSE event names.
type EventType string

// Event types, in the order one update emits them.
const (
	// EventUtterance carries a new or changed utterance: {"index","role","content"}.
	EventUtterance EventType = "utterance"

	// EventTruncate means the transcript now has fewer utterances: {"utterance_count"}.
	EventTruncate EventType = "truncate"

	// EventStatus carries a status change: {"status","previous"}.
	EventStatus EventType = "status"

	// EventEnded is the last event of a call: {"status","disconnection_reason"}.
	EventEnded EventType = "ended"
)

// Event is one stored change of a call. Seq starts at 1 for each call and
// increases by one per event, so a client can resume after the last seq it saw.
type Event struct {
	CallID    string          `json:"call_id"`
	Seq       int64           `json:"seq"`
	Type      EventType       `json:"type"`
	Data      json.RawMessage `json:"data"`
	CreatedAt time.Time       `json:"created_at"`
}

// UtteranceData is the payload of an utterance event.
type UtteranceData struct {
	Index   int    `json:"index"`
	Role    string `json:"role"`
	Content string `json:"content"`
}

// TruncateData is the payload of a truncate event.
type TruncateData struct {
	UtteranceCount int `json:"utterance_count"`
}

// StatusData is the payload of a status event.
type StatusData struct {
	Status   Status `json:"status"`
	Previous Status `json:"previous,omitempty"`
}

// EndedData is the payload of an ended event.
type EndedData struct {
	Status              Status `json:"status"`
	DisconnectionReason string `json:"disconnection_reason,omitempty"`
}

// mustMarshal encodes event payloads, which are plain structs of strings and
// numbers that cannot fail to encode. encoding/json escapes U+2028, U+2029 and
// control characters, so Data is always a single line.
func mustMarshal(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic("callcat: encode event data: " + err.Error())
	}
	return b
}
