-- Times named *_at are Unix nanoseconds of callcat's clock. start_timestamp,
-- end_timestamp and signed_at are the provider's Unix milliseconds.

-- One row per call. metadata and analysis hold the provider's JSON byte for
-- byte, NULL while never received. The snapshot_* columns are the
-- callcat.SnapshotKey of the stored transcript.
CREATE TABLE calls (
    call_id                TEXT    NOT NULL PRIMARY KEY,
    status                 TEXT    NOT NULL DEFAULT '',
    call_type              TEXT    NOT NULL DEFAULT '',
    direction              TEXT    NOT NULL DEFAULT '',
    from_number            TEXT    NOT NULL DEFAULT '',
    to_number              TEXT    NOT NULL DEFAULT '',
    agent_id               TEXT    NOT NULL DEFAULT '',
    start_timestamp        INTEGER,
    end_timestamp          INTEGER,
    duration_ms            INTEGER,
    disconnection_reason   TEXT    NOT NULL DEFAULT '',
    utterance_count        INTEGER NOT NULL DEFAULT 0,
    metadata               TEXT,
    analysis               TEXT,
    last_seq               INTEGER NOT NULL DEFAULT 0,
    snapshot_final         INTEGER NOT NULL DEFAULT 0,
    snapshot_count         INTEGER NOT NULL DEFAULT 0,
    snapshot_last_word_end REAL    NOT NULL DEFAULT 0,
    snapshot_taken_at      INTEGER NOT NULL DEFAULT 0,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
) STRICT;

-- Listing pages newest first by (created_at, call_id).
CREATE INDEX calls_created ON calls (created_at, call_id);

-- Live calls are few, so a partial index serves the live filter and the
-- startup scan without reading ended calls. Queries must repeat this WHERE
-- clause word for word for SQLite to use the index.
CREATE INDEX calls_live ON calls (created_at, call_id)
    WHERE status NOT IN ('ended', 'not_connected', 'error');

-- The current transcript of each call; words is a JSON array of callcat.Word.
CREATE TABLE utterances (
    call_id TEXT    NOT NULL REFERENCES calls (call_id),
    idx     INTEGER NOT NULL,
    role    TEXT    NOT NULL,
    content TEXT    NOT NULL,
    words   TEXT    NOT NULL,
    PRIMARY KEY (call_id, idx)
) STRICT;

-- Every event of every call, kept for replay after a reconnect.
CREATE TABLE events (
    call_id    TEXT    NOT NULL REFERENCES calls (call_id),
    seq        INTEGER NOT NULL,
    type       TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (call_id, seq)
) STRICT, WITHOUT ROWID;

-- Digests of received webhook bodies, for deduplication. No foreign key: the
-- delivery row is written before the call row it may create.
CREATE TABLE webhook_deliveries (
    digest      TEXT    NOT NULL PRIMARY KEY,
    event       TEXT    NOT NULL,
    call_id     TEXT    NOT NULL,
    signed_at   INTEGER NOT NULL,
    received_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
