package postgres_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/store/postgres"
)

// TestReplicasConcurrentApply runs two DB handles on the same database, as
// two replicas would. 40 goroutines apply updates to the same 5 calls
// through both at once. First they send growing, repeated and out-of-order
// snapshots with live statuses. Then, all together, they end each call and
// send a stale snapshot. The row lock must keep seqs gap-free, the transcript
// equal to the largest snapshot and the ended event single.
func TestReplicasConcurrentApply(t *testing.T) {
	first := openClean(t, postgres.Options{ReplicaID: "replica-a"})
	second := openDB(t, postgres.Options{ReplicaID: "replica-b"})
	replicas := []*postgres.DB{first, second}

	const (
		goroutines = 40
		calls      = 5
		steps      = 12
		maxLength  = 15
		words      = 3
	)
	var (
		mu      sync.Mutex
		maxSize = make(map[string]int)
		errs    []error
		live    sync.WaitGroup // phase one done
		wg      sync.WaitGroup
		ending  = make(chan struct{})
	)
	record := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	live.Add(goroutines)
	for g := range goroutines {
		db := replicas[g%2]
		id := fmt.Sprintf("call_replicas_%d", g%calls)
		wg.Go(func() {
			for step := range steps {
				// A size sequence that differs per goroutine, so snapshots
				// arrive out of order and some repeat.
				n := 1 + (g*7+step*5)%maxLength
				u := snapshotUpdate(id, n, words, int64(n))
				if n < 4 {
					u.Fields.Status = callcat.StatusRegistered
				}
				if _, err := db.Apply(t.Context(), u); err != nil {
					record(err)
				}
				mu.Lock()
				maxSize[id] = max(maxSize[id], n)
				mu.Unlock()
			}
			live.Done()

			<-ending
			ended := statusUpdate(id, callcat.StatusEnded)
			ended.Fields.DisconnectionReason = "user_hangup"
			if _, err := db.Apply(t.Context(), ended); err != nil {
				record(err)
			}
			if _, err := db.Apply(t.Context(), snapshotUpdate(id, 1, words, 1)); err != nil {
				record(err)
			}
		})
	}
	live.Wait()
	close(ending)
	wg.Wait()

	for _, err := range errs {
		t.Errorf("Apply: %v", err)
	}
	if t.Failed() {
		t.FailNow()
	}

	for c := range calls {
		id := fmt.Sprintf("call_replicas_%d", c)
		db := replicas[c%2]
		call, err := db.Call(t.Context(), id)
		if err != nil {
			t.Fatalf("Call(%s): %v", id, err)
		}
		events := allEvents(t, db, id)
		if int64(len(events)) != call.LastSeq {
			t.Fatalf("%s: %d events, want LastSeq %d", id, len(events), call.LastSeq)
		}
		for i, ev := range events {
			if ev.Seq != int64(i+1) {
				t.Fatalf("%s: event %d has Seq %d, want %d", id, i, ev.Seq, i+1)
			}
		}

		want := makeUtterances(maxSize[id], words)
		transcript, err := db.Transcript(t.Context(), id)
		if err != nil {
			t.Fatalf("Transcript(%s): %v", id, err)
		}
		if diff := cmp.Diff(want, transcript); diff != "" {
			t.Fatalf("%s: Transcript (-want +got):\n%s", id, diff)
		}
		if diff := cmp.Diff(utteranceData(want), replayEvents(t, events)); diff != "" {
			t.Fatalf("%s: transcript replayed from events (-want +got):\n%s", id, diff)
		}

		if call.Status != callcat.StatusEnded {
			t.Fatalf("%s: Status=%q, want ended", id, call.Status)
		}
		ended := 0
		for _, ev := range events {
			if ev.Type == callcat.EventEnded {
				ended++
			}
		}
		if ended != 1 {
			t.Fatalf("%s: %d ended events, want 1", id, ended)
		}
		if last := events[len(events)-1]; last.Type != callcat.EventEnded {
			t.Fatalf("%s: last event is %s, want ended", id, last.Type)
		}
	}
}
