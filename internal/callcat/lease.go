package callcat

import (
	"context"
	"errors"
	"time"
)

// ErrLeaseLost means a write carried a lease that the replica no longer
// holds: another replica claimed the call, or the lease expired and was
// claimed again with a newer generation. The write was not applied.
var ErrLeaseLost = errors.New("call lease lost")

// Lease is one replica's exclusive right to poll one live call until
// ExpiresAt. Generation increases every time the call changes hands, so a
// write fenced with an old generation is rejected.
type Lease struct {
	CallID     string
	Owner      string
	Generation int64
	ExpiresAt  time.Time
}

// Leaser is implemented by stores shared by several replicas. A store
// without it (SQLite) serves one replica, which polls every live call.
type Leaser interface {
	// ClaimLeases takes the leases of the given calls that are unowned,
	// expired or already owned by owner, for ttl, and returns those now held.
	ClaimLeases(ctx context.Context, owner string, callIDs []string, ttl time.Duration) ([]Lease, error)

	// RenewLeases extends every unexpired lease of owner by ttl in one
	// statement and returns the leases still held.
	RenewLeases(ctx context.Context, owner string, ttl time.Duration) ([]Lease, error)

	// ReleaseLeases gives up every lease of owner, for a clean shutdown.
	ReleaseLeases(ctx context.Context, owner string) error

	// ReleaseLease gives up owner's lease of one call, when the call ended
	// or left tracking. A lease held by another owner is left alone.
	ReleaseLease(ctx context.Context, owner, callID string) error

	// AdoptableCalls returns up to limit live calls that no replica holds
	// an unexpired lease on.
	AdoptableCalls(ctx context.Context, limit int) ([]string, error)
}
