package sqlite_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/store/sqlite"
)

// TestBackgroundCheckpoint checks that committed pages reach the database
// file without the writer checkpointing: the writes here stay far below the
// writer's own checkpoint threshold, so only the background checkpoints can
// copy them from the WAL.
func TestBackgroundCheckpoint(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "callcat.db")
	db := mustOpen(t, path, sqlite.Options{CheckpointInterval: 20 * time.Millisecond})

	for i := range 50 {
		if _, err := db.Apply(ctx, snapshotUpdate(fmt.Sprintf("call_%d", i), 5, 10, 1)); err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
	}
	size, err := db.Size(ctx)
	if err != nil {
		t.Fatalf("Size: %v", err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatalf("stat %s: %v", path, err)
		}
		if info.Size() >= size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("database file is %d bytes after 10 s, want the %d bytes of its pages", info.Size(), size)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
