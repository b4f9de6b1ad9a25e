package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/callcat/callcat/internal/callcat"
)

var _ callcat.Pruner = (*DB)(nil)

// pruneCallsSQL locks one batch of ended calls. SKIP LOCKED leaves calls
// that a writer holds to a later batch instead of waiting for it.
const pruneCallsSQL = `SELECT call_id FROM calls
	WHERE status IN ('ended', 'not_connected', 'error') AND updated_at < $1
	ORDER BY updated_at, call_id LIMIT $2 FOR UPDATE SKIP LOCKED`

// PruneCalls implements callcat.Pruner.
func (db *DB) PruneCalls(ctx context.Context, before time.Time, batch int) (int, error) {
	ctx, cancel := db.withTimeout(ctx)
	defer cancel()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("prune calls: %w", contextError(ctx, err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	rows, err := tx.Query(ctx, pruneCallsSQL, before.UTC(), callcat.ClampPruneBatch(batch))
	if err != nil {
		return 0, fmt.Errorf("prune calls: %w", contextError(ctx, err))
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("prune calls: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("prune calls: %w", contextError(ctx, err))
	}
	if len(ids) == 0 {
		return 0, nil
	}

	for _, table := range []string{"utterances", "events", "call_leases", "calls"} {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE call_id = ANY($1)`, ids); err != nil {
			return 0, fmt.Errorf("prune %s: %w", table, contextError(ctx, err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("prune calls: %w", contextError(ctx, err))
	}
	return len(ids), nil
}

// PruneDeliveries implements callcat.Pruner.
func (db *DB) PruneDeliveries(ctx context.Context, before time.Time, batch int) (int, error) {
	return db.pruneTable(ctx, `DELETE FROM webhook_deliveries WHERE digest IN
		(SELECT digest FROM webhook_deliveries WHERE received_at < $1 ORDER BY received_at LIMIT $2)`, before, batch)
}

// PruneIdempotency implements callcat.Pruner.
func (db *DB) PruneIdempotency(ctx context.Context, before time.Time, batch int) (int, error) {
	return db.pruneTable(ctx, `DELETE FROM idempotency_keys WHERE key IN
		(SELECT key FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2)`, before, batch)
}

func (db *DB) pruneTable(ctx context.Context, query string, before time.Time, batch int) (int, error) {
	ctx, cancel := db.withTimeout(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, query, before.UTC(), callcat.ClampPruneBatch(batch))
	if err != nil {
		return 0, fmt.Errorf("prune: %w", contextError(ctx, err))
	}
	return int(tag.RowsAffected()), nil
}
