package soak

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"
)

// countInterval is the shortest time between two counts of the stored
// calls. SELECT count(*) FROM calls scans an index, which took 6 to 40 ms
// for 100,000 rows on the 2-vCPU benchmark machine. That is too much for
// every sample at 200 ms intervals.
const countInterval = 5 * time.Second

// sqliteSizer is the part of the SQLite store that the database sampler
// needs.
type sqliteSizer interface {
	Size(context.Context) (int64, error)
	Path() string
}

// dbSample is one reading of the service's database.
type dbSample struct {
	Time time.Time

	SizeBytes     int64 // the store's Size: page_count × page_size
	MainFileBytes int64 // the database file on disk
	WALBytes      int64 // the -wal file on disk, 0 when absent
	FreeBytes     int64 // pages on the freelist × page_size, part of SizeBytes

	StoredCalls int64 // rows of the calls table, when Counted
	Counted     bool
}

// diskBytes returns the bytes the database takes on disk: the main file and
// the WAL. The -shm index is left out because it is a few pages that SQLite
// maps into memory.
func (s dbSample) diskBytes() int64 {
	return s.MainFileBytes + s.WALBytes
}

// dbSampler samples the service's SQLite database on a ticker, next to the
// memory watcher, and keeps the samples in a bounded slice. It reads the
// size through the store and opens its own query-only connection for the
// freelist and the count of stored calls, which the store does not export.
type dbSampler struct {
	store    sqliteSizer
	conn     *sql.DB // one query-only connection to store.Path()
	interval time.Duration
	capacity int
	log      *slog.Logger

	mu        sync.Mutex
	samples   []dbSample // at most capacity; later samples are dropped
	lastCount time.Time
	failures  int // failed readings, logged only at powers of two
}

// newDBSampler opens the sampler's connection to the store's file. The
// caller closes the sampler after the last sample.
func newDBSampler(store sqliteSizer, interval time.Duration, capacity int, log *slog.Logger) (*dbSampler, error) {
	// The store has already created the file and switched it to WAL.
	// cache_size keeps this connection's page cache, which counts in the
	// process's RSS, at 512 KiB.
	dsn := store.Path() + "?_pragma=busy_timeout(5000)&_pragma=query_only(1)&_pragma=cache_size(-512)"
	conn, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database for sampling: %w", err)
	}
	conn.SetMaxOpenConns(1)
	conn.SetMaxIdleConns(1)
	conn.SetConnMaxLifetime(0)
	conn.SetConnMaxIdleTime(0)
	if err := conn.Ping(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("open database for sampling: %w", err)
	}
	return &dbSampler{
		store:    store,
		conn:     conn,
		interval: interval,
		capacity: capacity,
		log:      log,
		samples:  make([]dbSample, 0, capacity),
	}, nil
}

// Close closes the sampler's connection.
func (d *dbSampler) Close() error {
	return d.conn.Close()
}

// run takes a sample every interval until ctx ends.
func (d *dbSampler) run(ctx context.Context) {
	tick := time.NewTicker(d.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			d.sample(ctx, false)
		}
	}
}

// sample reads the database, keeps the sample and returns it. It counts the
// stored calls when forceCount is set or countInterval has passed since the
// last count. ok is false when the reading failed, and such a sample is not
// kept.
func (d *dbSampler) sample(ctx context.Context, forceCount bool) (dbSample, bool) {
	s, err := d.read(ctx, forceCount)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.failures++
		if d.failures&(d.failures-1) == 0 && ctx.Err() == nil {
			d.log.Warn("database sample failed", "err", err, "failures", d.failures)
		}
		return s, false
	}
	if len(d.samples) < d.capacity {
		d.samples = append(d.samples, s)
	}
	return s, true
}

// read takes one reading. It fails when any query or stat fails.
func (d *dbSampler) read(ctx context.Context, forceCount bool) (dbSample, error) {
	s := dbSample{Time: time.Now()}
	var err error
	if s.SizeBytes, err = d.store.Size(ctx); err != nil {
		return s, err
	}
	if s.MainFileBytes, err = fileSize(d.store.Path()); err != nil {
		return s, err
	}
	if s.WALBytes, err = fileSize(d.store.Path() + "-wal"); err != nil {
		return s, err
	}

	var free, pageSize int64
	err = d.conn.QueryRowContext(ctx,
		`SELECT freelist_count, page_size FROM pragma_freelist_count(), pragma_page_size()`).Scan(&free, &pageSize)
	if err != nil {
		return s, fmt.Errorf("read freelist: %w", err)
	}
	s.FreeBytes = free * pageSize

	d.mu.Lock()
	due := forceCount || s.Time.Sub(d.lastCount) >= countInterval
	d.mu.Unlock()
	if !due {
		return s, nil
	}
	if err := d.conn.QueryRowContext(ctx, `SELECT count(*) FROM calls`).Scan(&s.StoredCalls); err != nil {
		return s, fmt.Errorf("count stored calls: %w", err)
	}
	s.Counted = true
	d.mu.Lock()
	d.lastCount = s.Time
	d.mu.Unlock()
	return s, nil
}

// Samples returns a copy of the samples taken so far, oldest first.
func (d *dbSampler) Samples() []dbSample {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]dbSample(nil), d.samples...)
}

// fileSize returns the size of the file at path, or 0 when it does not
// exist.
func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
