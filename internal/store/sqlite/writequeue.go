package sqlite

import "context"

// writeQueue admits one writer at a time in arrival order. Without it, the
// writer pool would choose among its waiters at random, because database/sql
// hands a freed connection to a random waiting request (Go 1.26). Under load
// a few transactions would then wait far longer than the rest, which shows
// in the p99 acknowledgement latency of webhooks. The Go runtime serves the
// blocked senders of a channel first come, first served. That is how it
// queues them, not a guarantee of the language.
type writeQueue chan struct{}

func newWriteQueue() writeQueue {
	return make(writeQueue, 1)
}

// acquire waits for the turn of the caller, or returns ctx's error.
func (q writeQueue) acquire(ctx context.Context) error {
	select {
	case q <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release ends the turn taken by acquire.
func (q writeQueue) release() {
	<-q
}
