package tracker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/callcat/callcat/internal/callcat"
)

// Defaults for the lease settings of Config.
const (
	DefaultLeaseTTL           = 15 * time.Second
	DefaultLeaseRenewInterval = 5 * time.Second
	DefaultAdoptBatch         = 500
	leaseCallTimeout          = 5 * time.Second
)

// leasing reports whether this tracker shares its calls with other replicas.
func (t *Tracker) leasing() bool {
	return t.cfg.Leaser != nil
}

// claimAndTrack tracks a live call that a webhook showed, when this replica
// can take its lease. A call another replica holds is remembered as foreign
// for a while, so its webhooks do not cost a claim each.
func (t *Tracker) claimAndTrack(ctx context.Context, callID string) {
	now := t.cfg.Now()

	t.mu.Lock()
	_, tracked := t.calls[callID]
	until, foreign := t.foreign[callID]
	t.mu.Unlock()
	if tracked || (foreign && now.Before(until)) {
		return
	}

	ctx, cancel := context.WithTimeout(ctx, leaseCallTimeout)
	leases, err := t.cfg.Leaser.ClaimLeases(ctx, t.cfg.Owner, []string{callID}, t.cfg.LeaseTTL)
	cancel()
	if err != nil {
		t.limited.Log(ctx, slog.LevelWarn, "lease_claim", "lease claim failed; another replica or adoption will poll the call",
			"call_id", callID, "err", err)
		return
	}
	if len(leases) == 0 {
		t.mu.Lock()
		if len(t.foreign) < t.cfg.MaxTracked {
			t.foreign[callID] = now.Add(t.cfg.LeaseRenewInterval)
		}
		t.mu.Unlock()
		return
	}
	t.trackLeased(leases, now)
}

// trackLeased tracks calls whose leases this replica just claimed. Each call
// enters the registry with its lease in one step, so a renewal never sees it
// without one.
func (t *Tracker) trackLeased(leases []callcat.Lease, now time.Time) {
	for _, l := range leases {
		if !t.recordLease(l, now) {
			t.releaseLease(l.CallID)
		}
	}
}

// recordLease tracks l's call with l's generation and reports whether the
// call is tracked.
func (t *Tracker) recordLease(l callcat.Lease, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()

	delete(t.foreign, l.CallID)
	if t.poller == nil {
		return true
	}
	c, err := t.trackLocked(l.CallID, now, false)
	if err != nil {
		return false
	}
	t.leaseClaims++
	c.lease = l.Generation
	c.leaseClaim = t.leaseClaims
	return true
}

// runLeases renews this replica's leases and adopts live calls whose owner
// died, every LeaseRenewInterval, until ctx is done; then it releases every
// lease so other replicas take the calls over at once.
func (t *Tracker) runLeases(ctx context.Context) {
	ticker := time.NewTicker(t.cfg.LeaseRenewInterval)
	defer ticker.Stop()

	lastRenew := t.cfg.Now()
	for {
		if err := t.renewLeases(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			t.limited.Log(ctx, slog.LevelWarn, "lease_renew", "lease renewal failed; retrying", "owner", t.cfg.Owner, "err", err)
			if t.cfg.Now().Sub(lastRenew) > t.cfg.LeaseTTL {
				// The leases have expired by now; another replica may hold
				// them, so polling them here would duplicate its work.
				t.dropLeased("lease renewal failed for longer than the lease TTL")
			}
		} else {
			lastRenew = t.cfg.Now()
			t.adopt(ctx)
		}

		select {
		case <-ctx.Done():
		case <-ticker.C:
			continue
		}
		break
	}

	if t.cfg.KeepLeasesOnStop {
		return
	}
	releaseCtx, cancel := context.WithTimeout(context.Background(), leaseCallTimeout)
	defer cancel()
	if err := t.cfg.Leaser.ReleaseLeases(releaseCtx, t.cfg.Owner); err != nil {
		t.logger.Warn("releasing leases at shutdown failed; they expire by themselves", "owner", t.cfg.Owner, "err", err)
	}
}

// renewLeases extends every lease this replica holds and stops polling the
// calls whose lease it lost.
func (t *Tracker) renewLeases(ctx context.Context) error {
	// Leases claimed while the renewal runs may be missing from its result,
	// so only those claimed before it are checked.
	t.mu.Lock()
	claimedBefore := t.leaseClaims
	t.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, leaseCallTimeout)
	defer cancel()
	held, err := t.cfg.Leaser.RenewLeases(ctx, t.cfg.Owner, t.cfg.LeaseTTL)
	if err != nil {
		return err
	}

	generations := make(map[string]int64, len(held))
	for _, l := range held {
		generations[l.CallID] = l.Generation
	}

	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, c := range t.calls {
		if c.final || c.leaseClaim > claimedBefore {
			continue
		}
		gen, ok := generations[id]
		if ok && gen == c.lease {
			continue
		}
		t.logger.Warn("call lease lost; polling stopped here", "call_id", id, "owner", t.cfg.Owner)
		t.metrics.leasesLost.Inc()
		t.untrackLocked(c)
	}
	for id, until := range t.foreign {
		if !now.Before(until) {
			delete(t.foreign, id)
		}
	}
	return nil
}

// adopt claims live calls that no replica holds, such as those of a replica
// that died, up to the tracked-call bound.
func (t *Tracker) adopt(ctx context.Context) {
	t.mu.Lock()
	room := t.cfg.MaxTracked - len(t.calls)
	t.mu.Unlock()
	if room <= 0 {
		return
	}

	ctx, cancel := context.WithTimeout(ctx, leaseCallTimeout)
	defer cancel()
	ids, err := t.cfg.Leaser.AdoptableCalls(ctx, min(room, t.cfg.AdoptBatch))
	if err != nil || len(ids) == 0 {
		if err != nil && ctx.Err() == nil {
			t.limited.Log(ctx, slog.LevelWarn, "lease_adopt", "listing adoptable calls failed", "err", err)
		}
		return
	}

	leases, err := t.cfg.Leaser.ClaimLeases(ctx, t.cfg.Owner, ids, t.cfg.LeaseTTL)
	if err != nil {
		t.limited.Log(ctx, slog.LevelWarn, "lease_adopt", "claiming adoptable calls failed", "err", err)
		return
	}
	if len(leases) > 0 {
		t.logger.Info("adopted live calls", "count", len(leases), "owner", t.cfg.Owner)
		t.metrics.adopted.Add(float64(len(leases)))
	}
	t.trackLeased(leases, t.cfg.Now())
}

// dropLeased stops polling every leased call after the leases can no longer
// be trusted.
func (t *Tracker) dropLeased(reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.calls {
		if !c.final {
			t.untrackLocked(c)
			n++
		}
	}
	if n > 0 {
		t.logger.Warn("stopped polling leased calls", "count", n, "reason", reason)
	}
}

// releaseLease gives up the lease of a call that left tracking, so the lease
// table holds only live calls.
func (t *Tracker) releaseLease(callID string) {
	if !t.leasing() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseCallTimeout)
	defer cancel()
	if err := t.cfg.Leaser.ReleaseLease(ctx, t.cfg.Owner, callID); err != nil {
		t.limited.Log(ctx, slog.LevelWarn, "lease_release", "lease release failed; it expires by itself", "call_id", callID, "err", err)
	}
}

// isLeaseLost reports whether err means another replica owns the call now.
func isLeaseLost(err error) bool {
	return errors.Is(err, callcat.ErrLeaseLost)
}
