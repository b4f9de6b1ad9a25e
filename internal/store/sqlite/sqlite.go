// Package sqlite implements callcat.Store on a single SQLite file with the
// pure-Go modernc.org/sqlite driver.
//
// SQLite allows one writer at a time. Concurrent write transactions would race
// for the write lock and fail with SQLITE_BUSY, so DB sends every write through
// a pool of one connection, where writers queue inside database/sql. Each
// transaction starts with BEGIN IMMEDIATE, which takes the write lock up front
// instead of upgrading a read lock halfway. Reads go through a separate pool of
// query-only connections. In WAL mode readers and the writer do not block each
// other. busy_timeout on every connection covers the remaining lock waits,
// such as another process that has the same file open.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/prometheus/client_golang/prometheus"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Defaults and limits.
const (
	// DefaultMaxReaders is the size of the read pool when Options.MaxReaders
	// is zero.
	DefaultMaxReaders = 4

	// MaxEventLimit caps the limit of one Events call.
	MaxEventLimit = 1000

	// MaxLiveCalls caps the limit of one LiveCalls call.
	MaxLiveCalls = 100_000

	// busyTimeout is how long, in milliseconds, a connection waits for a lock
	// held by another connection before SQLite returns SQLITE_BUSY.
	busyTimeout = 5000
)

// Options configures Open. The zero value is ready to use.
type Options struct {
	// Logger receives open, migration and close messages. Nil discards them.
	Logger *slog.Logger

	// Clock stamps created_at, updated_at and event times. Nil means time.Now.
	Clock func() time.Time

	// MaxReaders is the number of connections in the read pool; zero means
	// DefaultMaxReaders.
	MaxReaders int

	// Registerer, when set, receives the write metrics
	// callcat_store_write_duration_seconds and callcat_store_writes_total.
	Registerer prometheus.Registerer
}

// DB is a callcat.Store backed by one SQLite file. It is safe for concurrent
// use.
type DB struct {
	writer     *sql.DB    // one connection; every transaction is BEGIN IMMEDIATE
	writeQueue writeQueue // taken before using writer
	readers    *sql.DB    // query_only connections

	stmts *writeStatements // prepared on writer

	path    string
	logger  *slog.Logger
	clock   func() time.Time
	metrics *metrics // nil without a Registerer

	closeOnce sync.Once
	closeErr  error
}

var _ callcat.Store = (*DB)(nil)

// Open opens or creates the SQLite database at path, applies the migrations
// it does not have yet and returns a DB ready for use. path must name a file:
// an in-memory database cannot be shared between the writer and the read
// pool. Open fails when the file cannot be opened, a migration fails or the
// metrics cannot be registered.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if err := validatePath(path); err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}

	db := &DB{
		writeQueue: newWriteQueue(),
		path:       path,
		logger:     opts.Logger,
		clock:      opts.Clock,
	}
	if db.logger == nil {
		db.logger = slog.New(slog.DiscardHandler)
	}
	if db.clock == nil {
		db.clock = time.Now
	}
	readers := opts.MaxReaders
	if readers <= 0 {
		readers = DefaultMaxReaders
	}

	fail := func(err error) (*DB, error) {
		db.release()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}

	// The writer opens first so that it creates the file and switches it to
	// WAL before any reader connects.
	var err error
	db.writer, err = sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return fail(err)
	}
	db.writer.SetMaxOpenConns(1)
	db.writer.SetMaxIdleConns(1)
	db.writer.SetConnMaxLifetime(0)
	db.writer.SetConnMaxIdleTime(0)

	if err := db.migrate(ctx); err != nil {
		return fail(err)
	}
	if db.stmts, err = prepareWriteStatements(ctx, db.writer); err != nil {
		return fail(err)
	}

	db.readers, err = sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return fail(err)
	}
	db.readers.SetMaxOpenConns(readers)
	db.readers.SetMaxIdleConns(readers)
	if err := db.Ping(ctx); err != nil {
		return fail(err)
	}

	if opts.Registerer != nil {
		if db.metrics, err = newMetrics(opts.Registerer); err != nil {
			return fail(err)
		}
	}

	db.logger.Info("store opened", "path", path, "max_readers", readers)
	return db, nil
}

// validatePath rejects names the DSN cannot carry or that would not give
// every pooled connection the same database.
func validatePath(path string) error {
	switch {
	case path == "":
		return errors.New("path is empty")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		return fmt.Errorf("path %q is not a plain file path", path)
	case strings.ContainsRune(path, '?'):
		return fmt.Errorf("path %q contains '?', which the driver reads as the start of DSN parameters", path)
	}
	return nil
}

// dsn returns the data source name for a writer or a reader connection. The
// driver runs the _pragma parameters on every new connection, so a connection
// that the pool opens later gets the same settings as the first one.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
	}
	return path + "?" + q.Encode()
}

// Path returns the database file path given to Open.
func (db *DB) Path() string {
	return db.path
}

// Size returns the size of the database in bytes (page_count × page_size). It
// counts pages still held in the WAL file that a checkpoint has not yet copied
// back, and it does not count the WAL file itself.
func (db *DB) Size(ctx context.Context) (int64, error) {
	var size int64
	err := db.readers.QueryRowContext(ctx,
		`SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()`).Scan(&size)
	if err != nil {
		return 0, fmt.Errorf("size: %w", err)
	}
	return size, nil
}

// Ping checks that a read connection can query the database file.
func (db *DB) Ping(ctx context.Context) error {
	var version sql.NullInt64
	err := db.readers.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&version)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Close runs PRAGMA optimize, unregisters the metrics and closes both pools.
// It waits for queries already running to finish. Calling Close again returns
// the first result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		// SQLite recommends PRAGMA optimize before closing a connection that
		// ran queries, so the planner statistics stay current. A failure only
		// costs query plans, so it is logged and not returned.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if _, err := db.writer.ExecContext(ctx, `PRAGMA optimize`); err != nil {
			db.logger.Warn("store optimize failed", "path", db.path, "err", err)
		}
		cancel()

		if err := db.release(); err != nil {
			db.closeErr = fmt.Errorf("close sqlite %s: %w", db.path, err)
		}
		db.logger.Info("store closed", "path", db.path)
	})
	return db.closeErr
}

// release unregisters the metrics and closes whatever Open has opened so far.
func (db *DB) release() error {
	db.metrics.unregister()

	var errs []error
	if db.readers != nil {
		errs = append(errs, db.readers.Close())
	}
	if db.stmts != nil {
		errs = append(errs, db.stmts.close())
	}
	if db.writer != nil {
		errs = append(errs, db.writer.Close())
	}
	return errors.Join(errs...)
}

// now returns the clock's time as the store reads it back: UTC, without the
// monotonic reading, so that an ApplyResult equals the later Call.
func (db *DB) now() time.Time {
	return db.clock().Round(0).UTC()
}

// fromUnixNano converts a stored *_at column to a time.Time.
func fromUnixNano(ns int64) time.Time {
	return time.Unix(0, ns).UTC()
}
