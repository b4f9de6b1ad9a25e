package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/store/postgres"
)

// batchRecorder records the SQL of every statement a DB sends, alone or in
// a batch, in order.
type batchRecorder struct {
	mu         sync.Mutex
	statements []string
}

func (r *batchRecorder) record(sql string) {
	r.mu.Lock()
	r.statements = append(r.statements, strings.Join(strings.Fields(sql), " "))
	r.mu.Unlock()
}

func (r *batchRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	r.record(data.SQL)
	return ctx
}

func (r *batchRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *batchRecorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (r *batchRecorder) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	r.record(data.SQL)
}

func (r *batchRecorder) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// take returns the statements recorded since the last call.
func (r *batchRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	statements := r.statements
	r.statements = nil
	return statements
}

// openRecorded opens a DB on an emptied test database whose statements r
// records.
func openRecorded(t *testing.T, r *batchRecorder) *postgres.DB {
	t.Helper()
	openClean(t, postgres.Options{}).Close()
	db, err := postgres.OpenTraced(t.Context(), postgres.DSN(), postgres.Options{}, r)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func readsUtterances(statements []string) bool {
	return slices.ContainsFunc(statements, func(s string) bool {
		return strings.Contains(s, "FROM utterances")
	})
}

func TestApplyWithoutSnapshotSkipsUtterances(t *testing.T) {
	ctx := t.Context()
	r := &batchRecorder{}
	db := openRecorded(t, r)
	id := "call_no_snapshot"
	mustApply(t, db, snapshotUpdate(id, 3, 4, 1))

	r.take()
	res := mustApply(t, db, callcat.Update{Fields: callcat.CallFields{ID: id, AgentID: "agent_b"}})
	if statements := r.take(); readsUtterances(statements) {
		t.Errorf("Apply without a snapshot read the utterances:\n%s", strings.Join(statements, "\n"))
	}
	if res.Call.AgentID != "agent_b" || res.Call.UtteranceCount != 3 {
		t.Errorf("result call: agent %q, %d utterances; want agent_b, 3", res.Call.AgentID, res.Call.UtteranceCount)
	}
	stored, err := db.Transcript(ctx, id)
	if err != nil {
		t.Fatalf("Transcript: %v", err)
	}
	if diff := cmp.Diff(makeUtterances(3, 4), stored); diff != "" {
		t.Errorf("stored utterances after an update without a snapshot (-want +got):\n%s", diff)
	}

	// A snapshot still reads them, to find what changed.
	r.take()
	res = mustApply(t, db, snapshotUpdate(id, 4, 4, 2))
	if statements := r.take(); !readsUtterances(statements) {
		t.Errorf("Apply with a snapshot did not read the utterances:\n%s", strings.Join(statements, "\n"))
	}
	if len(res.Events) != 1 || res.Events[0].Type != callcat.EventUtterance {
		t.Errorf("events of the longer snapshot: %v, want one utterance event", eventTypes(res.Events))
	}
}

func TestApplyUnchangedEnd(t *testing.T) {
	r := &batchRecorder{}
	db := openRecorded(t, r)
	id := "call_unchanged"
	mustApply(t, db, snapshotUpdate(id, 2, 3, 1))
	leases := mustClaim(t, db, "replica-a", []string{id}, time.Minute)
	if len(leases) != 1 {
		t.Fatalf("claimed %d leases, want 1", len(leases))
	}
	lease := leases[0]

	// A poll result equal to the stored call, fenced by a lease, wrote
	// nothing and rolls back.
	r.take()
	poll := statusUpdate(id, callcat.StatusOngoing)
	poll.Lease = &lease
	res := mustApply(t, db, poll)
	statements := r.take()
	if len(res.Events) != 0 || res.Created {
		t.Errorf("unchanged poll: %d events, created %v; want none", len(res.Events), res.Created)
	}
	if last := statements[len(statements)-1]; last != "ROLLBACK" {
		t.Errorf("unchanged poll ended with %q, want ROLLBACK:\n%s", last, strings.Join(statements, "\n"))
	}
	if slices.Contains(statements, "COMMIT") {
		t.Errorf("unchanged poll committed:\n%s", strings.Join(statements, "\n"))
	}

	// A change after the rolled-back poll is stored.
	if res := mustApply(t, db, statusUpdate(id, callcat.StatusEnded)); res.Call.Status != callcat.StatusEnded {
		t.Fatalf("status after the ended update: %s, want ended", res.Call.Status)
	}

	// A webhook that changes nothing still commits its delivery, so that
	// the same delivery is a duplicate afterwards.
	for i, want := range []bool{false, true} {
		u := statusUpdate(id, callcat.StatusOngoing)
		u.Delivery = &callcat.Delivery{Digest: fmt.Sprintf("%064x", 7), Event: "transcript_updated", CallID: id}
		r.take()
		res := mustApply(t, db, u)
		if res.Duplicate != want {
			t.Errorf("delivery %d: duplicate %v, want %v", i+1, res.Duplicate, want)
		}
		if statements := r.take(); i == 0 && !slices.Contains(statements, "COMMIT") {
			t.Errorf("unchanged webhook did not commit:\n%s", strings.Join(statements, "\n"))
		}
	}
}
