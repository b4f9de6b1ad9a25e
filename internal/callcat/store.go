package callcat

import (
	"context"
	"time"
)

// Store is the durable state of callcat: calls, their utterances, their
// events and the webhook deliveries received. Implementations must be safe for
// concurrent use and must never return "database is locked" style errors to
// callers under concurrent writes.
type Store interface {
	// Apply merges u into the stored call in one transaction (see Merge),
	// records u.Delivery when set, and returns what was written. A delivery
	// whose digest is already stored returns Duplicate true and changes
	// nothing. Apply fails with ErrInvalid when u.Fields.ID is empty.
	Apply(ctx context.Context, u Update) (ApplyResult, error)

	// Call returns one call, or ErrNotFound.
	Call(ctx context.Context, id string) (Call, error)

	// Calls returns calls newest first (by creation), filtered by f.
	Calls(ctx context.Context, f CallFilter) (CallPage, error)

	// Transcript returns a call's utterances in order, or ErrNotFound when
	// the call does not exist.
	Transcript(ctx context.Context, callID string) ([]Utterance, error)

	// Events returns up to limit events of a call with seq > afterSeq, in seq
	// order. An unknown call has no events.
	Events(ctx context.Context, callID string, afterSeq int64, limit int) ([]Event, error)

	// LiveCalls returns every call whose status is not terminal, oldest first,
	// up to limit.
	LiveCalls(ctx context.Context, limit int) ([]Call, error)

	// HasDelivery reports whether a webhook delivery with this digest is stored.
	HasDelivery(ctx context.Context, digest string) (bool, error)

	// Ping checks that the store can serve reads.
	Ping(ctx context.Context) error

	// Close releases the store's connections. It does not wait for Apply
	// calls still in flight on other goroutines to be retried.
	Close() error
}

// ApplyResult is the record of what Store.Apply wrote.
type ApplyResult struct {
	Call      Call
	Events    []Event
	Created   bool
	Duplicate bool

	// SnapshotStale is true when the update's snapshot was older than the
	// stored one and was ignored.
	SnapshotStale bool
}

// StatusFilter selects calls by lifecycle state in CallFilter.
type StatusFilter string

// Values of StatusFilter.
const (
	FilterAll   StatusFilter = "all"
	FilterLive  StatusFilter = "live"
	FilterEnded StatusFilter = "ended"
)

// CallFilter selects and pages calls for Store.Calls.
type CallFilter struct {
	Status StatusFilter

	// Limit is the page size; implementations clamp it to [1, MaxPageSize].
	Limit int

	// Cursor is the opaque next_cursor of the previous page, or "". A cursor
	// is only meaningful with the same filter fields.
	Cursor string

	// AgentID and Direction, when not "", select calls with that exact
	// value. Number selects calls whose from_number or to_number equals it.
	AgentID   string
	Direction string
	Number    string

	// StartFrom and StartBefore, when not nil, select calls whose
	// start_timestamp (provider Unix ms) is >= StartFrom and < StartBefore.
	// Calls that never started are then left out.
	StartFrom   *int64
	StartBefore *int64
}

// Page sizes for Store.Calls.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// CallPage is one page of calls. NextCursor is "" on the last page.
type CallPage struct {
	Calls      []Call
	NextCursor string
}

// Clock returns the current time; tests inject a fixed one.
type Clock func() time.Time

// IdempotencyRecord is the stored state of one Idempotency-Key of the calls
// API.
type IdempotencyRecord struct {
	Key string

	// RequestHash identifies the request body the key was first used with.
	RequestHash string

	// CreatedAt is when the key was first claimed, in callcat's clock.
	CreatedAt time.Time

	// Status is the HTTP status of the first request's response, or 0 while
	// that request is still in flight. Body is that response's body.
	Status int
	Body   []byte
}

// IdempotencyStore keeps the Idempotency-Key records of the calls API. Both
// stores implement it beside Store.
type IdempotencyStore interface {
	// ClaimIdempotency atomically claims key for a request with requestHash.
	// When no record of key was created after now-ttl, it stores a new
	// in-flight record (Status 0) and returns it with claimed true; of any
	// number of concurrent claims of one key exactly one succeeds. Otherwise
	// it returns the existing record with claimed false.
	ClaimIdempotency(ctx context.Context, key, requestHash string, now time.Time, ttl time.Duration) (rec IdempotencyRecord, claimed bool, err error)

	// CompleteIdempotency stores the response of a claimed key.
	CompleteIdempotency(ctx context.Context, key string, status int, body []byte) error

	// ReleaseIdempotency deletes an in-flight record, so that a retry with
	// the same key is tried again. A completed record is kept.
	ReleaseIdempotency(ctx context.Context, key string) error
}

// Pruner deletes old records in small batches, each in its own short
// transaction, so that retention never holds writers up for long. Each
// method deletes at most batch records (clamped to [1, MaxPruneBatch]) and
// returns how many it deleted; callers repeat until that is below batch.
// Both stores implement it beside Store.
type Pruner interface {
	// PruneCalls deletes ended calls (terminal status) last updated before
	// before, with their utterances, events and leases. Live calls are
	// never deleted, however old.
	PruneCalls(ctx context.Context, before time.Time, batch int) (int, error)

	// PruneDeliveries deletes webhook delivery records received before
	// before. A provider retry of such a delivery is then stored again,
	// which Merge makes harmless.
	PruneDeliveries(ctx context.Context, before time.Time, batch int) (int, error)

	// PruneIdempotency deletes Idempotency-Key records created before
	// before.
	PruneIdempotency(ctx context.Context, before time.Time, batch int) (int, error)
}

// MaxPruneBatch caps one Pruner batch.
const MaxPruneBatch = 5000

// ClampPruneBatch applies the batch rule of Pruner.
func ClampPruneBatch(batch int) int {
	return min(max(batch, 1), MaxPruneBatch)
}
