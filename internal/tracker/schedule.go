package tracker

import (
	"container/heap"
	"context"
	"log/slog"
	"time"
)

// trackedCall is the in-memory state of one live call. All fields are guarded
// by Tracker.mu.
type trackedCall struct {
	id            string
	phase         time.Duration // offset of this call's polls within an interval, from a hash of its id
	started       time.Time     // tracking start; MaxTrackingDuration counts from here
	next          time.Time     // when the call is due
	lastPoll      time.Time
	lastPush      time.Time
	failures      int       // consecutive failed polls
	notBefore     time.Time // no poll before this: the provider's last Retry-After
	final         bool      // the call reached a terminal status: one last fetch, then it leaves memory
	polling       bool      // a worker holds the call
	finalFetch    bool      // the poll a worker holds is the final fetch, because final was set when it started
	finalFailures int       // failed attempts of the final fetch, bounded by Config.FinalFetchAttempts
	removed       bool      // deleted while a worker held it
	heapIndex     int       // position in the queue, -1 when not queued
	lease         int64     // generation of this replica's lease, 0 without leases
	leaseClaim    uint64    // Tracker.leaseClaims when the lease was recorded

	// digest is updateDigest of the last poll result stored, 0 when none or
	// when a webhook changed the call since. A poll that returns the same
	// result skips the store.
	digest uint64
}

// callHeap is a min-heap of calls by due time.
type callHeap []*trackedCall

func (h callHeap) Len() int           { return len(h) }
func (h callHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h callHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}

func (h *callHeap) Push(x any) {
	c := x.(*trackedCall)
	c.heapIndex = len(*h)
	*h = append(*h, c)
}

func (h *callHeap) Pop() any {
	old := *h
	n := len(old)
	c := old[n-1]
	old[n-1] = nil
	c.heapIndex = -1
	*h = old[:n-1]
	return c
}

// track registers a call and queues its first poll on its phase. final queues
// one immediate fetch for a call that just reached a terminal status.
func (t *Tracker) track(callID string, started time.Time, final bool) error {
	if t.poller == nil {
		return nil
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := t.trackLocked(callID, started, final)
	return err
}

// trackLocked is track for a caller that holds t.mu. It returns the tracked
// call, new or already there.
func (t *Tracker) trackLocked(callID string, started time.Time, final bool) (*trackedCall, error) {
	now := t.cfg.Now()
	if c, ok := t.calls[callID]; ok {
		if final && !c.final {
			c.final = true
			t.queueLocked(c, now)
		}
		return c, nil
	}
	if len(t.calls) >= t.cfg.MaxTracked {
		t.metrics.trackRejected.Inc()
		t.limited.Log(context.Background(), slog.LevelWarn, "max_tracked", "tracked call limit reached; call not polled",
			"call_id", callID, "max_tracked", t.cfg.MaxTracked)
		return nil, ErrTooManyCalls
	}

	c := &trackedCall{
		id:        callID,
		phase:     time.Duration(hash32(callID)) % t.cfg.PollInterval,
		started:   started,
		final:     final,
		heapIndex: -1,
	}
	t.calls[callID] = c
	t.metrics.tracked.Set(float64(len(t.calls)))

	due := now
	if !final {
		due = nextSlot(now, t.cfg.PollInterval, c.phase)
	}
	t.queueLocked(c, due)
	return c, nil
}

// notePush records that a push webhook arrived for a tracked call, which
// slows its polling to the reconcile interval.
func (t *Tracker) notePush(callID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.calls[callID]; ok {
		c.lastPush = t.cfg.Now()
	}
}

// forgetDigest makes the next poll of callID store its result even when it
// equals the last one, because something else (a webhook) changed the call
// in between.
func (t *Tracker) forgetDigest(callID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.calls[callID]; ok {
		c.digest = 0
	}
}

// untrackLocked removes a call from memory. A worker that holds the call
// finds removed set and drops it.
func (t *Tracker) untrackLocked(c *trackedCall) {
	if c.heapIndex >= 0 {
		heap.Remove(&t.queue, c.heapIndex)
	}
	c.removed = true
	if t.cfg.LeakEndedCalls {
		// Stands for a transcript kept with the call: about 16 KiB each.
		t.leaked = append(t.leaked, leakedCall{call: c, transcript: make([]byte, 16<<10)})
	}
	if t.calls[c.id] == c {
		delete(t.calls, c.id)
	}
	t.metrics.tracked.Set(float64(len(t.calls)))
}

// queueLocked (re)queues c to be due at when, or at c.notBefore if that is
// later, unless a worker holds it.
func (t *Tracker) queueLocked(c *trackedCall, when time.Time) {
	if c.polling || c.removed {
		return
	}
	if when.Before(c.notBefore) {
		// A final fetch queued by call_ended must wait out a Retry-After
		// too: the provider asked for no request before then.
		when = c.notBefore
	}

	c.next = when
	if c.heapIndex >= 0 {
		heap.Fix(&t.queue, c.heapIndex)
	} else {
		heap.Push(&t.queue, c)
	}

	if t.queue[0] == c {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// schedule hands due calls to the workers until ctx is done. A call whose
// pushes are flowing is deferred instead of polled (see deferUntilLocked).
func (t *Tracker) schedule(ctx context.Context, work chan<- *trackedCall) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	for {
		c, wait := t.nextDue()
		if c != nil {
			select {
			case work <- c:
				continue
			case <-ctx.Done():
				t.requeue(c)
				return
			}
		}

		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		case <-timer.C:
		}
	}
}

// nextDue pops the next call to poll, or returns how long to wait.
func (t *Tracker) nextDue() (*trackedCall, time.Duration) {
	const idleWait = time.Minute

	t.mu.Lock()
	defer t.mu.Unlock()

	for {
		now := t.cfg.Now()
		if len(t.queue) == 0 {
			return nil, idleWait
		}

		if !t.authPause.IsZero() && now.Before(t.authPause) {
			return nil, t.authPause.Sub(now)
		}

		c := t.queue[0]
		if c.next.After(now) {
			return nil, c.next.Sub(now)
		}

		heap.Pop(&t.queue)
		if defer_, ok := t.deferUntilLocked(c, now); ok {
			c.next = defer_
			heap.Push(&t.queue, c)
			continue
		}

		if !t.authPause.IsZero() {
			// One probe poll at a time while the key is rejected.
			t.authPause = now.Add(t.cfg.AuthRetryInterval)
		}
		c.polling = true
		c.finalFetch = c.final
		t.metrics.lateness.Observe(now.Sub(c.next).Seconds())
		return c, 0
	}
}

// deferUntilLocked returns a later due time for a call whose pushes keep it
// current: while a push arrived within PollInterval, polls slow down to
// ReconcileInterval. A final fetch and a call in backoff are never deferred.
func (t *Tracker) deferUntilLocked(c *trackedCall, now time.Time) (time.Time, bool) {
	if c.final || c.failures > 0 || c.lastPush.IsZero() {
		return time.Time{}, false
	}

	pushFresh := c.lastPush.Add(t.cfg.PollInterval)
	if !pushFresh.After(now) {
		return time.Time{}, false
	}

	reconcileDue := c.lastPoll.Add(t.cfg.ReconcileInterval)
	if !reconcileDue.After(now) {
		return time.Time{}, false
	}

	if pushFresh.Before(reconcileDue) {
		return pushFresh, true
	}
	return reconcileDue, true
}

// requeue puts back a call the scheduler popped but could not hand over.
func (t *Tracker) requeue(c *trackedCall) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c.polling = false
	c.finalFetch = false
	if !c.removed {
		t.queueLocked(c, c.next)
	}
}

// nextSlot returns the first time after now that falls on phase within
// repeating periods of interval, so each call keeps its own offset and polls
// of many calls spread evenly.
func nextSlot(now time.Time, interval, phase time.Duration) time.Time {
	n := now.UnixNano()
	p := int64(phase % interval)
	i := int64(interval)
	k := (n-p)/i + 1
	return time.Unix(0, k*i+p)
}
