package callcat

import "math"

// Word is one timed word of an utterance. Start and End are seconds from the
// start of the call audio, as the provider sends them.
type Word struct {
	Word  string  `json:"word"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// Utterance is one spoken turn: role agent, user or transfer_target.
// Index is its 0-based position in the call's transcript.
type Utterance struct {
	Index   int    `json:"index"`
	Role    string `json:"role"`
	Content string `json:"content"`
	Words   []Word `json:"words"`
}

// Roles of utterances. Other transcript items (tool calls, node transitions,
// DTMF) are not utterances.
const (
	RoleAgent          = "agent"
	RoleUser           = "user"
	RoleTransferTarget = "transfer_target"
)

// IsUtteranceRole reports whether an item with this role is a spoken utterance.
func IsUtteranceRole(role string) bool {
	return role == RoleAgent || role == RoleUser || role == RoleTransferTarget
}

// Snapshot is one full copy of a call's utterance list as a provider payload
// carried it. The provider never sends deltas, so every snapshot replaces the
// stored transcript unless it is older than the stored one.
type Snapshot struct {
	Utterances []Utterance

	// Final is true for a transcript taken from a terminal payload (call_ended,
	// call_analyzed or a get-call whose status is terminal). A final snapshot
	// wins over any live one, whatever its size, because the provider's
	// post-call transcript is the record.
	Final bool

	// TakenAt is when the snapshot was produced in Unix milliseconds: the
	// signature timestamp of a webhook, or callcat's clock when a poll
	// returned. It only breaks ties between snapshots of equal size.
	TakenAt int64
}

// SnapshotKey orders snapshots of one call: Final first, then the number of
// utterances, then the end of the latest word, then TakenAt. A snapshot whose
// key is lower than the stored key is stale and ignored.
type SnapshotKey struct {
	Final       bool    `json:"final"`
	Count       int     `json:"count"`
	LastWordEnd float64 `json:"last_word_end"`
	TakenAt     int64   `json:"taken_at"`
}

// Key returns the ordering key of s.
func (s *Snapshot) Key() SnapshotKey {
	return SnapshotKey{
		Final:       s.Final,
		Count:       len(s.Utterances),
		LastWordEnd: lastWordEnd(s.Utterances),
		TakenAt:     s.TakenAt,
	}
}

// Compare returns -1, 0 or +1 as k is older than, equal to or newer than o.
func (k SnapshotKey) Compare(o SnapshotKey) int {
	switch {
	case k.Final != o.Final:
		if k.Final {
			return 1
		}
		return -1
	case k.Count != o.Count:
		return cmpInt(int64(k.Count), int64(o.Count))
	case k.LastWordEnd != o.LastWordEnd:
		if k.LastWordEnd > o.LastWordEnd {
			return 1
		}
		return -1
	default:
		return cmpInt(k.TakenAt, o.TakenAt)
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a > b:
		return 1
	case a < b:
		return -1
	default:
		return 0
	}
}

// lastWordEnd returns the latest word end time in the snapshot. It scans
// every word rather than the last one because adjacent words have been seen
// to overlap by about a millisecond. NaN and infinite times count as 0 so the
// ordering of SnapshotKey stays total.
func lastWordEnd(utterances []Utterance) float64 {
	var latest float64
	for i := range utterances {
		for _, w := range utterances[i].Words {
			if w.End > latest && !math.IsInf(w.End, 1) {
				latest = w.End
			}
		}
	}
	return latest
}

// TranscriptText formats utterances the way the provider's own transcript
// string does: one "Agent: …" or "User: …" line per utterance, each ending in
// a newline.
func TranscriptText(utterances []Utterance) string {
	size := 0
	for _, u := range utterances {
		size += len(u.Content) + 16
	}

	buf := make([]byte, 0, size)
	for _, u := range utterances {
		buf = append(buf, RoleLabel(u.Role)...)
		buf = append(buf, ": "...)
		buf = append(buf, u.Content...)
		buf = append(buf, '\n')
	}
	return string(buf)
}

// RoleLabel returns the speaker label the provider uses in its transcript text.
func RoleLabel(role string) string {
	switch role {
	case RoleAgent:
		return "Agent"
	case RoleUser:
		return "User"
	case RoleTransferTarget:
		return "Transfer target"
	default:
		return role
	}
}

func sameWords(a, b []Word) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
