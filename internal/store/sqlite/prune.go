package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/callcat/callcat/internal/callcat"
)

var _ callcat.Pruner = (*DB)(nil)

// prunableCondition selects ended calls; it must stay identical to the
// WHERE clause of the calls_ended_updated partial index.
const prunableCondition = endedCondition

// prunableCallsSQL picks one batch. Every DELETE of a batch runs it again in
// the same transaction; the calls rows are deleted last, so it picks the
// same calls each time.
const prunableCallsSQL = `SELECT call_id FROM calls WHERE ` + prunableCondition +
	` AND updated_at < ? ORDER BY updated_at, call_id LIMIT ?`

// PruneCalls implements callcat.Pruner.
func (db *DB) PruneCalls(ctx context.Context, before time.Time, batch int) (int, error) {
	batch = callcat.ClampPruneBatch(batch)
	if err := db.writeQueue.acquire(ctx); err != nil {
		return 0, fmt.Errorf("prune calls: %w", err)
	}
	defer db.writeQueue.release()

	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("prune calls: %w", err)
	}
	defer tx.Rollback()

	cutoff := before.UnixNano()
	for _, table := range []string{"utterances", "events"} {
		_, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE call_id IN (`+prunableCallsSQL+`)`, cutoff, batch)
		if err != nil {
			return 0, fmt.Errorf("prune %s: %w", table, err)
		}
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM calls WHERE call_id IN (`+prunableCallsSQL+`)`, cutoff, batch)
	if err != nil {
		return 0, fmt.Errorf("prune calls: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("prune calls: %w", err)
	}
	return int(n), nil
}

// PruneDeliveries implements callcat.Pruner.
func (db *DB) PruneDeliveries(ctx context.Context, before time.Time, batch int) (int, error) {
	return db.pruneTable(ctx, `DELETE FROM webhook_deliveries WHERE digest IN
		(SELECT digest FROM webhook_deliveries WHERE received_at < ? ORDER BY received_at LIMIT ?)`, before, batch)
}

// PruneIdempotency implements callcat.Pruner.
func (db *DB) PruneIdempotency(ctx context.Context, before time.Time, batch int) (int, error) {
	return db.pruneTable(ctx, `DELETE FROM idempotency_keys WHERE key IN
		(SELECT key FROM idempotency_keys WHERE created_at < ? ORDER BY created_at LIMIT ?)`, before, batch)
}

func (db *DB) pruneTable(ctx context.Context, query string, before time.Time, batch int) (int, error) {
	if err := db.writeQueue.acquire(ctx); err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	defer db.writeQueue.release()

	res, err := db.writer.ExecContext(ctx, query, before.UnixNano(), callcat.ClampPruneBatch(batch))
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}
