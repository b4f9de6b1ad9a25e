package soak

import (
	"context"
	"os"
	"strings"
	"sync"
	"time"
)

// fdTargets counts the open file descriptors of the process by what they
// refer to: a file's path, or the kind of a socket, pipe or anonymous inode
// ("socket", "pipe", "anon_inode:[eventpoll]"). It returns nil where
// /proc/self/fd cannot be read. The soak reports it for the baseline and the
// after-drain sample, so a descriptor left open can be named.
func fdTargets() map[string]int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	out := make(map[string]int)
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // closed since the directory was read, such as ReadDir's own
		}
		if kind, _, ok := strings.Cut(target, ":["); ok && !strings.HasPrefix(target, "/") {
			target = kind
		}
		out[target]++
	}
	return out
}

// sqliteFile is the part of the SQLite store that warmReaderPool needs.
type sqliteFile interface {
	Ping(context.Context) error
	Path() string
}

// warmReaderPool opens every reader connection of the service's SQLite
// store before the baseline. database/sql opens pooled connections on demand
// and keeps them idle, so without this the descriptors of connections first
// needed under load would count as growth after the drain. Concurrent pings
// make the pool open connections until the database file is open once for
// the writer and once per reader, or until timeout.
func warmReaderPool(ping func(context.Context) error, dbPath string, readers int, timeout time.Duration) bool {
	want := 1 + readers
	deadline := time.Now().Add(timeout)
	for fdTargets()[dbPath] < want {
		if time.Now().After(deadline) {
			return false
		}
		var wg sync.WaitGroup
		for range 4 * readers {
			wg.Go(func() {
				for range 20 {
					_ = ping(context.Background())
				}
			})
		}
		wg.Wait()
	}
	return true
}
