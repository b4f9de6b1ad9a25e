-- The partial indexes on calls.status had IN lists in their WHERE clauses.
-- SQLite evaluates a constant IN list of three values through a temporary
-- b-tree, and every UPDATE of a call evaluated four of them (old and new row,
-- two indexes), which cost about a sixth of a transcript update's time.
-- Comparisons with each terminal status give the same rows without one.
-- Queries must repeat these WHERE clauses word for word for SQLite to use
-- the indexes (liveCondition and endedCondition in the Go code).
DROP INDEX calls_live;
CREATE INDEX calls_live ON calls (created_at, call_id)
    WHERE status <> 'ended' AND status <> 'not_connected' AND status <> 'error';

DROP INDEX calls_ended_updated;
CREATE INDEX calls_ended_updated ON calls (updated_at, call_id)
    WHERE (status = 'ended' OR status = 'not_connected' OR status = 'error');
