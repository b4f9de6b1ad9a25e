package sqlite

import "context"

// writeQueue admits one writer at a time in arrival order. The writer pool
// alone would serve its waiters in random order (database/sql hands a freed
// connection to a random waiting request), so under load a few transactions
// waited many times longer than the rest, and the p99 acknowledgement
// latency of webhooks was several times the median wait. Blocked senders on
// a channel are served first come, first served; that is how the Go runtime
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
