package callcat_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/google/go-cmp/cmp"
)

var now = time.UnixMilli(1781000000000)

// growingSnapshots returns n snapshots of one conversation, each a later
// moment than the one before: the last utterance grows word by word, then a
// new one starts.
func growingSnapshots(n int) []callcat.Snapshot {
	var (
		out   []callcat.Snapshot
		utts  []callcat.Utterance
		clock float64
	)
	for i := 0; len(out) < n; i++ {
		role := callcat.RoleAgent
		if i%2 == 1 {
			role = callcat.RoleUser
		}
		utts = append(utts, callcat.Utterance{Role: role})
		for w := 0; w < 3 && len(out) < n; w++ {
			last := &utts[len(utts)-1]
			word := fmt.Sprintf("w%d.%d ", i, w)
			clock += 0.4
			last.Content += word
			last.Words = append(last.Words, callcat.Word{Word: word, Start: clock - 0.3, End: clock})
			out = append(out, callcat.Snapshot{Utterances: cloneUtterances(utts), TakenAt: int64(len(out))})
		}
	}
	return out
}

func cloneUtterances(in []callcat.Utterance) []callcat.Utterance {
	out := make([]callcat.Utterance, len(in))
	for i, u := range in {
		u.Index = i
		u.Words = append([]callcat.Word(nil), u.Words...)
		out[i] = u
	}
	return out
}

// applyAll merges updates in order the way a store does, and also replays the
// emitted events the way an SSE client does. It returns the stored state and
// the client's view (content per index).
func applyAll(t *testing.T, updates []callcat.Update) (*callcat.State, []string) {
	t.Helper()

	var (
		state  *callcat.State
		client []string
	)
	for _, u := range updates {
		ch := callcat.Merge(state, u, now)

		next := callcat.State{Call: ch.Call, SnapshotKey: ch.SnapshotKey}
		if state != nil {
			next.Utterances = append(next.Utterances, state.Utterances...)
		}
		for _, up := range ch.Upserts {
			if up.Index < len(next.Utterances) {
				next.Utterances[up.Index] = up
			} else {
				next.Utterances = append(next.Utterances, up)
			}
		}
		if ch.TruncateTo >= 0 {
			next.Utterances = next.Utterances[:ch.TruncateTo]
		}

		wantSeq := int64(0)
		if state != nil {
			wantSeq = state.Call.LastSeq
		}
		for _, ev := range ch.Events {
			wantSeq++
			if ev.Seq != wantSeq {
				t.Fatalf("event seq=%d, want %d", ev.Seq, wantSeq)
			}
			client = applyEvent(t, client, ev)
		}
		state = &next
	}
	return state, client
}

func applyEvent(t *testing.T, client []string, ev callcat.Event) []string {
	t.Helper()
	switch ev.Type {
	case callcat.EventUtterance:
		var d callcat.UtteranceData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatalf("decode utterance event: %v", err)
		}
		for len(client) <= d.Index {
			client = append(client, "")
		}
		client[d.Index] = d.Content
	case callcat.EventTruncate:
		var d callcat.TruncateData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatalf("decode truncate event: %v", err)
		}
		client = client[:d.UtteranceCount]
	}
	return client
}

func contents(utts []callcat.Utterance) []string {
	out := make([]string, len(utts))
	for i, u := range utts {
		out[i] = u.Content
	}
	return out
}

func snapshotUpdate(s callcat.Snapshot, status callcat.Status) callcat.Update {
	s.Utterances = cloneUtterances(s.Utterances)
	return callcat.Update{Fields: callcat.CallFields{ID: "call_1", Status: status}, Snapshot: &s}
}

func TestMergeCreatesCall(t *testing.T) {
	ch := callcat.Merge(nil, callcat.Update{Fields: callcat.CallFields{ID: "call_1", Status: callcat.StatusOngoing, AgentID: "agent_1"}}, now)

	if !ch.Created {
		t.Fatalf("Created=false, want true")
	}
	if ch.Call.Status != callcat.StatusOngoing {
		t.Fatalf("status=%q, want ongoing", ch.Call.Status)
	}
	if ch.Call.AgentID != "agent_1" {
		t.Fatalf("agent_id=%q, want agent_1", ch.Call.AgentID)
	}
	if len(ch.Events) != 1 || ch.Events[0].Type != callcat.EventStatus || ch.Events[0].Seq != 1 {
		t.Fatalf("events=%+v, want one status event with seq 1", ch.Events)
	}
}

func TestMergeInOrderEmitsEachChange(t *testing.T) {
	snaps := growingSnapshots(12)
	var updates []callcat.Update
	for _, s := range snaps {
		updates = append(updates, snapshotUpdate(s, callcat.StatusOngoing))
	}

	state, client := applyAll(t, updates)

	want := contents(snaps[len(snaps)-1].Utterances)
	if diff := cmp.Diff(want, contents(state.Utterances)); diff != "" {
		t.Fatalf("stored transcript (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, client); diff != "" {
		t.Fatalf("client transcript (-want +got):\n%s", diff)
	}
	// One status event, then one utterance event per snapshot: each adds or
	// grows exactly one utterance.
	if got, wantSeq := state.Call.LastSeq, int64(1+len(snaps)); got != wantSeq {
		t.Fatalf("last seq=%d, want %d", got, wantSeq)
	}
}

func TestMergeUnchangedSnapshotEmitsNothing(t *testing.T) {
	snap := growingSnapshots(5)[4]
	state, _ := applyAll(t, []callcat.Update{snapshotUpdate(snap, callcat.StatusOngoing)})

	ch := callcat.Merge(state, snapshotUpdate(snap, callcat.StatusOngoing), now)
	if len(ch.Events) != 0 {
		t.Fatalf("events=%d, want 0", len(ch.Events))
	}
	if ch.Changed() {
		t.Fatalf("Changed()=true, want false")
	}
}

func TestMergeStaleSnapshotIgnored(t *testing.T) {
	snaps := growingSnapshots(9)
	state, _ := applyAll(t, []callcat.Update{snapshotUpdate(snaps[8], callcat.StatusOngoing)})

	ch := callcat.Merge(state, snapshotUpdate(snaps[2], callcat.StatusOngoing), now)
	if !ch.SnapshotStale {
		t.Fatalf("SnapshotStale=false, want true")
	}
	if len(ch.Events) != 0 || len(ch.Upserts) != 0 || ch.TruncateTo != -1 {
		t.Fatalf("stale snapshot changed state: events=%d upserts=%d truncate=%d", len(ch.Events), len(ch.Upserts), ch.TruncateTo)
	}
}

func TestMergeFinalSnapshotTruncates(t *testing.T) {
	snaps := growingSnapshots(9)
	state, _ := applyAll(t, []callcat.Update{snapshotUpdate(snaps[8], callcat.StatusOngoing)})

	final := snaps[3]
	final.Final = true
	ch := callcat.Merge(state, snapshotUpdate(final, callcat.StatusEnded), now)

	var types []callcat.EventType
	for _, ev := range ch.Events {
		types = append(types, ev.Type)
	}
	// snaps[3] holds the second utterance with one word where snaps[8] held
	// three, so that utterance changes before the list is cut.
	want := []callcat.EventType{callcat.EventUtterance, callcat.EventTruncate, callcat.EventStatus, callcat.EventEnded}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Fatalf("event types (-want +got):\n%s", diff)
	}
	if ch.TruncateTo != len(final.Utterances) {
		t.Fatalf("truncate to %d, want %d", ch.TruncateTo, len(final.Utterances))
	}
	if ch.Call.UtteranceCount != len(final.Utterances) {
		t.Fatalf("utterance_count=%d, want %d", ch.Call.UtteranceCount, len(final.Utterances))
	}
}

func TestMergeTerminalIsFinal(t *testing.T) {
	state, _ := applyAll(t, []callcat.Update{
		{Fields: callcat.CallFields{ID: "call_1", Status: callcat.StatusOngoing}},
		{Fields: callcat.CallFields{ID: "call_1", Status: callcat.StatusEnded, DisconnectionReason: "agent_hangup"}},
	})

	for _, status := range []callcat.Status{callcat.StatusOngoing, callcat.StatusRegistered, callcat.StatusError, "mystery"} {
		ch := callcat.Merge(state, callcat.Update{Fields: callcat.CallFields{ID: "call_1", Status: status}}, now)
		if ch.Call.Status != callcat.StatusEnded {
			t.Fatalf("after %q: status=%q, want ended", status, ch.Call.Status)
		}
		if len(ch.Events) != 0 {
			t.Fatalf("after %q: events=%d, want 0", status, len(ch.Events))
		}
	}
}

func TestMergeEndedCarriesReason(t *testing.T) {
	ch := callcat.Merge(nil, callcat.Update{Fields: callcat.CallFields{
		ID: "call_1", Status: callcat.StatusNotConnected, DisconnectionReason: "dial_no_answer",
	}}, now)

	last := ch.Events[len(ch.Events)-1]
	if last.Type != callcat.EventEnded {
		t.Fatalf("last event=%q, want ended", last.Type)
	}
	want := `{"status":"not_connected","disconnection_reason":"dial_no_answer"}`
	if string(last.Data) != want {
		t.Fatalf("ended data=%s, want %s", last.Data, want)
	}
}

func TestMergeAbsentFieldsKeepValues(t *testing.T) {
	start := int64(1781000011483)
	state, _ := applyAll(t, []callcat.Update{
		{Fields: callcat.CallFields{ID: "call_1", Status: callcat.StatusOngoing, FromNumber: "+15550100001", StartTimestamp: &start, Metadata: json.RawMessage(`{"a":1}`)}},
		{Fields: callcat.CallFields{ID: "call_1", Status: callcat.StatusOngoing}},
	})

	if state.Call.FromNumber != "+15550100001" {
		t.Fatalf("from_number=%q, want kept", state.Call.FromNumber)
	}
	if state.Call.StartTimestamp == nil || *state.Call.StartTimestamp != start {
		t.Fatalf("start_timestamp=%v, want %d", state.Call.StartTimestamp, start)
	}
	if string(state.Call.Metadata) != `{"a":1}` {
		t.Fatalf("metadata=%s, want kept", state.Call.Metadata)
	}
}

func TestMergeAnyOrderEndsAtNewest(t *testing.T) {
	snaps := growingSnapshots(15)
	newest := contents(snaps[len(snaps)-1].Utterances)

	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		order := rng.Perm(len(snaps))
		var updates []callcat.Update
		for _, i := range order {
			updates = append(updates, snapshotUpdate(snaps[i], callcat.StatusOngoing))
		}

		state, client := applyAll(t, updates)
		if diff := cmp.Diff(newest, contents(state.Utterances)); diff != "" {
			t.Fatalf("trial %d order %v: stored (-want +got):\n%s", trial, order, diff)
		}
		if diff := cmp.Diff(newest, client); diff != "" {
			t.Fatalf("trial %d order %v: client (-want +got):\n%s", trial, order, diff)
		}
	}
}

// FuzzMergeOrder checks that applying growing snapshots in any order, each
// possibly twice, ends in the newest snapshot's transcript, and that a client
// following the events ends with the same text.
func FuzzMergeOrder(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{7, 6, 5, 4, 3, 2, 1, 0})
	f.Add([]byte{5, 1, 5, 0, 3, 3, 9})
	f.Add([]byte{})

	snaps := growingSnapshots(10)
	newest := strings.Join(contents(snaps[len(snaps)-1].Utterances), "|")

	f.Fuzz(func(t *testing.T, order []byte) {
		var updates []callcat.Update
		for _, b := range order {
			updates = append(updates, snapshotUpdate(snaps[int(b)%len(snaps)], callcat.StatusOngoing))
		}
		// The newest snapshot always arrives at some point; where depends
		// on the input.
		pos := 0
		if len(order) > 0 {
			pos = int(order[0]) % (len(updates) + 1)
		}
		updates = append(updates[:pos], append([]callcat.Update{snapshotUpdate(snaps[len(snaps)-1], callcat.StatusOngoing)}, updates[pos:]...)...)

		state, client := applyAll(t, updates)
		if got := strings.Join(contents(state.Utterances), "|"); got != newest {
			t.Fatalf("stored=%q, want %q", got, newest)
		}
		if got := strings.Join(client, "|"); got != newest {
			t.Fatalf("client=%q, want %q", got, newest)
		}
	})
}

func TestTranscriptText(t *testing.T) {
	got := callcat.TranscriptText([]callcat.Utterance{
		{Role: callcat.RoleAgent, Content: "Hi."},
		{Role: callcat.RoleUser, Content: "Hello."},
	})
	if want := "Agent: Hi.\nUser: Hello.\n"; got != want {
		t.Fatalf("text=%q, want %q", got, want)
	}
}

func TestSnapshotKeyOrder(t *testing.T) {
	keys := []callcat.SnapshotKey{
		{Count: 1, LastWordEnd: 1, TakenAt: 5},
		{Count: 1, LastWordEnd: 2, TakenAt: 1},
		{Count: 2, LastWordEnd: 0.5, TakenAt: 0},
		{Count: 2, LastWordEnd: 0.5, TakenAt: 1},
		{Final: true, Count: 1},
	}
	for i := range keys {
		for j := range keys {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := keys[i].Compare(keys[j]); got != want {
				t.Fatalf("keys[%d].Compare(keys[%d])=%d, want %d", i, j, got, want)
			}
		}
	}
}

func TestMergeCorrectionAfterEnded(t *testing.T) {
	snaps := growingSnapshots(6)
	first := snaps[5]
	first.Final = true
	state, _ := applyAll(t, []callcat.Update{snapshotUpdate(first, callcat.StatusEnded)})

	corrected := snaps[5]
	corrected.Final = true
	corrected.Utterances = cloneUtterances(corrected.Utterances)
	corrected.Utterances[0].Content = "corrected"
	corrected.TakenAt++
	ch := callcat.Merge(state, snapshotUpdate(corrected, callcat.StatusEnded), now)

	var types []callcat.EventType
	for _, ev := range ch.Events {
		types = append(types, ev.Type)
	}
	want := []callcat.EventType{callcat.EventUtterance, callcat.EventEnded}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Fatalf("event types (-want +got):\n%s", diff)
	}
}

func TestMergeNullKeepsMetadata(t *testing.T) {
	state, _ := applyAll(t, []callcat.Update{
		{Fields: callcat.CallFields{ID: "call_1", Status: callcat.StatusOngoing, Metadata: json.RawMessage(`{"a":1}`)}},
		{Fields: callcat.CallFields{ID: "call_1", Metadata: json.RawMessage(`null`)}},
	})
	if string(state.Call.Metadata) != `{"a":1}` {
		t.Fatalf("metadata=%s, want kept", state.Call.Metadata)
	}
}

func TestMergeFinalKeyStoredWithoutTextChange(t *testing.T) {
	snap := growingSnapshots(4)[3]
	state, _ := applyAll(t, []callcat.Update{snapshotUpdate(snap, callcat.StatusOngoing)})

	final := snap
	final.Final = true
	ch := callcat.Merge(state, snapshotUpdate(final, callcat.StatusOngoing), now)
	if !ch.Changed() {
		t.Fatalf("Changed()=false, want true: the final key must be stored")
	}
	if !ch.SnapshotKey.Final {
		t.Fatalf("snapshot key not final")
	}
}
