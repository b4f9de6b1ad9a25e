// Package callcat holds the domain types shared by every other package: calls,
// utterances, transcript snapshots, events and the store interface. It imports
// no other package of this module, so the tracker, the store, the stream hub and
// the HTTP API can all depend on it without cycles.
package callcat

import (
	"encoding/json"
	"errors"
	"time"
)

// Status is a call's lifecycle state as the provider names it.
type Status string

// Call statuses. Only registered → ongoing → terminal and registered → terminal
// occur; ended, not_connected and error are terminal and final.
const (
	StatusRegistered   Status = "registered"
	StatusOngoing      Status = "ongoing"
	StatusEnded        Status = "ended"
	StatusNotConnected Status = "not_connected"
	StatusError        Status = "error"
)

// Terminal reports whether s is one of the final statuses.
func (s Status) Terminal() bool {
	return s == StatusEnded || s == StatusNotConnected || s == StatusError
}

// Live reports whether s is a known, non-terminal status.
func (s Status) Live() bool {
	return s == StatusRegistered || s == StatusOngoing
}

// rank orders statuses so that a merge never moves a call backwards.
// Unknown values rank lowest and are never stored over a known one.
func (s Status) rank() int {
	switch {
	case s == StatusRegistered:
		return 1
	case s == StatusOngoing:
		return 2
	case s.Terminal():
		return 3
	default:
		return 0
	}
}

// Errors returned by Store implementations and the tracker.
var (
	// ErrNotFound means the call does not exist in the store.
	ErrNotFound = errors.New("call not found")

	// ErrInvalid means the input failed validation before reaching the store.
	ErrInvalid = errors.New("invalid input")
)

// Call is a call's stored record. Pointer fields are nil while unknown (for
// example start_timestamp of a call that never connected).
type Call struct {
	ID                  string          `json:"call_id"`
	Status              Status          `json:"status"`
	Type                string          `json:"call_type,omitempty"`
	Direction           string          `json:"direction,omitempty"`
	FromNumber          string          `json:"from_number,omitempty"`
	ToNumber            string          `json:"to_number,omitempty"`
	AgentID             string          `json:"agent_id,omitempty"`
	StartTimestamp      *int64          `json:"start_timestamp"`
	EndTimestamp        *int64          `json:"end_timestamp"`
	DurationMS          *int64          `json:"duration_ms"`
	DisconnectionReason string          `json:"disconnection_reason,omitempty"`
	UtteranceCount      int             `json:"utterance_count"`
	Metadata            json.RawMessage `json:"metadata,omitempty"`
	Analysis            json.RawMessage `json:"call_analysis,omitempty"`

	// LastSeq is the seq of the newest event stored for the call (0: none).
	LastSeq int64 `json:"-"`

	// CreatedAt is when callcat first stored the call; UpdatedAt when it last
	// changed. Both are callcat's clock, not the provider's.
	CreatedAt time.Time `json:"-"`
	UpdatedAt time.Time `json:"-"`
}

// CallFields is the part of a provider payload that describes the call itself.
// Empty strings and nil pointers mean "not in this payload" and never erase a
// stored value.
type CallFields struct {
	ID                  string
	Status              Status
	Type                string
	Direction           string
	FromNumber          string
	ToNumber            string
	AgentID             string
	StartTimestamp      *int64
	EndTimestamp        *int64
	DurationMS          *int64
	DisconnectionReason string
	Metadata            json.RawMessage
	Analysis            json.RawMessage
}
