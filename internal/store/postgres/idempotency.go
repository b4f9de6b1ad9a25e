package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/callcat/callcat/internal/callcat"
)

var _ callcat.IdempotencyStore = (*DB)(nil)

// ClaimIdempotency implements callcat.IdempotencyStore. Under READ COMMITTED
// a concurrent INSERT … ON CONFLICT DO NOTHING waits for the first claim's
// transaction, does nothing, and the following SELECT sees the committed row,
// so exactly one claim inserts.
func (db *DB) ClaimIdempotency(ctx context.Context, key, requestHash string, now time.Time, ttl time.Duration) (callcat.IdempotencyRecord, bool, error) {
	if key == "" || !validText(key) || !validText(requestHash) {
		return callcat.IdempotencyRecord{}, false, fmt.Errorf("idempotency key or hash is not valid text: %w", callcat.ErrInvalid)
	}
	ctx, cancel := db.withTimeout(ctx)
	defer cancel()
	now = now.Round(0).UTC().Truncate(time.Microsecond)

	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return callcat.IdempotencyRecord{}, false, contextError(ctx, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	if _, err := tx.Exec(ctx, `DELETE FROM idempotency_keys WHERE key = $1 AND created_at <= $2`, key, now.Add(-ttl)); err != nil {
		return callcat.IdempotencyRecord{}, false, contextError(ctx, err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (key, request_hash, created_at)
		VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING`, key, requestHash, now)
	if err != nil {
		return callcat.IdempotencyRecord{}, false, contextError(ctx, err)
	}

	rec := callcat.IdempotencyRecord{Key: key}
	err = tx.QueryRow(ctx, `SELECT request_hash, created_at, status, body FROM idempotency_keys WHERE key = $1`, key).
		Scan(&rec.RequestHash, &rec.CreatedAt, &rec.Status, &rec.Body)
	if err != nil {
		return callcat.IdempotencyRecord{}, false, contextError(ctx, err)
	}
	rec.CreatedAt = rec.CreatedAt.UTC()
	if err := tx.Commit(ctx); err != nil {
		return callcat.IdempotencyRecord{}, false, contextError(ctx, err)
	}
	return rec, tag.RowsAffected() == 1, nil
}

// CompleteIdempotency implements callcat.IdempotencyStore.
func (db *DB) CompleteIdempotency(ctx context.Context, key string, status int, body []byte) error {
	if status <= 0 {
		return fmt.Errorf("idempotency status %d: %w", status, callcat.ErrInvalid)
	}
	if body == nil {
		body = []byte{}
	}
	ctx, cancel := db.withTimeout(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `UPDATE idempotency_keys SET status = $1, body = $2 WHERE key = $3`, status, body, key)
	if err != nil {
		return contextError(ctx, err)
	}
	if tag.RowsAffected() == 0 {
		return callcat.ErrNotFound
	}
	return nil
}

// ReleaseIdempotency implements callcat.IdempotencyStore.
func (db *DB) ReleaseIdempotency(ctx context.Context, key string) error {
	ctx, cancel := db.withTimeout(ctx)
	defer cancel()
	if _, err := db.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE key = $1 AND status = 0`, key); err != nil {
		return contextError(ctx, err)
	}
	return nil
}
