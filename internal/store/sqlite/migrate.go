package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// migrationFiles contains the schema changes. Each file is named
// NNNN_description.sql, where NNNN is its version. Files apply in version
// order, and a released file must not change, because databases that already
// list its version never run it again.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

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

// migrate creates schema_migrations if needed and applies every embedded
// migration it does not list, each in its own transaction together with its
// schema_migrations row. The check runs inside the write transaction, so two
// processes opening the same new file cannot both apply a version.
func (db *DB) migrate(ctx context.Context) error {
	migrations, err := loadMigrations()
	if err != nil {
		return err
	}

	_, err = db.writer.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at INTEGER NOT NULL
	) STRICT`)
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}

	for _, m := range migrations {
		applied, err := db.applyMigration(ctx, m)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
		if applied {
			db.logger.Info("migration applied", "path", db.path, "version", m.version, "name", m.name)
		}
	}
	return nil
}

// applyMigration applies m unless schema_migrations already lists it, and
// reports whether it did.
func (db *DB) applyMigration(ctx context.Context, m migration) (applied bool, err error) {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()

	var found int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM schema_migrations WHERE version = ?`, m.version).Scan(&found)
	switch {
	case err == nil:
		return false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return false, err
	}

	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		m.version, db.now().UnixNano())
	if err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	return true, nil
}
