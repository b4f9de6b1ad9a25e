package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
)

func idempotencyStore(t *testing.T, s callcat.Store) callcat.IdempotencyStore {
	t.Helper()
	is, ok := s.(callcat.IdempotencyStore)
	if !ok {
		t.Fatalf("%T does not implement callcat.IdempotencyStore", s)
	}
	return is
}

func testIdempotencyClaim(t *testing.T, s callcat.Store) {
	is := idempotencyStore(t, s)
	ctx := t.Context()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const ttl = 24 * time.Hour

	rec, claimed, err := is.ClaimIdempotency(ctx, "key-1", "hash-a", now, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if !claimed {
		t.Fatalf("first claim: claimed=false, want true")
	}
	if rec.Status != 0 {
		t.Fatalf("first claim: status=%d, want 0", rec.Status)
	}

	rec, claimed, err = is.ClaimIdempotency(ctx, "key-1", "hash-b", now.Add(time.Minute), ttl)
	if err != nil {
		t.Fatal(err)
	}
	if claimed {
		t.Fatalf("second claim: claimed=true, want false")
	}
	if rec.RequestHash != "hash-a" {
		t.Fatalf("second claim: hash=%q, want hash-a", rec.RequestHash)
	}
	if !rec.CreatedAt.Equal(now) {
		t.Fatalf("second claim: created_at=%v, want %v", rec.CreatedAt, now)
	}

	if err := is.CompleteIdempotency(ctx, "key-1", 201, []byte(`{"call_id":"c1"}`)); err != nil {
		t.Fatal(err)
	}
	// A completed record survives a release.
	if err := is.ReleaseIdempotency(ctx, "key-1"); err != nil {
		t.Fatal(err)
	}
	rec, claimed, err = is.ClaimIdempotency(ctx, "key-1", "hash-a", now.Add(time.Hour), ttl)
	if err != nil {
		t.Fatal(err)
	}
	if claimed {
		t.Fatalf("claim after complete: claimed=true, want false")
	}
	if rec.Status != 201 {
		t.Fatalf("claim after complete: status=%d, want 201", rec.Status)
	}
	if string(rec.Body) != `{"call_id":"c1"}` {
		t.Fatalf("claim after complete: body=%s", rec.Body)
	}

	// Past the TTL the key is claimed anew.
	rec, claimed, err = is.ClaimIdempotency(ctx, "key-1", "hash-c", now.Add(ttl), ttl)
	if err != nil {
		t.Fatal(err)
	}
	if !claimed {
		t.Fatalf("claim after ttl: claimed=false, want true")
	}
	if rec.RequestHash != "hash-c" {
		t.Fatalf("claim after ttl: hash=%q, want hash-c", rec.RequestHash)
	}

	// A released in-flight record is claimed anew.
	if err := is.ReleaseIdempotency(ctx, "key-1"); err != nil {
		t.Fatal(err)
	}
	_, claimed, err = is.ClaimIdempotency(ctx, "key-1", "hash-d", now.Add(ttl), ttl)
	if err != nil {
		t.Fatal(err)
	}
	if !claimed {
		t.Fatalf("claim after release: claimed=false, want true")
	}

	if err := is.CompleteIdempotency(ctx, "key-unknown", 201, nil); !errors.Is(err, callcat.ErrNotFound) {
		t.Fatalf("complete unknown: err=%v, want ErrNotFound", err)
	}
}

func testIdempotencyConcurrent(t *testing.T, s callcat.Store) {
	is := idempotencyStore(t, s)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	const n = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		claims  int
		lastErr error
	)
	for range n {
		wg.Go(func() {
			_, claimed, err := is.ClaimIdempotency(t.Context(), "shared", "hash", now, time.Hour)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				lastErr = err
			}
			if claimed {
				claims++
			}
		})
	}
	wg.Wait()
	if lastErr != nil {
		t.Fatal(lastErr)
	}
	if claims != 1 {
		t.Fatalf("claims=%d, want 1", claims)
	}
}
