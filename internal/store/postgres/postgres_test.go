package postgres_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/store/postgres"
	"github.com/callcat/callcat/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) callcat.Store {
		return openClean(t, postgres.Options{})
	})
}

// TestOpenConcurrentMigratesOnce opens a new schema from several replicas at
// once: each migration must be applied by exactly one of them, and every
// Open must succeed.
func TestOpenConcurrentMigratesOnce(t *testing.T) {
	ctx := t.Context()
	admin := openDB(t, postgres.Options{})
	const schema = "migrate_concurrent"
	mustExec(t, admin, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	mustExec(t, admin, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { mustExec(t, admin, "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
	dsn := withParam(t, postgres.DSN(), "search_path", schema)

	const replicas = 6
	var (
		opening sync.WaitGroup
		out     syncBuffer
		errs    = make([]error, replicas)
		dbs     = make([]*postgres.DB, replicas)
	)
	logger := slog.New(slog.NewTextHandler(&out, nil))
	for i := range replicas {
		opening.Go(func() {
			dbs[i], errs[i] = postgres.Open(ctx, dsn, postgres.Options{Logger: logger})
		})
	}
	opening.Wait()
	for i, db := range dbs {
		if db != nil {
			defer db.Close()
		}
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	var versions []int64
	rows, err := postgres.Pool(dbs[0]).Query(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("query schema_migrations: %v", err)
	}
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	if diff := cmp.Diff([]int64{1, 2}, versions); diff != "" {
		t.Fatalf("schema_migrations versions (-want +got):\n%s", diff)
	}
	if got := strings.Count(out.String(), `msg="migration applied"`); got != len(versions) {
		t.Fatalf("migrations applied %d times, want %d:\n%s", got, len(versions), out.String())
	}

	// The replicas work on the new schema, not on the test database's own.
	res := mustApply(t, dbs[1], statusUpdate("call_in_schema", callcat.StatusOngoing))
	got, err := dbs[2].Call(ctx, "call_in_schema")
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if diff := cmp.Diff(res.Call, got); diff != "" {
		t.Fatalf("Call (-applied +read):\n%s", diff)
	}
	if _, err := admin.Call(ctx, "call_in_schema"); !errors.Is(err, callcat.ErrNotFound) {
		t.Fatalf("Call in the default schema err=%v, want ErrNotFound", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := t.Context()
	db := openClean(t, postgres.Options{})
	u := snapshotUpdate("call_persist", 3, 4, 1)
	u.Fields.Metadata = []byte(`{"k": "v"}`)
	u.Delivery = &callcat.Delivery{Digest: "digest_persist", Event: "transcript_updated", CallID: "call_persist"}
	res := mustApply(t, db, u)
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db = openDB(t, postgres.Options{})

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
	if diff := cmp.Diff(res.Events, allEvents(t, db, "call_persist")); diff != "" {
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

func TestOpenInvalid(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
		opts postgres.Options
	}{
		{"MalformedDSN", "postgres://%zz", postgres.Options{}},
		{"ReplicaIDSpace", postgres.DSN(), postgres.Options{ReplicaID: "replica a"}},
		{"ReplicaIDLong", postgres.DSN(), postgres.Options{ReplicaID: strings.Repeat("r", postgres.MaxReplicaIDBytes+1)}},
		{"ReplicaIDNUL", postgres.DSN(), postgres.Options{ReplicaID: "r\x00"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, err := postgres.Open(t.Context(), tc.dsn, tc.opts)
			if err == nil {
				db.Close()
				t.Fatalf("Open err=nil, want an error")
			}
		})
	}
}

func TestOpenUnreachableHidesPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Port 1 on loopback refuses connections.
	db, err := postgres.Open(ctx, "postgres://root:hunter2secret@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", postgres.Options{})
	if err == nil {
		db.Close()
		t.Fatalf("Open err=nil, want an error")
	}
	if strings.Contains(err.Error(), "hunter2secret") {
		t.Fatalf("err=%q contains the password", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1/test") {
		t.Fatalf("err=%q, want it to name the database", err)
	}
}

func TestCloseTwice(t *testing.T) {
	db, err := postgres.Open(t.Context(), postgres.DSN(), postgres.Options{})
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

func TestClockStampsTimes(t *testing.T) {
	ctx := t.Context()
	created := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	var mu sync.Mutex
	now := created
	db := openClean(t, postgres.Options{Clock: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}})

	first := mustApply(t, db, snapshotUpdate("call_clock", 1, 2, 1))
	mu.Lock()
	now = created.Add(90 * time.Second)
	mu.Unlock()
	mustApply(t, db, snapshotUpdate("call_clock", 2, 2, 2))

	// PostgreSQL keeps microseconds.
	wantCreated := created.Truncate(time.Microsecond)
	wantUpdated := now.Truncate(time.Microsecond)
	if !first.Call.CreatedAt.Equal(wantCreated) {
		t.Fatalf("ApplyResult CreatedAt=%v, want %v", first.Call.CreatedAt, wantCreated)
	}
	call, err := db.Call(ctx, "call_clock")
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if !call.CreatedAt.Equal(wantCreated) {
		t.Fatalf("CreatedAt=%v, want %v", call.CreatedAt, wantCreated)
	}
	if !call.UpdatedAt.Equal(wantUpdated) {
		t.Fatalf("UpdatedAt=%v, want %v", call.UpdatedAt, wantUpdated)
	}
	events := allEvents(t, db, "call_clock")
	last := events[len(events)-1]
	if !last.CreatedAt.Equal(wantUpdated) {
		t.Fatalf("last event CreatedAt=%v, want %v", last.CreatedAt, wantUpdated)
	}
}

func TestCallsCursorMalformed(t *testing.T) {
	db := openClean(t, postgres.Options{})
	encode := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, cursor := range []string{
		encode("123"),           // no call id
		encode("123:"),          // empty call id
		encode("abc:call_1"),    // time is not a number
		encode(":call_1"),       // empty time
		encode("1500:call_1"),   // finer than the stored microseconds
		encode("1000:call\x00"), // a call id that cannot be stored
		"aGVsbG8=",              // padded standard base64
	} {
		_, err := db.Calls(t.Context(), callcat.CallFilter{Cursor: cursor})
		if !errors.Is(err, callcat.ErrInvalid) {
			t.Fatalf("Calls(cursor=%q) err=%v, want ErrInvalid", cursor, err)
		}
	}
}

// TestApplyInvalidKeys covers the input that only PostgreSQL rejects: keys
// that a text primary key cannot hold, and leases that do not fit the update.
func TestApplyInvalidKeys(t *testing.T) {
	db := openClean(t, postgres.Options{})
	withDelivery := func(digest string) callcat.Update {
		u := statusUpdate("call_bad_key", callcat.StatusOngoing)
		u.Delivery = &callcat.Delivery{Digest: digest, Event: "call_started", CallID: "call_bad_key"}
		return u
	}
	withLease := func(l callcat.Lease) callcat.Update {
		u := statusUpdate("call_bad_key", callcat.StatusOngoing)
		u.Lease = &l
		return u
	}
	tests := []struct {
		name   string
		update callcat.Update
	}{
		{"IDNUL", statusUpdate("call\x00", callcat.StatusOngoing)},
		{"IDInvalidUTF8", statusUpdate("call\xff", callcat.StatusOngoing)},
		{"IDTooLong", statusUpdate(strings.Repeat("c", postgres.MaxIDBytes+1), callcat.StatusOngoing)},
		{"DigestNUL", withDelivery("ab\x00")},
		{"DigestTooLong", withDelivery(strings.Repeat("ab", postgres.MaxIDBytes))},
		{"LeaseNoOwner", withLease(callcat.Lease{CallID: "call_bad_key", Generation: 1})},
		{"LeaseOtherCall", withLease(callcat.Lease{CallID: "call_other", Owner: "replica-a", Generation: 1})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := db.Apply(t.Context(), tc.update)
			if !errors.Is(err, callcat.ErrInvalid) {
				t.Fatalf("Apply err=%v, want ErrInvalid", err)
			}
		})
	}

	page, err := db.Calls(t.Context(), callcat.CallFilter{})
	if err != nil {
		t.Fatalf("Calls: %v", err)
	}
	if len(page.Calls) != 0 {
		t.Fatalf("len(Calls)=%d after invalid updates, want 0", len(page.Calls))
	}

	// The longest valid id is stored.
	long := strings.Repeat("c", postgres.MaxIDBytes)
	mustApply(t, db, statusUpdate(long, callcat.StatusOngoing))
	if _, err := db.Call(t.Context(), long); err != nil {
		t.Fatalf("Call(%d-byte id): %v", len(long), err)
	}
}

// TestLookupInvalidKeys checks that reads of ids that cannot be stored find
// nothing, the way the SQLite store finds nothing, instead of failing.
func TestLookupInvalidKeys(t *testing.T) {
	ctx := t.Context()
	db := openClean(t, postgres.Options{})
	for _, id := range []string{"call\x00", "call\xff", strings.Repeat("c", postgres.MaxIDBytes+1)} {
		if _, err := db.Call(ctx, id); !errors.Is(err, callcat.ErrNotFound) {
			t.Fatalf("Call(%q) err=%v, want ErrNotFound", id, err)
		}
		if _, err := db.Transcript(ctx, id); !errors.Is(err, callcat.ErrNotFound) {
			t.Fatalf("Transcript(%q) err=%v, want ErrNotFound", id, err)
		}
		events, err := db.Events(ctx, id, 0, 10)
		if err != nil {
			t.Fatalf("Events(%q): %v", id, err)
		}
		if len(events) != 0 {
			t.Fatalf("Events(%q)=%v, want none", id, events)
		}
		has, err := db.HasDelivery(ctx, id)
		if err != nil {
			t.Fatalf("HasDelivery(%q): %v", id, err)
		}
		if has {
			t.Fatalf("HasDelivery(%q)=true, want false", id)
		}
	}
}

// TestApplyCleansText checks that text PostgreSQL cannot store is replaced,
// that the caller's update is left as it was, and that the same update
// applied again changes nothing.
func TestApplyCleansText(t *testing.T) {
	ctx := t.Context()
	db := openClean(t, postgres.Options{})
	u := snapshotUpdate("call_text", 2, 2, 1)
	u.Snapshot.Utterances[1].Content = "bad\x00byte\xff"
	u.Fields.FromNumber = "+1555\xfe"
	u.Fields.Metadata = json.RawMessage("{\"name\":\"Jos\xe9\"}")
	u.Snapshot.Utterances[0].Words[0].Word = "nul\x00"

	res := mustApply(t, db, u)

	if got := u.Snapshot.Utterances[1].Content; got != "bad\x00byte\xff" {
		t.Fatalf("caller's content changed to %q", got)
	}
	transcript, err := db.Transcript(ctx, "call_text")
	if err != nil {
		t.Fatalf("Transcript: %v", err)
	}
	if got, want := transcript[1].Content, "bad\uFFFDbyte\uFFFD"; got != want {
		t.Fatalf("Content=%q, want %q", got, want)
	}
	if got, want := transcript[0].Words[0].Word, "nul\x00"; got != want {
		t.Fatalf("Word=%q, want %q (words are stored as JSON)", got, want)
	}
	call, err := db.Call(ctx, "call_text")
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if got, want := call.FromNumber, "+1555\uFFFD"; got != want {
		t.Fatalf("FromNumber=%q, want %q", got, want)
	}
	if got, want := string(call.Metadata), "{\"name\":\"Jos\uFFFD\"}"; got != want {
		t.Fatalf("Metadata=%s, want %s", got, want)
	}
	if diff := cmp.Diff(res.Call, call); diff != "" {
		t.Fatalf("Call differs from ApplyResult.Call (-apply +read):\n%s", diff)
	}

	again := mustApply(t, db, u)
	if len(again.Events) != 0 {
		t.Fatalf("events on the second apply=%v, want none", eventTypes(again.Events))
	}
}

// TestApplyTimeout holds a call's row lock in another transaction: Apply
// must give up after QueryTimeout with context.DeadlineExceeded.
func TestApplyTimeout(t *testing.T) {
	ctx := t.Context()
	db := openClean(t, postgres.Options{QueryTimeout: 300 * time.Millisecond})
	mustApply(t, db, statusUpdate("call_locked", callcat.StatusRegistered))

	tx, err := postgres.Pool(db).Begin(ctx)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT 1 FROM calls WHERE call_id = 'call_locked' FOR UPDATE`); err != nil {
		t.Fatalf("lock call row: %v", err)
	}

	_, err = db.Apply(ctx, statusUpdate("call_locked", callcat.StatusOngoing))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply err=%v, want context.DeadlineExceeded", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("Rollback: %v", err)
	}

	// The pool recovers: a later Apply goes through. It is retried because
	// 300ms is short on a loaded machine.
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := db.Apply(ctx, statusUpdate("call_locked", callcat.StatusOngoing))
		if err == nil {
			if res.Call.Status != callcat.StatusOngoing {
				t.Fatalf("Status=%q, want ongoing", res.Call.Status)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Apply after the lock was released: %v", err)
		}
	}
}

func TestApplyMetrics(t *testing.T) {
	ctx := t.Context()
	reg := prometheus.NewPedanticRegistry()
	db := openClean(t, postgres.Options{Registerer: reg, MaxConns: 3})

	u := snapshotUpdate("call_metrics", 2, 2, 1)
	u.Delivery = &callcat.Delivery{Digest: "digest_metrics", Event: "transcript_updated", CallID: "call_metrics"}
	for range 2 {
		mustApply(t, db, u)
	}
	u.Delivery = nil
	mustApply(t, db, u)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.Apply(canceled, u); err == nil {
		t.Fatalf("Apply with a canceled context err=nil, want an error")
	}
	fenced := statusUpdate("call_metrics", callcat.StatusEnded)
	fenced.Lease = &callcat.Lease{CallID: "call_metrics", Owner: "replica-a", Generation: 1}
	if _, err := db.Apply(ctx, fenced); !errors.Is(err, callcat.ErrLeaseLost) {
		t.Fatalf("fenced Apply without a lease err=%v, want ErrLeaseLost", err)
	}
	long := strings.Repeat("x", 1001)
	mustApply(t, db, statusUpdate(long, callcat.StatusOngoing))

	values := gatherValues(t, reg)
	for outcome, want := range map[string]float64{"changed": 2, "duplicate": 1, "unchanged": 1, "lease_lost": 1, "error": 1} {
		name := fmt.Sprintf("callcat_store_writes_total{outcome=%s}", outcome)
		if got := values[name]; got != want {
			t.Fatalf("%s=%v, want %v", name, got, want)
		}
	}
	if got := values["callcat_store_write_duration_seconds_count"]; got != 6 {
		t.Fatalf("callcat_store_write_duration_seconds_count=%v, want 6", got)
	}
	if got := values["callcat_store_notifications_skipped_total{}"]; got != 1 {
		t.Fatalf("callcat_store_notifications_skipped_total=%v, want 1 (one call id over 1000 bytes)", got)
	}
	if got := values["callcat_store_pool_max_connections{}"]; got != 3 {
		t.Fatalf("callcat_store_pool_max_connections=%v, want 3", got)
	}
	if got := values["callcat_store_pool_connections{state=acquired}"]; got != 0 {
		t.Fatalf("callcat_store_pool_connections{state=acquired}=%v, want 0 while idle", got)
	}
}

func TestMetricsReregisterAfterClose(t *testing.T) {
	reg := prometheus.NewRegistry()
	db, err := postgres.Open(t.Context(), postgres.DSN(), postgres.Options{Registerer: reg})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}

	// A second DB on the same registry clashes while the first is open.
	if other, err := postgres.Open(t.Context(), postgres.DSN(), postgres.Options{Registerer: reg}); err == nil {
		other.Close()
		t.Fatalf("second Open on the same registry err=nil, want an error")
	}

	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	openDB(t, postgres.Options{Registerer: reg})
}
