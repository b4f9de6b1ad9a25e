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

// ApplyResult is what Store.Apply wrote.
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

	// Cursor is the opaque next_cursor of the previous page, or "".
	Cursor string
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
