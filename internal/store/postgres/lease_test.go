package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/store/postgres"
)

// leaseCallIDs returns the call ids of leases.
func leaseCallIDs(leases []callcat.Lease) []string {
	ids := make([]string, len(leases))
	for i, l := range leases {
		ids[i] = l.CallID
	}
	return ids
}

// mustClaim claims leases and fails the test on an error.
func mustClaim(t *testing.T, db *postgres.DB, owner string, ids []string, ttl time.Duration) []callcat.Lease {
	t.Helper()
	leases, err := db.ClaimLeases(t.Context(), owner, ids, ttl)
	if err != nil {
		t.Fatalf("ClaimLeases(%s, %v): %v", owner, ids, err)
	}
	return leases
}

// claimEventually retries a claim until it returns a lease, for a lease
// that is about to expire on the database clock.
func claimEventually(t *testing.T, db *postgres.DB, owner, id string, ttl time.Duration) callcat.Lease {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		leases := mustClaim(t, db, owner, []string{id}, ttl)
		if len(leases) == 1 {
			return leases[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s could not claim %s within 10s", owner, id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeaseTakeoverFences runs the life of one lease: A claims it, B cannot
// while it is valid, B takes it over once it expired on the database clock,
// and A's write with the old generation is rejected without a trace.
func TestLeaseTakeoverFences(t *testing.T) {
	ctx := t.Context()
	a := openClean(t, postgres.Options{ReplicaID: "replica-a"})
	b := openDB(t, postgres.Options{ReplicaID: "replica-b"})
	const id = "call_lease"
	mustApply(t, a, snapshotUpdate(id, 2, 2, 1))

	before := dbNow(t, a)
	claimed := mustClaim(t, a, "replica-a", []string{id}, time.Minute)
	if len(claimed) != 1 {
		t.Fatalf("A claimed %v, want [%s]", leaseCallIDs(claimed), id)
	}
	leaseA := claimed[0]
	want := callcat.Lease{CallID: id, Owner: "replica-a", Generation: 1, ExpiresAt: leaseA.ExpiresAt}
	if diff := cmp.Diff(want, leaseA); diff != "" {
		t.Fatalf("A's lease (-want +got):\n%s", diff)
	}
	if !leaseA.ExpiresAt.After(before) {
		t.Fatalf("ExpiresAt=%v, want after the database time %v", leaseA.ExpiresAt, before)
	}

	if got := mustClaim(t, b, "replica-b", []string{id}, time.Minute); len(got) != 0 {
		t.Fatalf("B claimed %v while A's lease is valid, want none", got)
	}

	// The owner may claim again, here for a short time: same generation.
	again := mustClaim(t, a, "replica-a", []string{id}, 300*time.Millisecond)
	if len(again) != 1 || again[0].Generation != 1 {
		t.Fatalf("A's second claim=%v, want generation 1", again)
	}
	if !again[0].ExpiresAt.Before(leaseA.ExpiresAt) {
		t.Fatalf("ExpiresAt=%v after a claim for 300ms, want before %v", again[0].ExpiresAt, leaseA.ExpiresAt)
	}

	// A's write fenced with its lease goes through while it holds it.
	fenced := snapshotUpdate(id, 3, 2, 2)
	fenced.Lease = &leaseA
	mustApply(t, a, fenced)

	leaseB := claimEventually(t, b, "replica-b", id, time.Minute)
	if leaseB.Owner != "replica-b" {
		t.Fatalf("Owner=%q, want replica-b", leaseB.Owner)
	}
	if leaseB.Generation != leaseA.Generation+1 {
		t.Fatalf("Generation=%d, want %d", leaseB.Generation, leaseA.Generation+1)
	}

	callBefore, err := a.Call(ctx, id)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	stale := snapshotUpdate(id, 5, 2, 3)
	stale.Fields.Status = callcat.StatusEnded
	stale.Lease = &leaseA
	if _, err := a.Apply(ctx, stale); !errors.Is(err, callcat.ErrLeaseLost) {
		t.Fatalf("A's fenced Apply after takeover err=%v, want ErrLeaseLost", err)
	}
	callAfter, err := a.Call(ctx, id)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if diff := cmp.Diff(callBefore, callAfter); diff != "" {
		t.Fatalf("Call changed by a rejected write (-before +after):\n%s", diff)
	}
	if got := len(allEvents(t, a, id)); int64(got) != callBefore.LastSeq {
		t.Fatalf("%d events after a rejected write, want %d", got, callBefore.LastSeq)
	}

	// The generation is checked too: B's name with A's generation fails.
	wrongGeneration := leaseB
	wrongGeneration.Generation = leaseA.Generation
	stale.Lease = &wrongGeneration
	if _, err := b.Apply(ctx, stale); !errors.Is(err, callcat.ErrLeaseLost) {
		t.Fatalf("B's Apply with an old generation err=%v, want ErrLeaseLost", err)
	}

	stale.Lease = &leaseB
	res := mustApply(t, b, stale)
	if res.Call.Status != callcat.StatusEnded {
		t.Fatalf("B's fenced Apply: Status=%q, want ended", res.Call.Status)
	}

	if held, err := a.RenewLeases(ctx, "replica-a", time.Minute); err != nil || len(held) != 0 {
		t.Fatalf("A's RenewLeases=%v, %v, want none", held, err)
	}
}

// statementCounter counts the statements sent through a pool.
type statementCounter struct {
	mu         sync.Mutex
	statements []string
}

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	c.mu.Lock()
	c.statements = append(c.statements, data.SQL)
	c.mu.Unlock()
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *statementCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	statements := c.statements
	c.statements = nil
	return statements
}

func TestLeaseRenewOneStatement(t *testing.T) {
	counter := &statementCounter{}
	openClean(t, postgres.Options{}).Close()
	db, err := postgres.OpenTraced(t.Context(), postgres.DSN(), postgres.Options{}, counter)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()

	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprintf("call_renew_%03d", i)
	}
	claimed := mustClaim(t, db, "replica-a", ids, time.Minute)
	if diff := cmp.Diff(ids, leaseCallIDs(claimed)); diff != "" {
		t.Fatalf("claimed ids (-want +got):\n%s", diff)
	}
	// Another owner's lease is not renewed.
	mustClaim(t, db, "replica-b", []string{"call_renew_other"}, time.Minute)
	counter.take()

	renewed, err := db.RenewLeases(t.Context(), "replica-a", time.Hour)
	if err != nil {
		t.Fatalf("RenewLeases: %v", err)
	}

	if statements := counter.take(); len(statements) != 1 {
		t.Fatalf("RenewLeases sent %d statements, want 1:\n%s", len(statements), strings.Join(statements, "\n"))
	}
	if diff := cmp.Diff(ids, leaseCallIDs(renewed)); diff != "" {
		t.Fatalf("renewed ids (-want +got):\n%s", diff)
	}
	for i, l := range renewed {
		if l.Owner != "replica-a" || l.Generation != 1 {
			t.Fatalf("renewed[%d]=%+v, want owner replica-a, generation 1", i, l)
		}
		if !l.ExpiresAt.After(claimed[i].ExpiresAt) {
			t.Fatalf("renewed[%d].ExpiresAt=%v, want after %v", i, l.ExpiresAt, claimed[i].ExpiresAt)
		}
	}
}

func TestLeaseRelease(t *testing.T) {
	ctx := t.Context()
	db := openClean(t, postgres.Options{})
	ids := []string{"call_release_1", "call_release_2", "call_release_3"}
	mustClaim(t, db, "replica-a", ids, time.Hour)
	mustClaim(t, db, "replica-b", []string{"call_release_b"}, time.Hour)

	if got := mustClaim(t, db, "replica-b", ids, time.Hour); len(got) != 0 {
		t.Fatalf("B claimed %v before the release, want none", leaseCallIDs(got))
	}

	// Releasing another owner's lease leaves it alone.
	if err := db.ReleaseLease(ctx, "replica-b", "call_release_1"); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	if got := mustClaim(t, db, "replica-b", ids[:1], time.Hour); len(got) != 0 {
		t.Fatalf("B claimed %v after releasing A's lease, want none", leaseCallIDs(got))
	}

	if err := db.ReleaseLease(ctx, "replica-a", "call_release_1"); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	got := mustClaim(t, db, "replica-b", ids, time.Hour)
	if diff := cmp.Diff(ids[:1], leaseCallIDs(got)); diff != "" {
		t.Fatalf("B's claim after one release (-want +got):\n%s", diff)
	}

	if err := db.ReleaseLeases(ctx, "replica-a"); err != nil {
		t.Fatalf("ReleaseLeases: %v", err)
	}
	got = mustClaim(t, db, "replica-b", ids, time.Hour)
	if diff := cmp.Diff(ids, leaseCallIDs(got)); diff != "" {
		t.Fatalf("B's claim after ReleaseLeases (-want +got):\n%s", diff)
	}
	held, err := db.RenewLeases(ctx, "replica-b", time.Hour)
	if err != nil {
		t.Fatalf("RenewLeases: %v", err)
	}
	want := append(slices.Clone(ids), "call_release_b")
	if diff := cmp.Diff(want, leaseCallIDs(held)); diff != "" {
		t.Fatalf("B's leases (-want +got):\n%s", diff)
	}
	if held, err := db.RenewLeases(ctx, "replica-a", time.Hour); err != nil || len(held) != 0 {
		t.Fatalf("A's RenewLeases after release=%v, %v, want none", held, err)
	}
}

func TestAdoptableCalls(t *testing.T) {
	ctx := t.Context()
	// A clock that advances 1ms per reading gives every call its own
	// creation time, so the order is the order of creation.
	var ticks atomic.Int64
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db := openClean(t, postgres.Options{Clock: func() time.Time {
		return start.Add(time.Duration(ticks.Add(1)) * time.Millisecond)
	}})
	for _, u := range []callcat.Update{
		statusUpdate("call_adopt_free", callcat.StatusOngoing),
		statusUpdate("call_adopt_expired", callcat.StatusRegistered),
		statusUpdate("call_adopt_held", callcat.StatusOngoing),
		statusUpdate("call_adopt_ended", callcat.StatusEnded),
		statusUpdate("call_adopt_no_status", ""),
		statusUpdate("call_adopt_error", callcat.StatusError),
	} {
		mustApply(t, db, u)
	}
	mustClaim(t, db, "replica-a", []string{"call_adopt_held", "call_adopt_ended"}, time.Hour)
	mustClaim(t, db, "replica-a", []string{"call_adopt_expired"}, time.Hour)
	mustExec(t, db, `UPDATE call_leases SET expires_at = now() - interval '1 second' WHERE call_id = 'call_adopt_expired'`)

	ids, err := db.AdoptableCalls(ctx, 100)
	if err != nil {
		t.Fatalf("AdoptableCalls: %v", err)
	}
	want := []string{"call_adopt_free", "call_adopt_expired", "call_adopt_no_status"}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Fatalf("AdoptableCalls, oldest first (-want +got):\n%s", diff)
	}

	one, err := db.AdoptableCalls(ctx, 1)
	if err != nil {
		t.Fatalf("AdoptableCalls(1): %v", err)
	}
	if diff := cmp.Diff(want[:1], one); diff != "" {
		t.Fatalf("AdoptableCalls(1) (-want +got):\n%s", diff)
	}

	mustApply(t, db, statusUpdate("call_adopt_free", callcat.StatusEnded))
	ids, err = db.AdoptableCalls(ctx, 100)
	if err != nil {
		t.Fatalf("AdoptableCalls: %v", err)
	}
	if diff := cmp.Diff(want[1:], ids); diff != "" {
		t.Fatalf("AdoptableCalls after one ended (-want +got):\n%s", diff)
	}
}

// TestAdoptableCallsPrunesLeases checks that leases that expired long ago
// on calls that are no longer live are deleted, and no others.
func TestAdoptableCallsPrunesLeases(t *testing.T) {
	ctx := t.Context()
	db := openClean(t, postgres.Options{})
	mustApply(t, db, statusUpdate("call_prune_ended", callcat.StatusEnded))
	mustApply(t, db, statusUpdate("call_prune_live", callcat.StatusOngoing))
	mustApply(t, db, statusUpdate("call_prune_recent", callcat.StatusEnded))
	ids := []string{"call_prune_ended", "call_prune_live", "call_prune_recent", "call_prune_unknown"}
	mustClaim(t, db, "replica-a", ids, time.Hour)
	mustExec(t, db, `UPDATE call_leases SET expires_at = now() - interval '1 hour' WHERE call_id <> 'call_prune_recent'`)
	mustExec(t, db, `UPDATE call_leases SET expires_at = now() - interval '1 minute' WHERE call_id = 'call_prune_recent'`)

	if _, err := db.AdoptableCalls(ctx, 10); err != nil {
		t.Fatalf("AdoptableCalls: %v", err)
	}

	rows, err := postgres.Pool(db).Query(ctx, `SELECT call_id FROM call_leases ORDER BY call_id`)
	if err != nil {
		t.Fatalf("query call_leases: %v", err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read call_leases: %v", err)
	}
	if diff := cmp.Diff([]string{"call_prune_live", "call_prune_recent"}, left); diff != "" {
		t.Fatalf("leases left (-want +got):\n%s", diff)
	}
}

// TestClaimLeasesConcurrent has several owners claim the same calls in
// different orders at once. Each call must end up with one owner, and no
// claim may fail, as it would on a deadlock.
func TestClaimLeasesConcurrent(t *testing.T) {
	db := openClean(t, postgres.Options{MaxConns: 8})
	ids := make([]string, 60)
	for i := range ids {
		ids[i] = fmt.Sprintf("call_race_%02d", i)
	}

	const owners = 6
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		holders = make(map[string][]string)
		errs    []error
	)
	for o := range owners {
		owner := fmt.Sprintf("replica-%d", o)
		order := slices.Clone(ids)
		rand.New(rand.NewPCG(uint64(o), 1)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		wg.Go(func() {
			for round := range 5 {
				leases, err := db.ClaimLeases(t.Context(), owner, order[round*10:], time.Hour)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, l := range leases {
					if !slices.Contains(holders[l.CallID], owner) {
						holders[l.CallID] = append(holders[l.CallID], owner)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	for _, err := range errs {
		t.Errorf("ClaimLeases: %v", err)
	}
	for _, id := range ids {
		if len(holders[id]) > 1 {
			t.Errorf("%s held by %v, want one owner", id, holders[id])
		}
	}
}

func TestLeaseInvalid(t *testing.T) {
	ctx := t.Context()
	db := openClean(t, postgres.Options{})
	tooMany := make([]string, postgres.MaxLeaseBatch+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("call_%d", i)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"ClaimNoOwner", func() error { _, err := db.ClaimLeases(ctx, "", []string{"call_1"}, time.Minute); return err }},
		{"ClaimZeroTTL", func() error { _, err := db.ClaimLeases(ctx, "replica-a", []string{"call_1"}, 0); return err }},
		{"ClaimBadID", func() error {
			_, err := db.ClaimLeases(ctx, "replica-a", []string{"call\x00"}, time.Minute)
			return err
		}},
		{"ClaimEmptyID", func() error { _, err := db.ClaimLeases(ctx, "replica-a", []string{""}, time.Minute); return err }},
		{"ClaimTooMany", func() error { _, err := db.ClaimLeases(ctx, "replica-a", tooMany, time.Minute); return err }},
		{"RenewNoOwner", func() error { _, err := db.RenewLeases(ctx, "", time.Minute); return err }},
		{"RenewNegativeTTL", func() error { _, err := db.RenewLeases(ctx, "replica-a", -time.Second); return err }},
		{"ReleaseNoOwner", func() error { return db.ReleaseLeases(ctx, "") }},
		{"ReleaseOneNoOwner", func() error { return db.ReleaseLease(ctx, "", "call_1") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, callcat.ErrInvalid) {
				t.Fatalf("err=%v, want ErrInvalid", err)
			}
		})
	}

	// Duplicate ids count once, and an empty list claims nothing.
	leases := mustClaim(t, db, "replica-a", []string{"call_dup", "call_dup"}, time.Minute)
	if diff := cmp.Diff([]string{"call_dup"}, leaseCallIDs(leases)); diff != "" {
		t.Fatalf("claim of a duplicate id (-want +got):\n%s", diff)
	}
	if leases := mustClaim(t, db, "replica-a", nil, time.Minute); len(leases) != 0 {
		t.Fatalf("claim of no ids=%v, want none", leases)
	}
}
