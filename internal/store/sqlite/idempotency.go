package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/callcat/callcat/internal/callcat"
)

var _ callcat.IdempotencyStore = (*DB)(nil)

// ClaimIdempotency implements callcat.IdempotencyStore. The writer's single
// connection and BEGIN IMMEDIATE serialise concurrent claims.
func (db *DB) ClaimIdempotency(ctx context.Context, key, requestHash string, now time.Time, ttl time.Duration) (callcat.IdempotencyRecord, bool, error) {
	if key == "" {
		return callcat.IdempotencyRecord{}, false, fmt.Errorf("idempotency key is empty: %w", callcat.ErrInvalid)
	}
	if err := db.writeQueue.acquire(ctx); err != nil {
		return callcat.IdempotencyRecord{}, false, err
	}
	defer db.writeQueue.release()

	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return callcat.IdempotencyRecord{}, false, err
	}
	defer tx.Rollback()

	_, err = tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE key = ? AND created_at <= ?`,
		key, now.Add(-ttl).UnixNano())
	if err != nil {
		return callcat.IdempotencyRecord{}, false, err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (key, request_hash, created_at)
		VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING`, key, requestHash, now.UnixNano())
	if err != nil {
		return callcat.IdempotencyRecord{}, false, err
	}
	inserted, err := res.RowsAffected()
	if err != nil {
		return callcat.IdempotencyRecord{}, false, err
	}

	var (
		rec       = callcat.IdempotencyRecord{Key: key}
		createdAt int64
	)
	err = tx.QueryRowContext(ctx, `SELECT request_hash, created_at, status, body FROM idempotency_keys WHERE key = ?`, key).
		Scan(&rec.RequestHash, &createdAt, &rec.Status, &rec.Body)
	if err != nil {
		return callcat.IdempotencyRecord{}, false, err
	}
	rec.CreatedAt = fromUnixNano(createdAt)
	if err := tx.Commit(); err != nil {
		return callcat.IdempotencyRecord{}, false, err
	}
	return rec, inserted == 1, nil
}

// CompleteIdempotency implements callcat.IdempotencyStore.
func (db *DB) CompleteIdempotency(ctx context.Context, key string, status int, body []byte) error {
	if status <= 0 {
		return fmt.Errorf("idempotency status %d: %w", status, callcat.ErrInvalid)
	}
	if body == nil {
		body = []byte{}
	}
	if err := db.writeQueue.acquire(ctx); err != nil {
		return err
	}
	defer db.writeQueue.release()

	res, err := db.writer.ExecContext(ctx, `UPDATE idempotency_keys SET status = ?, body = ? WHERE key = ?`, status, body, key)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return callcat.ErrNotFound
	}
	return nil
}

// ReleaseIdempotency implements callcat.IdempotencyStore.
func (db *DB) ReleaseIdempotency(ctx context.Context, key string) error {
	if err := db.writeQueue.acquire(ctx); err != nil {
		return err
	}
	defer db.writeQueue.release()

	_, err := db.writer.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE key = ? AND status = 0`, key)
	return err
}
