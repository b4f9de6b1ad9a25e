// Package postgres implements callcat.Store and callcat.Leaser on PostgreSQL,
// so that several replicas of callcat can share one database.
//
// Every write goes through one transaction that locks the call's row (SELECT
// … FOR UPDATE), so Apply calls for the same call run one after the other
// across replicas. Seqs then stay gap-free, a stale snapshot is ignored and a
// terminal status stays final, as on the SQLite store. Apply calls for
// different calls run in parallel on a bounded pgxpool. A transaction that
// stores events also sends a small NOTIFY on the callcat_events channel.
// Listen receives these, so a replica can fan out events that another
// replica stored.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/ratelog"
)

// Defaults and limits.
const (
	// DefaultMaxConns is the size of the connection pool when
	// Options.MaxConns is zero. Listen uses one more connection of its own.
	DefaultMaxConns = 8

	// DefaultQueryTimeout bounds each store call when Options.QueryTimeout is
	// zero: one read, one lease statement, or the whole Apply transaction
	// including its waits for a pooled connection and for the call's row lock.
	DefaultQueryTimeout = 5 * time.Second

	// MaxEventLimit caps the limit of one Events call.
	MaxEventLimit = 1000

	// MaxLiveCalls caps the limit of one LiveCalls or AdoptableCalls call.
	MaxLiveCalls = 100_000

	// MaxLeaseBatch caps the number of call ids of one ClaimLeases call.
	MaxLeaseBatch = 10_000

	// MaxIDBytes is the longest call id, delivery digest or lease owner that
	// the store accepts. A PostgreSQL B-tree entry must fit in about a third
	// of an 8 KiB page (2704 bytes), and these values are primary keys.
	MaxIDBytes = 2048

	// MaxReplicaIDBytes is the longest Options.ReplicaID, which every
	// notification carries.
	MaxReplicaIDBytes = 200

	// NotifyChannel is the channel of the notifications that Apply sends and
	// Listen receives.
	NotifyChannel = "callcat_events"

	// maxNotifyIDBytes is the longest call id that a notification carries.
	// NOTIFY payloads must be shorter than 8000 bytes.
	maxNotifyIDBytes = 1000

	// applicationName names callcat's sessions in pg_stat_activity unless
	// the DSN sets application_name.
	applicationName = "callcat"
)

// Options configures Open. The zero value is ready to use.
type Options struct {
	// Logger receives open, migration, notification and listener messages.
	// Nil discards them.
	Logger *slog.Logger

	// Clock stamps created_at, updated_at and event times. Nil means time.Now.
	// PostgreSQL stores microseconds, so the store truncates the clock's time
	// to microseconds before it uses it. Lease expiry uses the database clock.
	Clock func() time.Time

	// MaxConns is the size of the connection pool; zero means
	// DefaultMaxConns. It overrides pool_max_conns in the DSN.
	MaxConns int32

	// QueryTimeout bounds each store call; zero means DefaultQueryTimeout.
	QueryTimeout time.Duration

	// ReplicaID names this replica in the notifications it sends, so that a
	// listener can skip its own events. It may be empty. It must be valid
	// UTF-8 without white space, at most MaxReplicaIDBytes long.
	ReplicaID string

	// Registerer, when set, receives the store metrics: write duration and
	// outcomes, pool connections, skipped notifications and listener retries.
	Registerer prometheus.Registerer
}

// DB is a callcat.Store and callcat.Leaser backed by PostgreSQL. It is safe
// for concurrent use.
type DB struct {
	pool       *pgxpool.Pool
	connConfig *pgx.ConnConfig // for Listen's dedicated connection

	logger    *slog.Logger
	limited   *ratelog.Limiter
	clock     func() time.Time
	timeout   time.Duration
	replicaID string
	metrics   *metrics // nil without a Registerer

	// listenerPID is the backend process id of the newest Listen
	// connection, for tests that terminate it.
	listenerPID atomic.Uint32

	closeOnce sync.Once
}

var (
	_ callcat.Store  = (*DB)(nil)
	_ callcat.Leaser = (*DB)(nil)
)

// Open connects to the PostgreSQL database that dsn names (a URL such as
// postgres://user@host:5432/db?sslmode=disable or a key=value string),
// applies the migrations it does not have yet and returns a DB ready for use.
// Several replicas may open the same database at once: an advisory lock lets
// one of them apply each migration. Open fails when dsn or opts is invalid,
// the database cannot be reached, a migration fails or the metrics cannot be
// registered.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	return open(ctx, dsn, opts, nil)
}

// open is Open with an optional query tracer, which tests use to count the
// statements a method sends.
func open(ctx context.Context, dsn string, opts Options, tracer pgx.QueryTracer) (*DB, error) {
	if err := validateReplicaID(opts.ReplicaID); err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}

	// ParseConfig leaves any password out of its error messages.
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	cfg.MaxConns = opts.MaxConns
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	cfg.MinConns = 0
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = applicationName
	}
	cfg.ConnConfig.Tracer = tracer

	db := &DB{
		connConfig: cfg.ConnConfig.Copy(),
		logger:     opts.Logger,
		clock:      opts.Clock,
		timeout:    opts.QueryTimeout,
		replicaID:  opts.ReplicaID,
	}
	if db.logger == nil {
		db.logger = slog.New(slog.DiscardHandler)
	}
	db.limited = ratelog.New(db.logger, 0)
	if db.clock == nil {
		db.clock = time.Now
	}
	if db.timeout <= 0 {
		db.timeout = DefaultQueryTimeout
	}
	target := describe(cfg.ConnConfig)

	fail := func(err error) (*DB, error) {
		db.release()
		return nil, fmt.Errorf("open postgres %s: %w", target, err)
	}

	// The pool connects lazily, so the first error shows up in migrate.
	db.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	if err := db.migrate(ctx); err != nil {
		return fail(err)
	}
	if opts.Registerer != nil {
		if db.metrics, err = newMetrics(opts.Registerer, db.pool); err != nil {
			return fail(err)
		}
	}

	db.logger.Info("store opened", "database", target, "max_conns", cfg.MaxConns, "replica_id", db.replicaID)
	return db, nil
}

// validateReplicaID checks that id fits in a notification payload and can
// be parsed back out of it: the payload separates its fields with spaces.
func validateReplicaID(id string) error {
	switch {
	case len(id) > MaxReplicaIDBytes:
		return fmt.Errorf("replica id is %d bytes long, more than %d: %w", len(id), MaxReplicaIDBytes, callcat.ErrInvalid)
	case !validText(id):
		return fmt.Errorf("replica id %q is not valid UTF-8 text: %w", id, callcat.ErrInvalid)
	case strings.ContainsFunc(id, unicode.IsSpace):
		return fmt.Errorf("replica id %q contains white space: %w", id, callcat.ErrInvalid)
	}
	return nil
}

// describe names the database of cfg for logs and errors, without the
// password: host:port/database.
func describe(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
}

// Ping checks that a pooled connection can query the schema_migrations table.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := db.withTimeout(ctx)
	defer cancel()

	var version *int64
	if err := db.pool.QueryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&version); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Close unregisters the metrics and closes the pool. It waits for the
// connections in use to be returned. It does not stop Listen, which owns a
// connection of its own until its context ends. Calling Close again does
// nothing.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.release()
		db.logger.Info("store closed", "database", describe(db.connConfig))
	})
	return nil
}

// release unregisters the metrics and closes whatever Open has opened so far.
func (db *DB) release() {
	db.metrics.unregister()
	if db.pool != nil {
		db.pool.Close()
	}
}

// withTimeout derives the context of one store call.
func (db *DB) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, db.timeout)
}

// now returns the clock's time as the store reads it back: UTC, without the
// monotonic reading, truncated to PostgreSQL's microseconds, so that an
// ApplyResult equals the later Call.
func (db *DB) now() time.Time {
	return db.clock().Round(0).UTC().Truncate(time.Microsecond)
}

// validText reports whether PostgreSQL can store s in a text column: valid
// UTF-8 without NUL characters.
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// validKey reports whether s can be a primary key value: non-empty text of
// at most MaxIDBytes. A lookup of any other value finds nothing.
func validKey(s string) bool {
	return s != "" && len(s) <= MaxIDBytes && validText(s)
}

// checkKey returns an error wrapping callcat.ErrInvalid when s cannot be a
// primary key value. name names s in the error.
func checkKey(name, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty: %w", name, callcat.ErrInvalid)
	case len(s) > MaxIDBytes:
		return fmt.Errorf("%s is %d bytes long, more than %d: %w", name, len(s), MaxIDBytes, callcat.ErrInvalid)
	case !validText(s):
		return fmt.Errorf("%s %q is not valid UTF-8 or contains NUL: %w", name, s, callcat.ErrInvalid)
	}
	return nil
}

// cleanText returns s with invalid UTF-8 and NUL characters replaced by
// U+FFFD, which PostgreSQL's text type cannot store. It returns s itself when
// there is nothing to replace.
func cleanText(s string) string {
	if validText(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// contextError adds ctx's error to err when the context ended, so that
// callers can match context.Canceled or context.DeadlineExceeded whatever
// error pgx reported for the interrupted query.
func contextError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("%w (%w)", err, ctxErr)
	}
	return err
}
