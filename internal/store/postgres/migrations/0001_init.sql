-- Times named *_at are callcat's clock in microseconds, except
-- call_leases.expires_at, which is the database clock. start_timestamp,
-- end_timestamp and signed_at are the provider's Unix milliseconds.
--
-- Keys use the "C" collation, so that they sort byte by byte whatever the
-- database's locale is, as in the SQLite store and in Go.

-- One row per call. metadata and analysis hold the provider's JSON byte for
-- byte (text, not jsonb, which would reorder keys), NULL while never
-- received. The snapshot_* columns are the callcat.SnapshotKey of the stored
-- transcript.
CREATE TABLE calls (
    call_id                text COLLATE "C" NOT NULL PRIMARY KEY,
    status                 text             NOT NULL DEFAULT '',
    call_type              text             NOT NULL DEFAULT '',
    direction              text             NOT NULL DEFAULT '',
    from_number            text             NOT NULL DEFAULT '',
    to_number              text             NOT NULL DEFAULT '',
    agent_id               text             NOT NULL DEFAULT '',
    start_timestamp        bigint,
    end_timestamp          bigint,
    duration_ms            bigint,
    disconnection_reason   text             NOT NULL DEFAULT '',
    utterance_count        integer          NOT NULL DEFAULT 0,
    metadata               text,
    analysis               text,
    last_seq               bigint           NOT NULL DEFAULT 0,
    snapshot_final         boolean          NOT NULL DEFAULT false,
    snapshot_count         integer          NOT NULL DEFAULT 0,
    snapshot_last_word_end double precision NOT NULL DEFAULT 0,
    snapshot_taken_at      bigint           NOT NULL DEFAULT 0,
    created_at             timestamptz      NOT NULL,
    updated_at             timestamptz      NOT NULL
);

-- Listing pages newest first by (created_at, call_id).
CREATE INDEX calls_created ON calls (created_at, call_id);

-- Live calls are few, so a partial index serves the live filter, the startup
-- scan and adoption without reading ended calls. Queries must imply this
-- WHERE clause for PostgreSQL to use the index.
CREATE INDEX calls_live ON calls (created_at, call_id)
    WHERE status NOT IN ('ended', 'not_connected', 'error');

-- The current transcript of each call; words is a JSON array of callcat.Word.
CREATE TABLE utterances (
    call_id text COLLATE "C" NOT NULL REFERENCES calls (call_id),
    idx     integer          NOT NULL,
    role    text             NOT NULL,
    content text             NOT NULL,
    words   text             NOT NULL,
    PRIMARY KEY (call_id, idx)
);

-- Every event of every call, kept for replay after a reconnect.
CREATE TABLE events (
    call_id    text COLLATE "C" NOT NULL REFERENCES calls (call_id),
    seq        bigint           NOT NULL,
    type       text             NOT NULL,
    data       text             NOT NULL,
    created_at timestamptz      NOT NULL,
    PRIMARY KEY (call_id, seq)
);

-- Digests of received webhook bodies, for deduplication. No foreign key: the
-- delivery row is written before the call row it may create.
CREATE TABLE webhook_deliveries (
    digest      text COLLATE "C" NOT NULL PRIMARY KEY,
    event       text             NOT NULL,
    call_id     text             NOT NULL,
    signed_at   bigint           NOT NULL,
    received_at timestamptz      NOT NULL
);

-- Which replica polls which live call. generation grows by one each time a
-- call changes owner, and a fenced write must carry the current one. No
-- foreign key: a replica may claim a call before its first update is stored.
CREATE TABLE call_leases (
    call_id    text COLLATE "C" NOT NULL PRIMARY KEY,
    owner      text COLLATE "C" NOT NULL,
    generation bigint           NOT NULL,
    expires_at timestamptz      NOT NULL
);

-- Renewing and releasing every lease of one owner.
CREATE INDEX call_leases_owner ON call_leases (owner, call_id);
