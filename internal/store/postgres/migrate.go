package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationFiles contains the schema changes. Each file is named
// NNNN_description.sql, where NNNN is its version. Files apply in version
// order, and a released file must not change, because databases that already
// list its version never run it again.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the pg_advisory_lock key that serialises migrations
// between replicas opening the same database: "callcat" in ASCII.
const migrationLockKey int64 = 0x63616c6c636174

// migration is one embedded schema change.
type migration struct {
	version int64
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations sorted by version.
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}

	migrations := make([]migration, 0, len(names))
	seen := make(map[int64]string, len(names))
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		prefix, _, ok := strings.Cut(base, "_")
		if !ok {
			return nil, fmt.Errorf("migration %s: name must start with a version and '_'", base)
		}
		version, err := strconv.ParseInt(prefix, 10, 64)
		if err != nil || version <= 0 {
			return nil, fmt.Errorf("migration %s: invalid version %q", base, prefix)
		}
		if other, ok := seen[version]; ok {
			return nil, fmt.Errorf("migration %s: version %d already used by %s", base, version, other)
		}
		seen[version] = base

		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", base, err)
		}
		migrations = append(migrations, migration{version: version, name: base, sql: string(body)})
	}

	sort.Slice(migrations, func(i, j int) bool { return migrations[i].version < migrations[j].version })
	return migrations, nil
}

// migrate applies every embedded migration that schema_migrations does not
// list, each in its own transaction together with its schema_migrations row.
// It holds a session advisory lock throughout, so replicas that start at the
// same time wait for each other and each version is applied once. Even
// CREATE TABLE IF NOT EXISTS needs the lock: two sessions running it at once
// can both try to create the table, and one fails.
func (db *DB) migrate(ctx context.Context) (err error) {
	migrations, err := loadMigrations()
	if err != nil {
		return err
	}

	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", contextError(ctx, err))
	}
	defer conn.Release()

	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("migrate: take advisory lock: %w", contextError(ctx, err))
	}
	defer func() {
		if unlockErr := unlockMigrations(conn); unlockErr != nil {
			err = errors.Join(err, unlockErr)
		}
	}()

	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    bigint      NOT NULL PRIMARY KEY,
		applied_at timestamptz NOT NULL
	)`)
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", contextError(ctx, err))
	}

	for _, m := range migrations {
		applied, err := db.applyMigration(ctx, conn.Conn(), m)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, contextError(ctx, err))
		}
		if applied {
			db.logger.Info("migration applied", "database", describe(db.connConfig), "version", m.version, "name", m.name)
		}
	}
	return nil
}

// unlockMigrations releases the advisory lock of migrate. A session lock
// outlives a returned connection, so when the unlock fails the connection is
// closed, which releases the lock on the server, and the pool drops it.
func unlockMigrations(conn *pgxpool.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, migrationLockKey); err != nil {
		conn.Conn().Close(ctx)
		return fmt.Errorf("migrate: release advisory lock: %w", err)
	}
	return nil
}

// applyMigration applies m unless schema_migrations already lists it, and
// reports whether it did.
func (db *DB) applyMigration(ctx context.Context, conn *pgx.Conn, m migration) (applied bool, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer rollback(tx)

	var found bool
	err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.version).Scan(&found)
	if err != nil || found {
		return false, err
	}

	// Exec without arguments uses the simple protocol, which runs a file
	// of several statements.
	if _, err := tx.Exec(ctx, m.sql); err != nil {
		return false, err
	}
	_, err = tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, m.version, db.now())
	if err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// rollback ends tx unless it was committed. It runs with a context of its own
// so that it still reaches the server after the caller's context ended. An
// error here needs no handling: pgx closes a connection whose rollback failed,
// and the server rolls back a transaction whose session ends.
func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(ctx)
}
