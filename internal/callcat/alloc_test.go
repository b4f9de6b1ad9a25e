package callcat_test

import (
	"strconv"
	"testing"

	"github.com/callcat/callcat/internal/callcat"
)

// Allocation ceilings of Merge per call. A poll or push of a live call goes
// through Merge, so an unplanned allocation here costs at every poll of every
// live call. Go 1.26.8 on linux/amd64 measured 0 and 5 (go test -bench Merge
// -benchmem ./internal/callcat).
const (
	// An unchanged snapshot compares every utterance and returns an empty
	// Change without allocating.
	maxAllocsMergeUnchanged = 0

	// A snapshot whose last utterance grew by one word writes one upsert
	// and emits one utterance event: the upsert and flag slices, the event
	// slice and the event's JSON payload.
	maxAllocsMergeOneUtterance = 6
)

// liveCall returns a stored state of a live call with n utterances of 12
// timed words each, and a snapshot equal to it taken later.
func liveCall(n int) (*callcat.State, callcat.Snapshot) {
	utterances := make([]callcat.Utterance, n)
	clock := 0.0
	for i := range utterances {
		role := callcat.RoleAgent
		if i%2 == 1 {
			role = callcat.RoleUser
		}
		u := callcat.Utterance{Index: i, Role: role}
		for w := range 12 {
			word := "word" + strconv.Itoa(w)
			u.Content += word + " "
			u.Words = append(u.Words, callcat.Word{Word: word, Start: clock, End: clock + 0.3})
			clock += 0.4
		}
		utterances[i] = u
	}

	stored := &callcat.Snapshot{Utterances: utterances, TakenAt: 1000}
	state := &callcat.State{
		Call:        callcat.Call{ID: "call_alloc", Status: callcat.StatusOngoing, LastSeq: int64(2 + n), UtteranceCount: n},
		Utterances:  utterances,
		SnapshotKey: stored.Key(),
	}
	return state, callcat.Snapshot{Utterances: cloneWords(utterances), TakenAt: 2000}
}

// cloneWords copies utterances with their own word slices.
func cloneWords(in []callcat.Utterance) []callcat.Utterance {
	out := make([]callcat.Utterance, len(in))
	for i, u := range in {
		u.Words = append([]callcat.Word(nil), u.Words...)
		out[i] = u
	}
	return out
}

// grownByOneWord returns snap with one more word on its last utterance.
func grownByOneWord(snap callcat.Snapshot) callcat.Snapshot {
	utterances := cloneWords(snap.Utterances)
	last := &utterances[len(utterances)-1]
	end := last.Words[len(last.Words)-1].End
	last.Content += "more "
	last.Words = append(last.Words, callcat.Word{Word: "more", Start: end + 0.1, End: end + 0.4})
	return callcat.Snapshot{Utterances: utterances, TakenAt: snap.TakenAt + 1}
}

func pollUpdate(snap *callcat.Snapshot) callcat.Update {
	return callcat.Update{
		Fields:   callcat.CallFields{ID: "call_alloc", Status: callcat.StatusOngoing},
		Snapshot: snap,
	}
}

func TestMergeAllocsUnchanged(t *testing.T) {
	state, snap := liveCall(40)
	u := pollUpdate(&snap)

	var ch callcat.Change
	allocs := testing.AllocsPerRun(200, func() {
		ch = callcat.Merge(state, u, now)
	})

	if len(ch.Events) != 0 || len(ch.Upserts) != 0 {
		t.Fatalf("unchanged snapshot gave %d events and %d upserts, want none", len(ch.Events), len(ch.Upserts))
	}
	if allocs > maxAllocsMergeUnchanged {
		t.Errorf("allocs=%v, want at most %d", allocs, maxAllocsMergeUnchanged)
	}
}

func TestMergeAllocsOneUtterance(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts vary under the race detector: encoding/json's pooled buffers are dropped at random")
	}
	state, snap := liveCall(40)
	grown := grownByOneWord(snap)
	u := pollUpdate(&grown)

	var ch callcat.Change
	allocs := testing.AllocsPerRun(200, func() {
		ch = callcat.Merge(state, u, now)
	})

	if len(ch.Events) != 1 || ch.Events[0].Type != callcat.EventUtterance {
		t.Fatalf("events=%v, want one utterance event", ch.Events)
	}
	if allocs > maxAllocsMergeOneUtterance {
		t.Errorf("allocs=%v, want at most %d", allocs, maxAllocsMergeOneUtterance)
	}
}

func BenchmarkMergeUnchanged(b *testing.B) {
	state, snap := liveCall(40)
	u := pollUpdate(&snap)
	b.ReportAllocs()
	for b.Loop() {
		callcat.Merge(state, u, now)
	}
}

func BenchmarkMergeOneUtterance(b *testing.B) {
	state, snap := liveCall(40)
	grown := grownByOneWord(snap)
	u := pollUpdate(&grown)
	b.ReportAllocs()
	for b.Loop() {
		callcat.Merge(state, u, now)
	}
}
