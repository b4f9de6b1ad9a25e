package retell

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/callcat/callcat/internal/callcat"
)

// Payload errors. ParseWebhook and DecodeCall wrap them with details, so test
// with errors.Is.
var (
	// ErrMalformedBody means the body is not JSON, or not the object shape the
	// provider sends.
	ErrMalformedBody = errors.New("malformed body")

	// ErrMissingCallID means the payload has no call, or its call_id is
	// absent, empty or not a string.
	ErrMissingCallID = errors.New("call_id missing")
)

// Call is the provider's call object (a get-call response or a webhook's
// "call"), reduced to the fields callcat uses. Every other field is skipped
// while decoding.
//
// Decoding is lenient: a field of the wrong JSON type is left at its zero value
// instead of failing the whole payload, because the provider's schema keeps
// changing. DecodeCall and ParseWebhook are the fast paths. json.Unmarshal into
// a Call gives the same result through UnmarshalJSON, at about twice the cost.
type Call struct {
	CallID              string `json:"call_id"`
	CallType            string `json:"call_type,omitempty"`
	AgentID             string `json:"agent_id,omitempty"`
	CallStatus          string `json:"call_status,omitempty"`
	Direction           string `json:"direction,omitempty"`
	FromNumber          string `json:"from_number,omitempty"`
	ToNumber            string `json:"to_number,omitempty"`
	DisconnectionReason string `json:"disconnection_reason,omitempty"`

	// Call times in Unix milliseconds. Nil when absent, null or not a number.
	StartTimestamp *int64 `json:"start_timestamp,omitempty"`
	EndTimestamp   *int64 `json:"end_timestamp,omitempty"`
	DurationMS     *int64 `json:"duration_ms,omitempty"`

	// Metadata and CallAnalysis are kept as raw JSON. Nil when absent or null.
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	CallAnalysis json.RawMessage `json:"call_analysis,omitempty"`

	// TranscriptWithToolCalls holds every transcript item in order: utterances
	// interleaved with tool calls, node transitions, DTMF digits and others.
	// Nil when absent, null, empty or not an array.
	TranscriptWithToolCalls []TranscriptItem `json:"transcript_with_tool_calls,omitempty"`

	// TranscriptObject is the raw transcript_object array, the fallback
	// source of utterances, which Utterances decodes on demand. The decoders
	// keep it only when TranscriptWithToolCalls has no items, and leave it nil
	// when absent or null.
	TranscriptObject json.RawMessage `json:"transcript_object,omitempty"`
}

// TranscriptItem is one item of a transcript array. Only the fields of spoken
// utterances are decoded. Other items (tool calls, node transitions, DTMF,
// SMS, injected context) keep only their Role. A tool call result's text may
// still land in Content.
type TranscriptItem struct {
	Role    string         `json:"role"`
	Content string         `json:"content,omitempty"`
	Words   []callcat.Word `json:"words,omitempty"`
}

// Webhook is a decoded webhook body: {"event": "...", "call": {...}}.
type Webhook struct {
	Event string
	Call  Call
}

// ParseWebhook decodes a raw webhook body. It does not check the signature, so
// call VerifySignature on the same bytes first.
//
// The error wraps ErrMalformedBody when the body is not a JSON object or its
// "call" is not an object, and ErrMissingCallID when "call" is absent or null
// or its call_id is absent, empty or not a string. A non-string event decodes
// as "". Invalid UTF-8 in strings is replaced by U+FFFD, as encoding/json does.
func ParseWebhook(body []byte) (*Webhook, error) {
	if firstByte(body) != '{' {
		return nil, fmt.Errorf("parse webhook: %w: body is %s, not a JSON object", ErrMalformedBody, describeJSON(body))
	}

	var wire webhookWire
	if err := json.Unmarshal(body, &wire); err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return nil, fmt.Errorf("parse webhook: %w: %v", ErrMalformedBody, err)
		}
		// The decoder reports only the first type error. Only "call" and
		// the fields inside it can produce one, and nothing inside "call" is
		// decoded when it is not an object, so its error is the first.
		if typeErr.Field == "call" {
			return nil, fmt.Errorf("parse webhook: %w: call is a JSON %s, not an object", ErrMalformedBody, typeErr.Value)
		}
	}

	if wire.Call == nil {
		return nil, fmt.Errorf("parse webhook: %w: call object absent or null", ErrMissingCallID)
	}
	if wire.Call.CallID == "" {
		return nil, fmt.Errorf("parse webhook: %w: call.call_id absent, empty or not a string", ErrMissingCallID)
	}

	w := &Webhook{Event: string(wire.Event)}
	wire.Call.copyTo(&w.Call)
	return w, nil
}

// DecodeCall decodes a call object such as a get-call or create-phone-call
// response body. The error wraps ErrMalformedBody when data is not a JSON
// object, and ErrMissingCallID when call_id is absent, empty or not a string.
// Fields of the wrong type are left empty, as for Call.
func DecodeCall(data []byte) (*Call, error) {
	if firstByte(data) != '{' {
		return nil, fmt.Errorf("decode call: %w: body is %s, not a JSON object", ErrMalformedBody, describeJSON(data))
	}

	var wire callWire
	if err := decodeLenient(data, &wire); err != nil {
		return nil, fmt.Errorf("decode call: %w: %v", ErrMalformedBody, err)
	}
	if wire.CallID == "" {
		return nil, fmt.Errorf("decode call: %w: call_id absent, empty or not a string", ErrMissingCallID)
	}

	c := new(Call)
	wire.copyTo(c)
	return c, nil
}

// UnmarshalJSON decodes a call object leniently, like DecodeCall, but accepts
// a missing call_id. JSON null leaves c unchanged.
func (c *Call) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var wire callWire
	if err := decodeLenient(data, &wire); err != nil {
		return err
	}
	*c = Call{}
	wire.copyTo(c)
	return nil
}

// Fields returns the call-level fields of c in the domain type. A status the
// domain does not know passes through unchanged as callcat.Status. The
// returned value shares its pointer and raw JSON fields with c.
func (c *Call) Fields() callcat.CallFields {
	return callcat.CallFields{
		ID:                  c.CallID,
		Status:              callcat.Status(c.CallStatus),
		Type:                c.CallType,
		Direction:           c.Direction,
		FromNumber:          c.FromNumber,
		ToNumber:            c.ToNumber,
		AgentID:             c.AgentID,
		StartTimestamp:      c.StartTimestamp,
		EndTimestamp:        c.EndTimestamp,
		DurationMS:          c.DurationMS,
		DisconnectionReason: c.DisconnectionReason,
		Metadata:            c.Metadata,
		Analysis:            c.CallAnalysis,
	}
}

// Utterances returns the spoken utterances of the call's transcript: the items
// of TranscriptWithToolCalls whose role is agent, user or transfer_target, in
// order, with Index counting utterances only. Other roles are skipped.
//
// When TranscriptWithToolCalls has no items, the utterances come from
// TranscriptObject, decoded on every call. present is false when neither field
// holds a non-empty array: the payload carried no transcript, which is not the
// same as an empty one. The utterances share their Words slices with c.
func (c *Call) Utterances() (utterances []callcat.Utterance, present bool) {
	items := c.TranscriptWithToolCalls
	if len(items) == 0 {
		if firstByte(c.TranscriptObject) != '[' {
			return nil, false
		}
		// The bytes were validated when c was decoded. A Call built by hand
		// with invalid bytes counts as having no transcript.
		var wire []itemWire
		if err := decodeLenient(c.TranscriptObject, &wire); err != nil || len(wire) == 0 {
			return nil, false
		}
		items = transcriptItems(wire)
	}

	n := 0
	for i := range items {
		if callcat.IsUtteranceRole(items[i].Role) {
			n++
		}
	}

	utterances = make([]callcat.Utterance, 0, n)
	for i := range items {
		item := &items[i]
		if !callcat.IsUtteranceRole(item.Role) {
			continue
		}
		utterances = append(utterances, callcat.Utterance{
			Index:   len(utterances),
			Role:    item.Role,
			Content: item.Content,
			Words:   item.Words,
		})
	}
	return utterances, true
}

// webhookWire is the decoding shape of a webhook body. Call stays nil when
// "call" is absent or null.
type webhookWire struct {
	Event lenientString `json:"event"`
	Call  *callWire     `json:"call"`
}

// callWire is the decoding shape of Call. It has no UnmarshalJSON method, so
// the decoder fills it in one pass. Its timestamps use lenientInt64 because
// encoding/json allocates a *int64 before it finds that the value is not a
// number, and would leave a bogus 0 behind.
type callWire struct {
	CallID                  string          `json:"call_id"`
	CallType                string          `json:"call_type"`
	AgentID                 string          `json:"agent_id"`
	CallStatus              string          `json:"call_status"`
	Direction               string          `json:"direction"`
	FromNumber              string          `json:"from_number"`
	ToNumber                string          `json:"to_number"`
	DisconnectionReason     string          `json:"disconnection_reason"`
	StartTimestamp          lenientInt64    `json:"start_timestamp"`
	EndTimestamp            lenientInt64    `json:"end_timestamp"`
	DurationMS              lenientInt64    `json:"duration_ms"`
	Metadata                json.RawMessage `json:"metadata"`
	CallAnalysis            json.RawMessage `json:"call_analysis"`
	TranscriptWithToolCalls []itemWire      `json:"transcript_with_tool_calls"`
	TranscriptObject        borrowedJSON    `json:"transcript_object"`
}

// copyTo fills c from w. It must run while the bytes w was decoded from are
// unchanged, because w.TranscriptObject points into them.
func (w *callWire) copyTo(c *Call) {
	c.CallID = w.CallID
	c.CallType = w.CallType
	c.AgentID = w.AgentID
	c.CallStatus = w.CallStatus
	c.Direction = w.Direction
	c.FromNumber = w.FromNumber
	c.ToNumber = w.ToNumber
	c.DisconnectionReason = w.DisconnectionReason
	c.StartTimestamp = w.StartTimestamp.pointer()
	c.EndTimestamp = w.EndTimestamp.pointer()
	c.DurationMS = w.DurationMS.pointer()
	c.Metadata = nilIfNull(w.Metadata)
	c.CallAnalysis = nilIfNull(w.CallAnalysis)
	if len(w.TranscriptWithToolCalls) > 0 {
		c.TranscriptWithToolCalls = transcriptItems(w.TranscriptWithToolCalls)
		return
	}
	if raw := nilIfNull(json.RawMessage(w.TranscriptObject)); raw != nil {
		c.TranscriptObject = bytes.Clone(raw)
	}
}

// borrowedJSON holds a JSON value's bytes without copying them: a slice of the
// input of the json.Unmarshal call that filled it. Every decode path calls
// copyTo before that call's caller returns, and copyTo copies what it keeps.
// The transcript_object fallback is as large as the transcript it backs up and
// is rarely needed, so the copy is made only when it is.
type borrowedJSON []byte

func (b *borrowedJSON) UnmarshalJSON(data []byte) error {
	*b = data
	return nil
}

// lenientInt64 decodes a JSON integer and ignores any other value. Integers
// written in float form (1.781e12) are accepted when they are whole numbers.
type lenientInt64 struct {
	value int64
	valid bool
}

func (n *lenientInt64) UnmarshalJSON(data []byte) error {
	n.value, n.valid = parseInt64(data)
	return nil
}

func (n lenientInt64) pointer() *int64 {
	if !n.valid {
		return nil
	}
	v := n.value
	return &v
}

// parseInt64 parses a JSON number that holds an integer. It avoids strconv in
// the common case because it runs three times per decoded call.
func parseInt64(data []byte) (int64, bool) {
	if len(data) == 0 {
		return 0, false
	}
	digits := data
	negative := digits[0] == '-'
	if negative {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return parseFloatInt64(data)
	}

	var v int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return parseFloatInt64(data)
		}
		v = v*10 + int64(c-'0')
	}
	if negative {
		v = -v
	}
	return v, true
}

// parseFloatInt64 handles the rare numbers parseInt64 does not: exponents,
// fractions and more than 18 digits. Strings, objects and literals fail here.
func parseFloatInt64(data []byte) (int64, bool) {
	if c := data[0]; c != '-' && (c < '0' || c > '9') {
		return 0, false
	}
	if v, err := strconv.ParseInt(string(data), 10, 64); err == nil {
		return v, true
	}
	f, err := strconv.ParseFloat(string(data), 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}

// lenientString decodes a JSON string and ignores any other value.
type lenientString string

func (s *lenientString) UnmarshalJSON(data []byte) error {
	if firstByte(data) != '"' {
		return nil
	}
	var v string
	if err := json.Unmarshal(data, &v); err != nil {
		return nil
	}
	*s = lenientString(v)
	return nil
}

// decodeLenient unmarshals data into v and ignores type mismatches: the
// decoder skips a mismatched value and still fills every other field. Syntax
// errors are returned.
func decodeLenient(data []byte, v any) error {
	err := json.Unmarshal(data, v)
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return nil
	}
	return err
}

func nilIfNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// firstByte returns the first byte of data after JSON whitespace, or 0.
func firstByte(data []byte) byte {
	for _, c := range data {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		default:
			return c
		}
	}
	return 0
}

// describeJSON names the kind of the top-level JSON value for error messages.
func describeJSON(data []byte) string {
	switch c := firstByte(data); {
	case c == 0:
		return "empty"
	case c == '[':
		return "a JSON array"
	case c == '"':
		return "a JSON string"
	case c == 'n':
		return "JSON null"
	case c == 't' || c == 'f':
		return "a JSON boolean"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a JSON number"
	default:
		return "not JSON"
	}
}
