package sqlite_test

import (
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
	ctx := b.Context()
	db := mustOpen(b, filepath.Join(b.TempDir(), "callcat.db"), sqlite.Options{})
	id := "call_bench"

	// Two wordings of every utterance with the same timings, so that swapping
	// one utterance changes its content but not the snapshot's size or last
	// word end. TakenAt then orders the snapshots.
	var variants [2][]callcat.Utterance
	for v := range variants {
		u := snapshotUpdate(id, n, words, 0)
		for i := range u.Snapshot.Utterances {
			utt := &u.Snapshot.Utterances[i]
			utt.Words[0].Word = fmt.Sprintf(" variant%d", v)
			utt.Content = ""
			for _, w := range utt.Words {
				utt.Content += w.Word
			}
		}
		variants[v] = u.Snapshot.Utterances
	}

	current := append([]callcat.Utterance(nil), variants[0]...)
	update := callcat.Update{
		Fields:   callcat.CallFields{ID: id, Status: callcat.StatusOngoing},
		Snapshot: &callcat.Snapshot{Utterances: current},
	}
	if _, err := db.Apply(ctx, update); err != nil {
		b.Fatalf("Apply: %v", err)
	}

	version := make([]int, n)
	for i := 0; b.Loop(); i++ {
		index := changed(i)
		version[index] = (version[index] + 1) % 2
		current[index] = variants[version[index]][index]
		update.Snapshot.TakenAt = int64(i + 1)
		update.Delivery = &callcat.Delivery{
			Digest: fmt.Sprintf("%064x", i),
			Event:  "transcript_updated",
			CallID: id,
		}

		res, err := db.Apply(ctx, update)
		if err != nil {
			b.Fatalf("Apply: %v", err)
		}
		if len(res.Events) != 1 {
			b.Fatalf("op %d: %d events, want 1", i, len(res.Events))
		}
	}
}
