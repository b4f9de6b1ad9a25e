package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
)

func pruner(t *testing.T, s callcat.Store) callcat.Pruner {
	t.Helper()
	p, ok := s.(callcat.Pruner)
	if !ok {
		t.Fatalf("%T does not implement callcat.Pruner", s)
	}
	return p
}

// pruneAll calls prune with batch until a batch comes back short, and
// returns the batch sizes.
func pruneAll(t *testing.T, prune func(batch int) (int, error), batch int) []int {
	t.Helper()
	var sizes []int
	for range 100 {
		n, err := prune(batch)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
		if n < batch {
			return sizes
		}
	}
	t.Fatalf("prune did not finish in 100 batches")
	return nil
}

func testPruneCalls(t *testing.T, s callcat.Store) {
	p := pruner(t, s)
	ctx := t.Context()

	var last time.Time
	for _, id := range []string{"call_old_1", "call_old_2"} {
		mustApply(t, s, snapshotUpdate(id, callcat.StatusOngoing, liveSnapshot(2)))
		last = mustApply(t, s, snapshotUpdate(id, callcat.StatusEnded, finalSnapshot(3))).Call.UpdatedAt
	}
	oldLive := mustApply(t, s, snapshotUpdate("call_old_live", callcat.StatusOngoing, liveSnapshot(2))).Call.UpdatedAt
	if oldLive.After(last) {
		last = oldLive
	}
	// The stores keep at least microseconds; step past them without a sleep.
	cutoff := last.Add(time.Microsecond)
	for !time.Now().After(cutoff) {
	}
	kept := mustApply(t, s, snapshotUpdate("call_new", callcat.StatusEnded, finalSnapshot(2)))
	if !kept.Call.UpdatedAt.After(cutoff) {
		t.Fatalf("new call updated_at=%v, not after the cutoff %v", kept.Call.UpdatedAt, cutoff)
	}

	sizes := pruneAll(t, func(batch int) (int, error) { return p.PruneCalls(ctx, cutoff, batch) }, 1)
	if want := []int{1, 1, 0}; !equalInts(sizes, want) {
		t.Fatalf("batches=%v, want %v", sizes, want)
	}

	for _, id := range []string{"call_old_1", "call_old_2"} {
		if _, err := s.Call(ctx, id); !errors.Is(err, callcat.ErrNotFound) {
			t.Fatalf("Call(%s) err=%v, want ErrNotFound", id, err)
		}
		if _, err := s.Transcript(ctx, id); !errors.Is(err, callcat.ErrNotFound) {
			t.Fatalf("Transcript(%s) err=%v, want ErrNotFound", id, err)
		}
		if events := allEvents(t, s, id); len(events) != 0 {
			t.Fatalf("%s has %d events after pruning, want 0", id, len(events))
		}
	}
	for _, id := range []string{"call_old_live", "call_new"} {
		if _, err := s.Call(ctx, id); err != nil {
			t.Fatalf("Call(%s) err=%v, want the call kept", id, err)
		}
	}
	if got := len(mustTranscript(t, s, "call_new")); got != 2 {
		t.Fatalf("kept call has %d utterances, want 2", got)
	}

	// A pruned call that the provider mentions again is stored anew.
	res := mustApply(t, s, statusUpdate("call_old_1", callcat.StatusEnded))
	if !res.Created {
		t.Fatalf("re-created call: Created=false, want true")
	}
}

func testPruneDeliveries(t *testing.T, s callcat.Store) {
	p := pruner(t, s)
	ctx := t.Context()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	digests := []string{strings.Repeat("0a", 32), strings.Repeat("0b", 32), strings.Repeat("0c", 32)}
	for i, digest := range digests {
		u := statusUpdate("call_pruned_delivery", callcat.StatusOngoing)
		u.Delivery = &callcat.Delivery{Digest: digest, Event: "call_started", CallID: "call_pruned_delivery",
			SignedAt: 1781000020000, ReceivedAt: now.Add(time.Duration(i) * time.Hour)}
		mustApply(t, s, u)
	}

	sizes := pruneAll(t, func(batch int) (int, error) {
		return p.PruneDeliveries(ctx, now.Add(90*time.Minute), batch)
	}, 1)
	if want := []int{1, 1, 0}; !equalInts(sizes, want) {
		t.Fatalf("batches=%v, want %v", sizes, want)
	}
	for i, digest := range digests {
		has, err := s.HasDelivery(ctx, digest)
		if err != nil {
			t.Fatal(err)
		}
		if want := i == 2; has != want {
			t.Fatalf("delivery %d stored=%v, want %v", i, has, want)
		}
	}
}

func testPruneIdempotency(t *testing.T, s callcat.Store) {
	p := pruner(t, s)
	is := idempotencyStore(t, s)
	ctx := t.Context()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	for i, key := range []string{"key-old", "key-new"} {
		if _, _, err := is.ClaimIdempotency(ctx, key, "hash", now.Add(time.Duration(i)*time.Hour), 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	n, err := p.PruneIdempotency(ctx, now.Add(time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("pruned=%d, want 1", n)
	}
	// The pruned key is claimed anew; the kept one is not.
	if _, claimed, err := is.ClaimIdempotency(ctx, "key-old", "hash", now.Add(2*time.Hour), 24*time.Hour); err != nil || !claimed {
		t.Fatalf("claim pruned key: claimed=%v err=%v, want true", claimed, err)
	}
	if _, claimed, err := is.ClaimIdempotency(ctx, "key-new", "hash", now.Add(2*time.Hour), 24*time.Hour); err != nil || claimed {
		t.Fatalf("claim kept key: claimed=%v err=%v, want false", claimed, err)
	}
}

func equalInts(a, b []int) bool {
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
