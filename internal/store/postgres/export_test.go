package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DSN returns the DSN of the database that TestMain created.
func DSN() string {
	return testDSN
}

// OpenTraced is Open with a query tracer, which receives every Query and
// Exec that the DB sends through its pool.
func OpenTraced(ctx context.Context, dsn string, opts Options, tracer pgx.QueryTracer) (*DB, error) {
	return open(ctx, dsn, opts, tracer)
}

// Pool returns the connection pool of db, for tests that run SQL of their own.
func Pool(db *DB) *pgxpool.Pool {
	return db.pool
}

// ListenerPID returns the backend process id of the newest connection that
// Listen opened on db, or 0 before the first.
func ListenerPID(db *DB) uint32 {
	return db.listenerPID.Load()
}
