package tracker

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
)

// pollOutcome names the result of one poll, for metrics and rate-limited logs.
type pollOutcome string

const (
	outcomeOK        pollOutcome = "ok"
	outcomeRetry     pollOutcome = "retry"
	outcomeAuth      pollOutcome = "auth"
	outcomeGone      pollOutcome = "gone"
	outcomeStoreFail pollOutcome = "store_error"
	outcomeCanceled  pollOutcome = "canceled"
	outcomeLeaseLost pollOutcome = "lease_lost"
	outcomeGivenUp   pollOutcome = "given_up" // the last allowed attempt of a final fetch failed
)

// pollResult is the class of a finished poll, which decides what finishPoll
// does with the call.
type pollResult uint8

const (
	resultLive   pollResult = iota // the result was stored and the call is live
	resultEnded                    // the result was stored and the call is terminal
	resultFailed                   // no result, so poll again after a delay
	resultDrop                     // stop polling (unknown call, lease lost, or final fetch given up)
)

// poll fetches one call, applies what it returned and decides when the call
// is due next, or that it leaves memory.
func (t *Tracker) poll(ctx context.Context, c *trackedCall) {
	call, err := t.poller.GetCall(ctx, c.id)
	if err != nil {
		t.pollFailed(ctx, c, err)
		return
	}

	now := t.cfg.Now()
	u := callcat.Update{Fields: call.Fields()}
	u.Fields.ID = c.id
	if lease := t.leaseOf(c); lease > 0 {
		u.Lease = &callcat.Lease{CallID: c.id, Owner: t.cfg.Owner, Generation: lease}
	}
	if utterances, ok := call.Utterances(); ok {
		u.Snapshot = &callcat.Snapshot{
			Utterances: utterances,
			Final:      u.Fields.Status.Terminal(),
			TakenAt:    now.UnixMilli(),
		}
	}

	// A result equal to the last one stored would only move the snapshot's
	// TakenAt, so it skips the store transaction. A final fetch is always
	// stored, because it ends tracking.
	digest := updateDigest(t.digestSeed, &u)
	if t.unchangedSinceLastPoll(c, digest) {
		t.metrics.polls.WithLabelValues(string(outcomeOK)).Inc()
		t.metrics.unchangedPolls.Inc()
		t.resumeAfterAuth()
		t.finishPoll(c, now, resultLive, 0)
		return
	}

	applyCtx, cancel := context.WithTimeout(ctx, DefaultApplyTimeout)
	res, err := t.apply(applyCtx, u)
	cancel()
	if isLeaseLost(err) {
		t.metrics.polls.WithLabelValues(string(outcomeLeaseLost)).Inc()
		t.metrics.leasesLost.Inc()
		t.logger.Warn("call lease lost; poll result discarded and polling stopped here", "call_id", c.id, "owner", t.cfg.Owner)
		t.finishPoll(c, now, resultDrop, 0)
		return
	}
	if err != nil {
		delay := t.backoff(c, 0)
		if t.finalFetchFailed(c) {
			t.giveUpFinalFetch(ctx, c, now, err)
			return
		}
		t.metrics.polls.WithLabelValues(string(outcomeStoreFail)).Inc()
		t.limited.Log(ctx, slog.LevelError, "poll_store", "store poll result failed; retrying",
			"call_id", c.id, "err", err)
		t.finishPoll(c, now, resultFailed, delay)
		return
	}
	t.metrics.polls.WithLabelValues(string(outcomeOK)).Inc()
	t.resumeAfterAuth()
	t.rememberDigest(c, digest)

	result := resultLive
	if res.Call.Status.Terminal() {
		result = resultEnded
	}
	left := t.finishPoll(c, now, result, 0)
	if left {
		t.logger.Debug("call left tracking", "call_id", c.id, "status", res.Call.Status)
	}
	if left && u.Lease != nil {
		t.releaseLease(c.id)
	}
}

// unchangedSinceLastPoll reports whether digest equals that of c's last
// stored poll result, and c is not due for its final fetch.
func (t *Tracker) unchangedSinceLastPoll(c *trackedCall, digest uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !c.final && c.digest == digest
}

func (t *Tracker) rememberDigest(c *trackedCall, digest uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c.digest = digest
}

// leaseOf returns the generation to fence c's poll with, or 0. A final
// fetch is not fenced: any replica may store a terminal payload.
func (t *Tracker) leaseOf(c *trackedCall) int64 {
	if !t.leasing() {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.final {
		return 0
	}
	return c.lease
}

// pollFailed classifies a failed poll: the provider rejected the key (pause
// every poll), the call is unknown (stop tracking it), or the error is
// transient (back off, honouring Retry-After).
func (t *Tracker) pollFailed(ctx context.Context, c *trackedCall, err error) {
	now := t.cfg.Now()

	if ctx.Err() != nil {
		t.metrics.polls.WithLabelValues(string(outcomeCanceled)).Inc()
		t.mu.Lock()
		c.polling = false
		c.finalFetch = false
		if !c.removed {
			t.queueLocked(c, now)
		}
		t.mu.Unlock()
		return
	}

	var apiErr *retell.APIError
	status := 0
	if errors.As(err, &apiErr) {
		status = apiErr.StatusCode
	}

	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		t.metrics.polls.WithLabelValues(string(outcomeAuth)).Inc()
		t.pauseForAuth(ctx, status)
		// A rejected key does not count against a final fetch's attempts,
		// so the final fetch waits until the key works again.
		t.finishPoll(c, now, resultFailed, t.cfg.AuthRetryInterval)

	case status == http.StatusNotFound || status == http.StatusUnprocessableEntity:
		t.metrics.polls.WithLabelValues(string(outcomeGone)).Inc()
		// NOTE: the call stays live in the store, so a restart or another
		// replica's adoption polls it once more after its lease expires.
		t.limited.Log(ctx, slog.LevelWarn, "poll_gone", "provider does not know the call; tracking stopped", "call_id", c.id, "status", status)
		t.finishPoll(c, now, resultDrop, 0)

	default:
		var retryAfter time.Duration
		if apiErr != nil {
			retryAfter = min(apiErr.RetryAfter, t.cfg.RetryAfterMax)
		}
		if retryAfter > 0 {
			t.mu.Lock()
			c.notBefore = now.Add(retryAfter)
			t.mu.Unlock()
		}
		delay := t.backoff(c, retryAfter)
		if t.finalFetchFailed(c) {
			t.giveUpFinalFetch(ctx, c, now, err)
			return
		}
		t.metrics.polls.WithLabelValues(string(outcomeRetry)).Inc()
		kind := failureKind(status, err)
		t.limited.Log(ctx, slog.LevelWarn, "poll_"+kind, "get-call failed; backing off",
			"call_id", c.id, "kind", kind, "status", status, "delay", delay, "err", err)
		t.finishPoll(c, now, resultFailed, delay)
	}
}

// finalFetchFailed counts a failed attempt of c's final fetch and reports
// whether it was the last one Config.FinalFetchAttempts allows. A failed poll
// that is not a final fetch returns false.
func (t *Tracker) finalFetchFailed(c *trackedCall) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !c.finalFetch {
		return false
	}
	c.finalFailures++
	return c.finalFailures >= t.cfg.FinalFetchAttempts
}

// giveUpFinalFetch stops polling an ended call whose final fetch failed
// Config.FinalFetchAttempts times. The call keeps what its webhooks stored.
func (t *Tracker) giveUpFinalFetch(ctx context.Context, c *trackedCall, now time.Time, err error) {
	t.metrics.polls.WithLabelValues(string(outcomeGivenUp)).Inc()
	t.limited.Log(ctx, slog.LevelWarn, "final_fetch_given_up",
		"final fetch of an ended call failed on every attempt; tracking stopped without it",
		"call_id", c.id, "attempts", t.cfg.FinalFetchAttempts, "err", err)
	t.finishPoll(c, now, resultDrop, 0)
}

// finishPoll releases a call after a poll and reports whether it left
// memory. The call leaves on resultDrop, once a poll stored its end, or after
// MaxTrackingDuration. Otherwise it is queued again, after delay when the
// poll failed, else on its next slot. A call that ended while an earlier poll
// was in flight is queued at once, because its final fetch is still due. That
// costs one extra get-call when the poll in flight had already seen the end.
func (t *Tracker) finishPoll(c *trackedCall, now time.Time, result pollResult, delay time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()

	finalFetch := c.finalFetch
	c.finalFetch = false
	c.polling = false
	c.lastPoll = now
	if result == resultFailed {
		c.failures++
	} else {
		c.failures = 0
	}

	if c.removed {
		return false
	}
	switch {
	case result == resultDrop:
		t.untrackLocked(c)
		return true
	case c.final && !finalFetch:
		t.queueLocked(c, now)
		return false
	case result == resultEnded, c.final && result == resultLive:
		// A final fetch that failed is retried below, because the
		// call_ended webhook that queued it may lack what only get-call
		// returns. finalFetchFailed bounds its attempts.
		t.untrackLocked(c)
		return true
	}

	if now.Sub(c.started) > t.cfg.MaxTrackingDuration {
		t.logger.Warn("call tracked longer than the maximum; polling stopped",
			"call_id", c.id, "max_tracking_duration", t.cfg.MaxTrackingDuration)
		t.metrics.expired.Inc()
		t.untrackLocked(c)
		return true
	}

	if result == resultFailed {
		t.queueLocked(c, now.Add(delay))
		return false
	}
	t.queueLocked(c, nextSlot(now, t.cfg.PollInterval, c.phase))
	return false
}

// backoff returns the wait before the next poll of a failing call:
// exponential from BackoffMin to BackoffMax with full jitter, or the
// provider's Retry-After (capped at RetryAfterMax) when that is longer. A
// final fetch backs off by its own failed attempts, so a call whose polls
// failed often while it was live still gets its final fetch soon.
func (t *Tracker) backoff(c *trackedCall, retryAfter time.Duration) time.Duration {
	t.mu.Lock()
	failures := c.failures
	if c.finalFetch {
		failures = c.finalFailures
	}
	t.mu.Unlock()

	ceiling := t.cfg.BackoffMin << min(failures, 16)
	if ceiling > t.cfg.BackoffMax || ceiling <= 0 {
		ceiling = t.cfg.BackoffMax
	}
	delay := t.cfg.BackoffMin/2 + rand.N(ceiling-t.cfg.BackoffMin/2+1)

	if retryAfter > t.cfg.RetryAfterMax {
		retryAfter = t.cfg.RetryAfterMax
	}
	return max(delay, retryAfter)
}

// pauseForAuth stops all polling until a probe poll succeeds.
func (t *Tracker) pauseForAuth(ctx context.Context, status int) {
	t.mu.Lock()
	first := t.authPause.IsZero()
	t.authPause = t.cfg.Now().Add(t.cfg.AuthRetryInterval)
	t.mu.Unlock()

	if first {
		t.metrics.authPaused.Set(1)
		t.logger.Error("provider rejected the API key; polling paused", "status", status,
			"retry_interval", t.cfg.AuthRetryInterval)
		return
	}
	t.limited.Log(ctx, slog.LevelWarn, "auth_probe", "provider still rejects the API key", "status", status)
}

func (t *Tracker) resumeAfterAuth() {
	t.mu.Lock()
	paused := !t.authPause.IsZero()
	t.authPause = time.Time{}
	t.mu.Unlock()

	if paused {
		t.metrics.authPaused.Set(0)
		t.logger.Info("provider accepts the API key again; polling resumed")
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// failureKind groups poll errors for rate-limited logging. status is that
// of an APIError, 0 for every other error.
func failureKind(status int, err error) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "429"
	case status >= 500:
		return "5xx"
	case status > 0:
		return "4xx"
	case errors.Is(err, retell.ErrMalformedBody), errors.Is(err, retell.ErrMissingCallID):
		// A 2xx body cut short or not a call object.
		return "malformed"
	case errors.Is(err, retell.ErrResponseTooLarge):
		return "too_large"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "network"
	}
}
