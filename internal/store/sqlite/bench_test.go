package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/store/sqlite"
)

// BenchmarkApplySnapshot measures one transcript_updated webhook on a live
// call, with a new delivery digest per op. Each op loads the call row with
// its utterance hashes, reads the utterances from the changed one on, writes
// the delivery, the call row, one utterance and one event, and commits.
//
// In "rotating", a 10-utterance snapshot of 15 words each differs from the
// stored transcript in one utterance, each op in the next one, so on average
// half of the utterances are read in full. In "last", a 30-utterance snapshot
// of 10 words each (about 10 KB as a webhook body) differs in its last
// utterance, as a call's transcript does while someone speaks.
func BenchmarkApplySnapshot(b *testing.B) {
	b.Run("rotating", func(b *testing.B) {
		benchmarkApplySnapshot(b, 10, 15, func(op int) int { return op % 10 })
	})
	b.Run("last", func(b *testing.B) {
		benchmarkApplySnapshot(b, 30, 10, func(int) int { return 29 })
	})
}

// benchmarkApplySnapshot applies snapshots of n utterances of the given
// number of words, in which op changes utterance changed(op).
func benchmarkApplySnapshot(b *testing.B, n, words int, changed func(op int) int) {
	rig := newSnapshotRig(b, n, words)
	for i := 0; b.Loop(); i++ {
		rig.apply(b, i, changed(i))
	}
}

// snapshotRig is a stored live call and two wordings of each of its
// utterances, for applying snapshots that change one utterance at a time.
type snapshotRig struct {
	db       *sqlite.DB
	update   callcat.Update
	current  []callcat.Utterance
	variants [2][]callcat.Utterance
	version  []int
}

// newSnapshotRig stores a call of n utterances of the given number of words.
func newSnapshotRig(tb testing.TB, n, words int) *snapshotRig {
	db := mustOpen(tb, filepath.Join(tb.TempDir(), "callcat.db"), sqlite.Options{})
	id := "call_bench"
	rig := &snapshotRig{db: db, version: make([]int, n)}

	// Two wordings of every utterance with the same timings, so that swapping
	// one utterance changes its content but not the snapshot's size or last
	// word end. TakenAt then orders the snapshots.
	for v := range rig.variants {
		u := snapshotUpdate(id, n, words, 0)
		for i := range u.Snapshot.Utterances {
			utt := &u.Snapshot.Utterances[i]
			utt.Words[0].Word = fmt.Sprintf(" variant%d", v)
			utt.Content = ""
			for _, w := range utt.Words {
				utt.Content += w.Word
			}
		}
		rig.variants[v] = u.Snapshot.Utterances
	}

	rig.current = append([]callcat.Utterance(nil), rig.variants[0]...)
	rig.update = callcat.Update{
		Fields:   callcat.CallFields{ID: id, Status: callcat.StatusOngoing},
		Snapshot: &callcat.Snapshot{Utterances: rig.current},
	}
	if _, err := db.Apply(context.Background(), rig.update); err != nil {
		tb.Fatalf("Apply: %v", err)
	}
	return rig
}

// apply stores op's snapshot, in which utterance index has its other wording,
// as a new webhook delivery, and checks that it emitted one event.
func (rig *snapshotRig) apply(tb testing.TB, op, index int) {
	rig.version[index] = (rig.version[index] + 1) % 2
	rig.current[index] = rig.variants[rig.version[index]][index]
	rig.update.Snapshot.TakenAt = int64(op + 1)
	rig.update.Delivery = &callcat.Delivery{
		Digest: fmt.Sprintf("%064x", op),
		Event:  "transcript_updated",
		CallID: rig.update.Fields.ID,
	}

	res, err := rig.db.Apply(context.Background(), rig.update)
	if err != nil {
		tb.Fatalf("Apply: %v", err)
	}
	if len(res.Events) != 1 {
		tb.Fatalf("op %d: %d events, want 1", op, len(res.Events))
	}
}

// maxAllocsApplyLastUtterance is the ceiling of TestApplyLastUtteranceAllocs.
// On linux/amd64 with Go 1.26 an Apply measured about 254 allocations (567
// when it read and encoded every utterance).
const maxAllocsApplyLastUtterance = 320

// TestApplyLastUtteranceAllocs guards the cost of the most common write: a
// transcript update of a 30-utterance call whose last utterance changed.
func TestApplyLastUtteranceAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	rig := newSnapshotRig(t, 30, 10)

	op := 0
	allocs := testing.AllocsPerRun(100, func() {
		rig.apply(t, op, 29)
		op++
	})
	t.Logf("%.0f allocs per Apply", allocs)
	if allocs > maxAllocsApplyLastUtterance {
		t.Fatalf("allocs=%.0f, want at most %d", allocs, maxAllocsApplyLastUtterance)
	}
}
