package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/store/sqlite"
	"github.com/callcat/callcat/internal/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) callcat.Store {
		return mustOpen(t, filepath.Join(t.TempDir(), "callcat.db"), sqlite.Options{})
	})
}

// mustOpen opens a DB and closes it when the test ends.
func mustOpen(t testing.TB, path string, opts sqlite.Options) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// snapshotUpdate returns an update carrying the first n utterances of a
// fixed conversation, each with words words.
func snapshotUpdate(id string, n, words int, takenAt int64) callcat.Update {
	utterances := make([]callcat.Utterance, n)
	for i := range utterances {
		role := callcat.RoleAgent
		if i%2 == 1 {
			role = callcat.RoleUser
		}
		u := callcat.Utterance{Index: i, Role: role}
		for j := range words {
			text := fmt.Sprintf(" word%d", j)
			start := float64(i)*5 + float64(j)*0.3
			u.Words = append(u.Words, callcat.Word{Word: text, Start: start, End: start + 0.25})
			u.Content += text
		}
		utterances[i] = u
	}
	return callcat.Update{
		Fields:   callcat.CallFields{ID: id, Status: callcat.StatusOngoing},
		Snapshot: &callcat.Snapshot{Utterances: utterances, TakenAt: takenAt},
	}
}

// migrationRows returns the rows of schema_migrations, read through a
// connection of the test's own.
func migrationRows(t *testing.T, path string) map[int64]int64 {
	t.Helper()
	conn, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer conn.Close()

	rows, err := conn.Query(`SELECT version, applied_at FROM schema_migrations`)
	if err != nil {
		t.Fatalf("query schema_migrations: %v", err)
	}
	defer rows.Close()
	applied := make(map[int64]int64)
	for rows.Next() {
		var version, at int64
		if err := rows.Scan(&version, &at); err != nil {
			t.Fatalf("scan schema_migrations: %v", err)
		}
		applied[version] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	return applied
}

func TestOpenReopenMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "callcat.db")
	first := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db, err := sqlite.Open(t.Context(), path, sqlite.Options{Clock: func() time.Time { return first }})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	before := migrationRows(t, path)
	if len(before) == 0 {
		t.Fatalf("schema_migrations is empty after Open")
	}
	if _, ok := before[1]; !ok {
		t.Fatalf("schema_migrations=%v, want version 1", before)
	}

	later := first.Add(time.Hour)
	db, err = sqlite.Open(t.Context(), path, sqlite.Options{Clock: func() time.Time { return later }})
	if err != nil {
		t.Fatalf("Open again: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	after := migrationRows(t, path)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Fatalf("schema_migrations changed on reopen (-before +after):\n%s", diff)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "callcat.db")
	db, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	u := snapshotUpdate("call_persist", 3, 4, 1)
	u.Fields.Metadata = []byte(`{"k": "v"}`)
	u.Delivery = &callcat.Delivery{Digest: "digest_persist", Event: "transcript_updated", CallID: "call_persist"}
	res, err := db.Apply(ctx, u)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db = mustOpen(t, path, sqlite.Options{})

	call, err := db.Call(ctx, "call_persist")
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if diff := cmp.Diff(res.Call, call); diff != "" {
		t.Fatalf("Call after reopen (-before +after):\n%s", diff)
	}
	transcript, err := db.Transcript(ctx, "call_persist")
	if err != nil {
		t.Fatalf("Transcript: %v", err)
	}
	if diff := cmp.Diff(u.Snapshot.Utterances, transcript); diff != "" {
		t.Fatalf("Transcript after reopen (-want +got):\n%s", diff)
	}
	events, err := db.Events(ctx, "call_persist", 0, 100)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if diff := cmp.Diff(res.Events, events); diff != "" {
		t.Fatalf("Events after reopen (-want +got):\n%s", diff)
	}
	has, err := db.HasDelivery(ctx, "digest_persist")
	if err != nil {
		t.Fatalf("HasDelivery: %v", err)
	}
	if !has {
		t.Fatalf("HasDelivery=false after reopen, want true")
	}
}

func TestOpenRejectsPath(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file:x.db", filepath.Join(t.TempDir(), "a?b.db")} {
		db, err := sqlite.Open(t.Context(), path, sqlite.Options{})
		if err == nil {
			db.Close()
			t.Fatalf("Open(%q) err=nil, want an error", path)
		}
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "callcat.db")
	db, err := sqlite.Open(t.Context(), path, sqlite.Options{})
	if err == nil {
		db.Close()
		t.Fatalf("Open(%s) err=nil, want an error", path)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("err=%q, want it to name the path", err)
	}
}

func TestCloseTwice(t *testing.T) {
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "callcat.db"), sqlite.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := db.Ping(t.Context()); err == nil {
		t.Fatalf("Ping after Close err=nil, want an error")
	}
}

func TestPathAndSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "callcat.db")
	db := mustOpen(t, path, sqlite.Options{})
	if db.Path() != path {
		t.Fatalf("Path=%q, want %q", db.Path(), path)
	}

	empty, err := db.Size(t.Context())
	if err != nil {
		t.Fatalf("Size: %v", err)
	}
	if empty <= 0 {
		t.Fatalf("Size=%d of a migrated database, want > 0", empty)
	}

	// Enough utterances to need new pages.
	if _, err := db.Apply(t.Context(), snapshotUpdate("call_size", 200, 20, 1)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	grown, err := db.Size(t.Context())
	if err != nil {
		t.Fatalf("Size: %v", err)
	}
	if grown <= empty {
		t.Fatalf("Size=%d after writing, want more than %d", grown, empty)
	}
}

func TestClockStampsTimes(t *testing.T) {
	ctx := t.Context()
	created := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	now := created
	db := mustOpen(t, filepath.Join(t.TempDir(), "callcat.db"), sqlite.Options{
		Clock: func() time.Time { return now },
	})

	if _, err := db.Apply(ctx, snapshotUpdate("call_clock", 1, 2, 1)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	now = created.Add(90 * time.Second)
	if _, err := db.Apply(ctx, snapshotUpdate("call_clock", 2, 2, 2)); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	call, err := db.Call(ctx, "call_clock")
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if !call.CreatedAt.Equal(created) {
		t.Fatalf("CreatedAt=%v, want %v", call.CreatedAt, created)
	}
	if !call.UpdatedAt.Equal(now) {
		t.Fatalf("UpdatedAt=%v, want %v", call.UpdatedAt, now)
	}
	events, err := db.Events(ctx, "call_clock", 0, 100)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	last := events[len(events)-1]
	if !last.CreatedAt.Equal(now) {
		t.Fatalf("last event CreatedAt=%v, want %v", last.CreatedAt, now)
	}
}

func TestCallsCursorMalformed(t *testing.T) {
	db := mustOpen(t, filepath.Join(t.TempDir(), "callcat.db"), sqlite.Options{})
	encode := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, cursor := range []string{
		encode("123"),        // no call id
		encode("123:"),       // empty call id
		encode("abc:call_1"), // time is not a number
		encode(":call_1"),    // empty time
		"aGVsbG8=",           // padded standard base64
	} {
		_, err := db.Calls(t.Context(), callcat.CallFilter{Cursor: cursor})
		if !errors.Is(err, callcat.ErrInvalid) {
			t.Fatalf("Calls(cursor=%q) err=%v, want ErrInvalid", cursor, err)
		}
	}
}

func TestApplyMetrics(t *testing.T) {
	ctx := t.Context()
	reg := prometheus.NewPedanticRegistry()
	db := mustOpen(t, filepath.Join(t.TempDir(), "callcat.db"), sqlite.Options{Registerer: reg})

	u := snapshotUpdate("call_metrics", 2, 2, 1)
	u.Delivery = &callcat.Delivery{Digest: "digest_metrics", Event: "transcript_updated", CallID: "call_metrics"}
	for range 2 {
		if _, err := db.Apply(ctx, u); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	u.Delivery = nil
	if _, err := db.Apply(ctx, u); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.Apply(canceled, u); err == nil {
		t.Fatalf("Apply with a canceled context err=nil, want an error")
	}

	values := gatherValues(t, reg)
	for outcome, want := range map[string]float64{"changed": 1, "duplicate": 1, "unchanged": 1, "error": 1} {
		name := fmt.Sprintf("callcat_store_writes_total{outcome=%s}", outcome)
		if got := values[name]; got != want {
			t.Fatalf("%s=%v, want %v", name, got, want)
		}
	}
	if got := values["callcat_store_write_duration_seconds_count"]; got != 4 {
		t.Fatalf("callcat_store_write_duration_seconds_count=%v, want 4", got)
	}
}

// gatherValues returns every counter of reg as "name{label=value}" and the
// sample count of every histogram as "name_count".
func gatherValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	values := make(map[string]float64)
	for _, family := range families {
		for _, m := range family.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				values[family.GetName()+"_count"] = float64(h.GetSampleCount())
				continue
			}
			labels := make([]string, 0, len(m.GetLabel()))
			for _, label := range m.GetLabel() {
				labels = append(labels, label.GetName()+"="+label.GetValue())
			}
			values[family.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return values
}

func TestMetricsReregisterAfterClose(t *testing.T) {
	reg := prometheus.NewRegistry()
	path := filepath.Join(t.TempDir(), "callcat.db")
	db, err := sqlite.Open(t.Context(), path, sqlite.Options{Registerer: reg})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}

	// A second DB on the same registry clashes while the first is open.
	if other, err := sqlite.Open(t.Context(), path, sqlite.Options{Registerer: reg}); err == nil {
		other.Close()
		t.Fatalf("second Open on the same registry err=nil, want an error")
	}

	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mustOpen(t, path, sqlite.Options{Registerer: reg})
}

// TestConcurrentReadersAndWriters runs writers and readers on one DB and
// writers on a second DB opened on the same file, as a second process would.
// Neither the single writer queue nor busy_timeout may let "database is
// locked" reach a caller.
func TestConcurrentReadersAndWriters(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "callcat.db")
	first := mustOpen(t, path, sqlite.Options{})
	second := mustOpen(t, path, sqlite.Options{})

	const (
		writers = 20
		steps   = 15
		readers = 8
	)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		stop    = make(chan struct{})
		reading sync.WaitGroup
	)
	record := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}

	for r := range readers {
		reading.Go(func() {
			id := fmt.Sprintf("call_mixed_%d", r%4)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := first.Transcript(ctx, id); err != nil && !errors.Is(err, callcat.ErrNotFound) {
					record(err)
				}
				if _, err := first.Calls(ctx, callcat.CallFilter{Status: callcat.FilterLive}); err != nil {
					record(err)
				}
			}
		})
	}
	for w := range writers {
		db := first
		if w%2 == 1 {
			db = second
		}
		wg.Go(func() {
			id := fmt.Sprintf("call_mixed_%d", w%4)
			for step := range steps {
				if _, err := db.Apply(ctx, snapshotUpdate(id, 1+(w+step)%10, 3, int64(step))); err != nil {
					record(err)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	reading.Wait()

	for _, err := range errs {
		t.Errorf("concurrent access: %v", err)
	}
}
