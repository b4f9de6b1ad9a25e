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
		t.finishPoll(c, now, false, 0)
		return
	}

	applyCtx, cancel := context.WithTimeout(ctx, DefaultApplyTimeout)
	res, err := t.apply(applyCtx, u)
	cancel()
	if isLeaseLost(err) {
		t.metrics.polls.WithLabelValues(string(outcomeLeaseLost)).Inc()
		t.metrics.leasesLost.Inc()
		t.logger.Warn("call lease lost; poll result discarded and polling stopped here", "call_id", c.id, "owner", t.cfg.Owner)
		t.finishPoll(c, now, true, 0)
		return
	}
	if err != nil {
		t.metrics.polls.WithLabelValues(string(outcomeStoreFail)).Inc()
		t.limited.Log(ctx, slog.LevelError, "poll_store", "store poll result failed; retrying",
			"call_id", c.id, "err", err)
		t.finishPoll(c, now, false, t.backoff(c, 0))
		return
	}
	t.metrics.polls.WithLabelValues(string(outcomeOK)).Inc()
	t.resumeAfterAuth()
	t.rememberDigest(c, digest)

	terminal := res.Call.Status.Terminal()
	if terminal {
		t.logger.Debug("call left tracking", "call_id", c.id, "status", res.Call.Status)
	}
	if t.finishPoll(c, now, terminal, 0) && u.Lease != nil {
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
		t.finishPoll(c, now, false, t.cfg.AuthRetryInterval)

	case status == http.StatusNotFound || status == http.StatusUnprocessableEntity:
		t.metrics.polls.WithLabelValues(string(outcomeGone)).Inc()
		// NOTE: the call stays live in the store, so a restart or another
		// replica's adoption polls it once more after its lease expires.
		t.limited.Log(ctx, slog.LevelWarn, "poll_gone", "provider does not know the call; tracking stopped", "call_id", c.id, "status", status)
		t.finishPoll(c, now, true, 0)

	default:
		t.metrics.polls.WithLabelValues(string(outcomeRetry)).Inc()
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
		kind := failureKind(status, err)
		t.limited.Log(ctx, slog.LevelWarn, "poll_"+kind, "get-call failed; backing off",
			"call_id", c.id, "kind", kind, "status", status, "delay", delay, "err", err)
		t.finishPoll(c, now, false, delay)
	}
}

// finishPoll releases a call after a poll: it leaves memory when done or when
// it has been tracked longer than MaxTrackingDuration, otherwise it is queued
// again, after delay when non-zero, else on its next slot. It reports whether
// the call left memory.
func (t *Tracker) finishPoll(c *trackedCall, now time.Time, done bool, delay time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()

	c.polling = false
	c.lastPoll = now
	if delay > 0 {
		c.failures++
	} else {
		c.failures = 0
	}

	if c.removed {
		return false
	}
	// A final fetch that failed is retried like any poll: the call_ended
	// webhook that queued it may lack what only get-call returns.
	if done || (c.final && delay == 0) {
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

	if delay > 0 {
		t.queueLocked(c, now.Add(delay))
		return false
	}
	t.queueLocked(c, nextSlot(now, t.cfg.PollInterval, c.phase))
	return false
}

// backoff returns the wait before the next poll of a failing call:
// exponential from BackoffMin to BackoffMax with full jitter, or the
// provider's Retry-After (capped at RetryAfterMax) when that is longer.
func (t *Tracker) backoff(c *trackedCall, retryAfter time.Duration) time.Duration {
	t.mu.Lock()
	failures := c.failures
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
