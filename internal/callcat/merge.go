package callcat

import (
	"bytes"
	"time"
)

// Update is one provider payload about one call, already decoded: a webhook,
// a get-call response or a create-phone-call response.
type Update struct {
	Fields CallFields

	// Snapshot is nil when the payload carried no transcript. Absent is not
	// empty: a nil snapshot keeps the stored transcript.
	Snapshot *Snapshot

	// Delivery identifies the webhook delivery that carried the update, for
	// deduplication. Nil for polls and API responses.
	Delivery *Delivery

	// Lease fences a poll result on a shared store: a Leaser store applies
	// the update only while Lease.Owner still holds the call's lease with
	// Lease.Generation, and fails with ErrLeaseLost otherwise. Nil for
	// webhooks, which any replica applies.
	Lease *Lease
}

// Delivery is the record of one received webhook.
type Delivery struct {
	// Digest is the hex SHA-256 of the raw body. The provider sends no
	// delivery id, so identical bodies count as the same delivery.
	Digest     string
	Event      string
	CallID     string
	SignedAt   int64 // signature timestamp, Unix ms
	ReceivedAt time.Time
}

// State is the stored record of a call before an update.
type State struct {
	Call        Call
	Utterances  []Utterance
	SnapshotKey SnapshotKey
}

// Change is the result of merging an update into a call's state: what the
// store must write in the same transaction.
type Change struct {
	Call        Call // the new call row, LastSeq advanced past Events
	SnapshotKey SnapshotKey
	Created     bool

	// Upserts are utterances to write at their Index; TruncateTo, when >= 0,
	// deletes utterances with Index >= TruncateTo.
	Upserts    []Utterance
	TruncateTo int

	// Events carry consecutive seqs starting at the stored LastSeq + 1.
	Events []Event

	// SnapshotStale is true when the update carried a snapshot that was
	// older than the stored one and was ignored.
	SnapshotStale bool

	callChanged bool
}

// Changed reports whether the store has anything to write.
func (c *Change) Changed() bool {
	return c.Created || len(c.Events) > 0 || len(c.Upserts) > 0 || c.TruncateTo >= 0 || c.callChanged
}

// Merge applies u to cur (nil for a call not yet stored) and returns what
// changed. It is pure: the same inputs give the same Change, so both store
// implementations and the fuzz tests share it.
//
// Rules: a status never moves back, so a terminal status is final. Fields
// absent from the payload keep their stored value. A snapshot replaces the
// stored transcript unless its SnapshotKey is lower. Each new or changed
// utterance emits one utterance event, a shorter transcript one truncate
// event, a status change one status event and a first terminal status one
// ended event, in that order.
func Merge(cur *State, u Update, now time.Time) Change {
	ch := Change{TruncateTo: -1}

	var old State
	if cur == nil {
		ch.Created = true
		old.Call = Call{ID: u.Fields.ID, CreatedAt: now}
	} else {
		old = *cur
	}

	next := old.Call
	ch.callChanged = mergeFields(&next, &u.Fields)

	seq := old.Call.LastSeq
	emit := func(t EventType, data any) {
		seq++
		ch.Events = append(ch.Events, Event{
			CallID:    next.ID,
			Seq:       seq,
			Type:      t,
			Data:      mustMarshal(data),
			CreatedAt: now,
		})
	}

	// Transcript.
	ch.SnapshotKey = old.SnapshotKey
	if s := u.Snapshot; s != nil {
		key := s.Key()
		if key.Compare(old.SnapshotKey) < 0 {
			ch.SnapshotStale = true
		} else {
			if key != old.SnapshotKey {
				// A final snapshot equal in content to the stored live one
				// still changes the key, and the key must be stored so a
				// later live snapshot cannot replace the final transcript.
				ch.callChanged = true
			}
			ch.SnapshotKey = key
			var textChanged []bool
			ch.Upserts, textChanged, ch.TruncateTo = diffUtterances(old.Utterances, s.Utterances)
			for i, up := range ch.Upserts {
				if textChanged[i] {
					emit(EventUtterance, UtteranceData{Index: up.Index, Role: up.Role, Content: up.Content})
				}
			}
			if ch.TruncateTo >= 0 {
				emit(EventTruncate, TruncateData{UtteranceCount: ch.TruncateTo})
			}
			next.UtteranceCount = len(s.Utterances)
		}
	}

	// A transcript correction after the call ended is stored and emitted
	// after the first ended event. It happens when a later final transcript
	// differs from an earlier one. A second ended event follows, so a stream
	// that reads to its ended event always finishes with the final text.
	if old.Call.Status.Terminal() && len(ch.Events) > 0 {
		emit(EventEnded, EndedData{Status: old.Call.Status, DisconnectionReason: next.DisconnectionReason})
	}

	// Status: only forward, and never out of a terminal status.
	if u.Fields.Status.rank() > old.Call.Status.rank() {
		next.Status = u.Fields.Status
		ch.callChanged = true
		emit(EventStatus, StatusData{Status: next.Status, Previous: old.Call.Status})
		if next.Status.Terminal() {
			emit(EventEnded, EndedData{Status: next.Status, DisconnectionReason: next.DisconnectionReason})
		}
	}

	next.LastSeq = seq
	if ch.Changed() {
		next.UpdatedAt = now
	}
	ch.Call = next
	return ch
}

// mergeFields copies the fields present in f into c and reports whether any
// value changed. Status is handled by Merge.
func mergeFields(c *Call, f *CallFields) bool {
	changed := false
	setString := func(dst *string, v string) {
		if v != "" && *dst != v {
			*dst = v
			changed = true
		}
	}
	setInt := func(dst **int64, v *int64) {
		if v != nil && (*dst == nil || **dst != *v) {
			n := *v
			*dst = &n
			changed = true
		}
	}
	setJSON := func(dst *[]byte, v []byte) {
		// A JSON null is treated as absent: it never erases a stored value.
		if len(v) > 0 && string(v) != "null" && !bytes.Equal(*dst, v) {
			*dst = append([]byte(nil), v...)
			changed = true
		}
	}

	setString(&c.Type, f.Type)
	setString(&c.Direction, f.Direction)
	setString(&c.FromNumber, f.FromNumber)
	setString(&c.ToNumber, f.ToNumber)
	setString(&c.AgentID, f.AgentID)
	setString(&c.DisconnectionReason, f.DisconnectionReason)
	setInt(&c.StartTimestamp, f.StartTimestamp)
	setInt(&c.EndTimestamp, f.EndTimestamp)
	setInt(&c.DurationMS, f.DurationMS)
	setJSON((*[]byte)(&c.Metadata), f.Metadata)
	setJSON((*[]byte)(&c.Analysis), f.Analysis)
	return changed
}

// diffUtterances compares the stored utterances with a new snapshot. It
// returns the utterances to write: new ones, and stored ones whose role,
// content or words differ. textChanged reports for each whether its text
// changed, because a words-only change is stored but emits no event.
// truncateTo is the new length when the snapshot is shorter, else -1.
func diffUtterances(stored, snapshot []Utterance) (upserts []Utterance, textChanged []bool, truncateTo int) {
	truncateTo = -1
	for i := range snapshot {
		u := snapshot[i]
		u.Index = i
		if i < len(stored) {
			old := &stored[i]
			sameText := old.Role == u.Role && old.Content == u.Content
			if sameText && sameWords(old.Words, u.Words) {
				continue
			}
			upserts = append(upserts, u)
			textChanged = append(textChanged, !sameText)
			continue
		}
		upserts = append(upserts, u)
		textChanged = append(textChanged, true)
	}
	if len(snapshot) < len(stored) {
		truncateTo = len(snapshot)
	}
	return upserts, textChanged, truncateTo
}
