package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/store/sqlite"
)

// eventTypes returns the types of events in order.
func eventTypes(events []callcat.Event) []callcat.EventType {
	types := make([]callcat.EventType, len(events))
	for i, ev := range events {
		types[i] = ev.Type
	}
	return types
}

// TestApplyUtteranceHashes checks that Apply finds every kind of change
// whatever the stored utterance hashes are: right, missing (a call written
// before the column existed) or of the wrong length.
func TestApplyUtteranceHashes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hashes any // written over utterance_hashes before the second Apply; nil writes NULL
		keep   bool
	}{
		{name: "stored", keep: true},
		{name: "missing", hashes: nil},
		{name: "wrong length", hashes: []byte{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "callcat.db")
			db := mustOpen(t, path, sqlite.Options{})
			id := "call_hashes"

			first := snapshotUpdate(id, 5, 3, 1)
			if _, err := db.Apply(ctx, first); err != nil {
				t.Fatalf("Apply first: %v", err)
			}

			if !tc.keep {
				raw, err := sql.Open("sqlite", path)
				if err != nil {
					t.Fatalf("open %s: %v", path, err)
				}
				_, err = raw.ExecContext(ctx, `UPDATE calls SET utterance_hashes = ? WHERE call_id = ?`, tc.hashes, id)
				raw.Close()
				if err != nil {
					t.Fatalf("overwrite utterance_hashes: %v", err)
				}
			}

			// Utterance 1 changes its text, utterance 3 gains a word, and
			// the last one goes. Only a final snapshot may be shorter than
			// the stored one, so this one and the later ones are final.
			second := snapshotUpdate(id, 4, 3, 2)
			second.Snapshot.Final = true
			second.Snapshot.Utterances[1].Content = " changed"
			second.Snapshot.Utterances[1].Words[0].Word = " changed"
			second.Snapshot.Utterances[3].Words = append(second.Snapshot.Utterances[3].Words, callcat.Word{Word: " more", Start: 30, End: 31})
			second.Snapshot.Utterances[3].Content += " more"
			res, err := db.Apply(ctx, second)
			if err != nil {
				t.Fatalf("Apply second: %v", err)
			}

			want := []callcat.EventType{callcat.EventUtterance, callcat.EventUtterance, callcat.EventTruncate}
			if diff := cmp.Diff(want, eventTypes(res.Events)); diff != "" {
				t.Fatalf("events (-want +got):\n%s", diff)
			}
			transcript, err := db.Transcript(ctx, id)
			if err != nil {
				t.Fatalf("Transcript: %v", err)
			}
			if diff := cmp.Diff(second.Snapshot.Utterances, transcript); diff != "" {
				t.Fatalf("transcript (-want +got):\n%s", diff)
			}

			// The same snapshot again, from a later poll, changes nothing:
			// the hashes written by the second Apply match it.
			third := snapshotUpdate(id, 4, 3, 3)
			third.Snapshot.Final = true
			third.Snapshot.Utterances = second.Snapshot.Utterances
			res, err = db.Apply(ctx, third)
			if err != nil {
				t.Fatalf("Apply third: %v", err)
			}
			if len(res.Events) != 0 {
				t.Fatalf("third Apply emitted %d events, want 0", len(res.Events))
			}

			// A words-only change in the first utterance is stored without
			// an event.
			fourth := snapshotUpdate(id, 4, 3, 4)
			fourth.Snapshot.Final = true
			fourth.Snapshot.Utterances = append([]callcat.Utterance(nil), second.Snapshot.Utterances...)
			words := append([]callcat.Word(nil), fourth.Snapshot.Utterances[0].Words...)
			words[0].Start += 0.05
			fourth.Snapshot.Utterances[0].Words = words
			res, err = db.Apply(ctx, fourth)
			if err != nil {
				t.Fatalf("Apply fourth: %v", err)
			}
			if len(res.Events) != 0 {
				t.Fatalf("words-only change emitted %d events, want 0", len(res.Events))
			}
			transcript, err = db.Transcript(ctx, id)
			if err != nil {
				t.Fatalf("Transcript: %v", err)
			}
			if diff := cmp.Diff(fourth.Snapshot.Utterances, transcript); diff != "" {
				t.Fatalf("transcript after words-only change (-want +got):\n%s", diff)
			}
		})
	}
}
