package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/store/postgres"
	"github.com/callcat/callcat/internal/store/sqlite"
	"github.com/callcat/callcat/internal/stream"
	"github.com/prometheus/client_golang/prometheus"
)

// openedStore is the store the service runs on, with what a shared store
// adds: leases for the tracker and notifications from other replicas.
type openedStore struct {
	store  callcat.Store
	leaser callcat.Leaser // nil for SQLite
	pg     *postgres.DB   // nil for SQLite
	desc   string         // for logs, without credentials
}

// isPostgres reports whether a --store value names a PostgreSQL database.
func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// openStore opens the PostgreSQL store named by cfg.Store, or the SQLite
// file in cfg.DataDir when cfg.Store is empty.
func openStore(ctx context.Context, cfg *Config, logger *slog.Logger, reg prometheus.Registerer) (*openedStore, error) {
	if cfg.Store != "" {
		if !isPostgres(cfg.Store) {
			return nil, fmt.Errorf("invalid --store %q: use postgres://user@host:port/database, or leave it empty for SQLite in --data-dir", redactDSN(cfg.Store))
		}
		db, err := postgres.Open(ctx, cfg.Store, postgres.Options{Logger: logger, Registerer: reg, ReplicaID: cfg.ReplicaID})
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL store %s: %w", redactDSN(cfg.Store), err)
		}
		return &openedStore{store: db, leaser: db, pg: db, desc: redactDSN(cfg.Store)}, nil
	}

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory %q: %w", cfg.DataDir, err)
	}
	path := filepath.Join(cfg.DataDir, DefaultDatabaseFile)
	db, err := sqlite.Open(ctx, path, sqlite.Options{Logger: logger, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	return &openedStore{store: db, desc: path}, nil
}

// relay forwards other replicas' event notifications to local streams until
// ctx is done. A stream of a call with new events gets a resync frame and
// reads them from the store. After the notification connection was lost,
// every stream gets one, so none misses an event committed meanwhile.
func (o *openedStore) relay(ctx context.Context, hub *stream.Hub, replicaID string, logger *slog.Logger) {
	if o.pg == nil {
		return
	}
	onEvent := func(callID string, _ int64, origin string) {
		if origin == replicaID {
			return // this replica published its own events already
		}
		if hub.HasSubscribers(callID) {
			hub.Resync(callID)
		}
	}
	onReconnect := func() {
		logger.Info("listening for other replicas' events; streams catch up from the store")
		hub.ResyncAll()
	}
	if err := o.pg.Listen(ctx, onEvent, onReconnect); err != nil {
		logger.Error("event listener stopped", "err", err)
	}
}

// newReplicaID returns a replica id unique enough for lease ownership:
// host name, process id and random bits.
func newReplicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "callcat"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	if len(id) > postgres.MaxReplicaIDBytes {
		id = id[len(id)-postgres.MaxReplicaIDBytes:]
	}
	return strings.ReplaceAll(id, " ", "_")
}

// redactDSN hides a password in a connection string before it is shown.
func redactDSN(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	userinfo := dsn[scheme+3 : at]
	if user, _, ok := strings.Cut(userinfo, ":"); ok {
		return dsn[:scheme+3] + user + ":xxxxx" + dsn[at:]
	}
	return dsn
}

// OpenStore opens the store a command names: PostgreSQL when dsn is set,
// else SQLite in dataDir. The returned function closes it.
func OpenStore(ctx context.Context, dsn, dataDir string, logger *slog.Logger) (callcat.Store, func(), error) {
	o, err := openStore(ctx, &Config{Store: dsn, DataDir: dataDir}, logger, prometheus.NewRegistry())
	if err != nil {
		return nil, nil, err
	}
	return o.store, func() {
		if err := o.store.Close(); err != nil {
			logger.Error("close store failed", "store", o.desc, "err", err)
		}
	}, nil
}
