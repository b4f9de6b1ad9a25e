package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// WAL checkpoints. By default SQLite checkpoints on the connection that
// commits once the WAL holds 1,000 pages. At a thousand webhooks a second,
// about seven pages each, that is several times a second, each time copying
// pages back into the database file and calling fsync while the next
// writers wait. DB instead
// checkpoints from a connection of its own every checkpointInterval, in
// PASSIVE mode, which never blocks the writer. The writer still checkpoints
// at writerCheckpointPages, a backstop that keeps the WAL bounded: a passive
// checkpoint leaves the frames committed while it runs, and only a
// checkpoint that copies every frame lets the next write start the WAL over.
const (
	checkpointInterval    = 250 * time.Millisecond
	writerCheckpointPages = 8000

	// walSizeLimit is the size, in bytes, SQLite truncates the WAL file to
	// when it starts over, so that a burst does not leave a large file.
	walSizeLimit = 4 << 20

	// checkpointLogEvery rate-limits the log of failing checkpoints.
	checkpointLogEvery = time.Minute
)

// checkpointLoop runs passive checkpoints on conn until ctx ends, then closes
// done.
func (db *DB) checkpointLoop(ctx context.Context, conn *sql.DB, interval time.Duration, done chan<- struct{}) {
	defer close(done)
	db.logger.Debug("store checkpointer started", "path", db.path, "interval", interval)

	ticker := time.NewTicker(interval)
	defer ticker.Stop()

	var failures int
	var lastLogged time.Time
	for {
		select {
		case <-ctx.Done():
			db.logger.Debug("store checkpointer stopped", "path", db.path)
			return
		case <-ticker.C:
		}

		// The result row (busy, WAL frames, frames checkpointed) is not
		// needed; a busy checkpoint simply runs again at the next tick.
		var busy, frames, copied int
		err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
		switch {
		case err == nil:
			if failures > 0 {
				db.logger.Info("store checkpoints recovered", "path", db.path, "failures", failures)
				failures = 0
			}
		case ctx.Err() != nil:
			// Close cancelled the checkpoint.
		default:
			failures++
			if time.Since(lastLogged) >= checkpointLogEvery {
				db.logger.Warn("store checkpoint failed; the writer's own checkpoints keep the WAL bounded",
					"path", db.path, "failures", failures, "err", err)
				lastLogged = time.Now()
			}
		}
	}
}
