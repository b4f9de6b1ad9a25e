package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
)

// TestApplyWaitsForWriteQueue checks that Apply waits while another writer
// has the turn, gives up when its context ends, and writes once the turn is
// free.
func TestApplyWaitsForWriteQueue(t *testing.T) {
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "callcat.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })

	u := callcat.Update{Fields: callcat.CallFields{ID: "call_queue", Status: callcat.StatusOngoing}}
	if err := db.writeQueue.acquire(t.Context()); err != nil {
		t.Fatalf("acquire: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = db.Apply(ctx, u)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply while the queue is taken: err=%v, want %v", err, context.DeadlineExceeded)
	}
	if _, err := db.Call(t.Context(), "call_queue"); !errors.Is(err, callcat.ErrNotFound) {
		t.Fatalf("Call after the abandoned Apply: err=%v, want %v", err, callcat.ErrNotFound)
	}

	db.writeQueue.release()
	res, err := db.Apply(t.Context(), u)
	if err != nil {
		t.Fatalf("Apply after release: %v", err)
	}
	if !res.Created {
		t.Fatalf("Apply after release: Created=false, want true")
	}
}
