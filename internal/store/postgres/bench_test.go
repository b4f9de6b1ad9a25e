package postgres_test

import (
	"fmt"
	"testing"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/store/postgres"
)

// BenchmarkApplySnapshot measures one transcript_updated webhook on a live
// call: a 10-utterance snapshot of 15 words each in which one utterance
// differs from the stored transcript, with a new delivery digest per op. Each
// op records the delivery, locks and loads the call and its utterances,
// writes the call row, one utterance, one event and the notification, and
// commits, in two round trips to the server.
func BenchmarkApplySnapshot(b *testing.B) {
	const (
		utterances = 10
		words      = 15
	)
	ctx := b.Context()
	db := openClean(b, postgres.Options{})
	id := "call_bench"

	// Two wordings of every utterance with the same timings, so that swapping
	// one utterance changes its content but not the snapshot's size or last
	// word end. TakenAt then orders the snapshots.
	var variants [2][]callcat.Utterance
	for v := range variants {
		u := snapshotUpdate(id, utterances, words, 0)
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

	for i := 0; b.Loop(); i++ {
		index := i % utterances
		current[index] = variants[(i/utterances+1)%2][index]
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
