-- One row per Idempotency-Key of the calls API. status is 0 while the first
-- request is in flight; body is its response once it finished.
CREATE TABLE idempotency_keys (
    key          TEXT    NOT NULL PRIMARY KEY,
    request_hash TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    status       INTEGER NOT NULL DEFAULT 0,
    body         BLOB
) STRICT;

CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Retention deletes the oldest ended calls and the oldest deliveries first.
-- The WHERE clause must stay identical to prunableCondition.
CREATE INDEX calls_ended_updated ON calls (updated_at, call_id)
    WHERE status IN ('ended', 'not_connected', 'error');

CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
