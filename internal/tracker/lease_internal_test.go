package tracker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/store/sqlite"
	"github.com/callcat/callcat/internal/stream"
)

// scriptedLeaser is a callcat.Leaser whose results the test sets. ClaimLeases
// grants every requested lease with generation 5.
type scriptedLeaser struct {
	mu      sync.Mutex
	claimed []string
	renew   func() []callcat.Lease
}

func (l *scriptedLeaser) ClaimLeases(_ context.Context, _ string, ids []string, _ time.Duration) ([]callcat.Lease, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var leases []callcat.Lease
	for _, id := range ids {
		l.claimed = append(l.claimed, id)
		leases = append(leases, callcat.Lease{CallID: id, Generation: 5})
	}
	return leases, nil
}

func (l *scriptedLeaser) RenewLeases(context.Context, string, time.Duration) ([]callcat.Lease, error) {
	return l.renew(), nil
}

func (l *scriptedLeaser) ReleaseLeases(context.Context, string) error        { return nil }
func (l *scriptedLeaser) ReleaseLease(context.Context, string, string) error { return nil }
func (l *scriptedLeaser) AdoptableCalls(context.Context, int) ([]string, error) {
	return nil, nil
}

// newLeasingTracker returns a tracker, not running, that leases its calls
// through leaser.
func newLeasingTracker(t *testing.T, leaser callcat.Leaser) *Tracker {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	client, err := retell.NewClient(retell.ClientConfig{BaseURL: srv.URL, APIKey: "key_lease_test"})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(client.Close)
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "callcat.db"), sqlite.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	hub, err := stream.NewHub(stream.Config{})
	if err != nil {
		t.Fatalf("NewHub: %v", err)
	}
	t.Cleanup(hub.Close)

	tr, err := New(db, hub, client, Config{Leaser: leaser, Owner: "replica-a"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tr
}

func (t *Tracker) isTracked(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.calls[id]
	return ok
}

// TestRenewKeepsLeaseClaimedDuringRenewal checks that a lease claimed while
// a renewal runs, and so missing from its result, is not taken for lost,
// and that the next renewal checks it.
func TestRenewKeepsLeaseClaimedDuringRenewal(t *testing.T) {
	leaser := &scriptedLeaser{}
	tr := newLeasingTracker(t, leaser)
	now := time.Now()
	tr.trackLeased([]callcat.Lease{{CallID: "call_old", Generation: 3}}, now)

	leaser.renew = func() []callcat.Lease {
		tr.trackLeased([]callcat.Lease{{CallID: "call_new", Generation: 7}}, now)
		return []callcat.Lease{{CallID: "call_old", Generation: 3}}
	}
	if err := tr.renewLeases(context.Background()); err != nil {
		t.Fatalf("renewLeases: %v", err)
	}
	if !tr.isTracked("call_new") {
		t.Fatalf("call_new, claimed during the renewal, is no longer tracked")
	}
	if !tr.isTracked("call_old") {
		t.Fatalf("call_old, renewed, is no longer tracked")
	}

	leaser.renew = func() []callcat.Lease {
		return []callcat.Lease{{CallID: "call_old", Generation: 3}}
	}
	if err := tr.renewLeases(context.Background()); err != nil {
		t.Fatalf("renewLeases: %v", err)
	}
	if tr.isTracked("call_new") {
		t.Fatalf("call_new is still tracked after a renewal that no longer holds its lease")
	}
	if !tr.isTracked("call_old") {
		t.Fatalf("call_old, renewed again, is no longer tracked")
	}
}

// TestTrackClaimsLeaseWhenLeasing checks that Track, as used for a call
// placed through the API, claims the call's lease when the tracker leases
// its calls, so that the next renewal keeps it.
func TestTrackClaimsLeaseWhenLeasing(t *testing.T) {
	leaser := &scriptedLeaser{}
	tr := newLeasingTracker(t, leaser)

	if err := tr.Track("call_api"); err != nil {
		t.Fatalf("Track: %v", err)
	}
	leaser.mu.Lock()
	claimed := append([]string(nil), leaser.claimed...)
	leaser.mu.Unlock()
	if len(claimed) != 1 || claimed[0] != "call_api" {
		t.Fatalf("claimed leases %q, want [call_api]", claimed)
	}

	leaser.renew = func() []callcat.Lease {
		return []callcat.Lease{{CallID: "call_api", Generation: 5}}
	}
	if err := tr.renewLeases(context.Background()); err != nil {
		t.Fatalf("renewLeases: %v", err)
	}
	if !tr.isTracked("call_api") {
		t.Fatalf("call_api is no longer tracked after a renewal that holds its lease")
	}
}
