package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callcat/callcat/internal/callcat"
)

// leasePruneAge is how long a lease must have been expired before
// AdoptableCalls deletes it when its call is no longer live. Until then its
// owner may still finish a fenced write with it.
const leasePruneAge = 10 * time.Minute

// maxLeasePrune bounds the lease rows one AdoptableCalls call deletes.
const maxLeasePrune = 100

// Lease statements. Each one that locks several rows locks them in call_id
// order, so two statements on overlapping sets of leases cannot deadlock.
// Expiry is compared with now(), the database clock at the start of the
// statement's transaction, so the replicas' clocks do not matter.
const (
	// claimLeasesSQL inserts missing leases and takes over those that are
	// expired or already the owner's. A change of owner bumps the generation,
	// which fences the writes of the previous owner. Rows whose WHERE fails
	// are not updated and not returned.
	claimLeasesSQL = `INSERT INTO call_leases AS l (call_id, owner, generation, expires_at)
		SELECT ids.call_id, $1, 1, now() + $3::interval
		FROM unnest($2::text[]) AS ids (call_id)
		ORDER BY ids.call_id COLLATE "C"
		ON CONFLICT (call_id) DO UPDATE SET
			owner = excluded.owner,
			generation = CASE WHEN l.owner = excluded.owner THEN l.generation ELSE l.generation + 1 END,
			expires_at = excluded.expires_at
		WHERE l.expires_at <= now() OR l.owner = excluded.owner
		RETURNING l.call_id, l.owner, l.generation, l.expires_at`

	// renewLeasesSQL extends every unexpired lease of an owner. FOR UPDATE
	// checks the subquery's WHERE again on a row that another transaction
	// changed meanwhile, so a lease claimed by another owner is skipped.
	renewLeasesSQL = `UPDATE call_leases AS l SET expires_at = now() + $2::interval
		FROM (SELECT call_id FROM call_leases
			WHERE owner = $1 AND expires_at > now()
			ORDER BY call_id FOR UPDATE) AS held
		WHERE l.call_id = held.call_id AND l.owner = $1
		RETURNING l.call_id, l.owner, l.generation, l.expires_at`

	releaseLeasesSQL = `DELETE FROM call_leases
		WHERE owner = $1 AND call_id IN (SELECT call_id FROM call_leases
			WHERE owner = $1 ORDER BY call_id FOR UPDATE)`

	releaseLeaseSQL = `DELETE FROM call_leases WHERE call_id = $1 AND owner = $2`

	// adoptableCallsSQL reads live calls through the calls_live index.
	adoptableCallsSQL = `SELECT c.call_id FROM calls AS c
		LEFT JOIN call_leases AS l ON l.call_id = c.call_id
		WHERE c.` + liveCondition + `
			AND (l.call_id IS NULL OR l.expires_at <= now())
		ORDER BY c.created_at, c.call_id
		LIMIT $1`

	// pruneLeasesSQL deletes long expired leases of calls that are no longer
	// live (ended, or never stored), which no replica will release or claim
	// again. SKIP LOCKED leaves rows that a claim is working on.
	pruneLeasesSQL = `DELETE FROM call_leases WHERE call_id IN (
		SELECT l.call_id FROM call_leases AS l
		WHERE l.expires_at < now() - $1::interval
			AND NOT EXISTS (SELECT 1 FROM calls AS c
				WHERE c.call_id = l.call_id AND c.` + liveCondition + `)
		ORDER BY l.call_id
		LIMIT $2
		FOR UPDATE SKIP LOCKED)`
)

// ClaimLeases takes the leases of callIDs that no one holds, that expired or
// that owner holds already, for ttl from now on the database clock, in one
// statement. It returns the leases now held, sorted by call id; a call that
// another owner holds is left out. A lease that changes owner gets the next
// generation. Duplicate ids count once. It fails with callcat.ErrInvalid for
// an invalid owner or call id, a ttl under a microsecond or more than
// MaxLeaseBatch ids.
func (db *DB) ClaimLeases(ctx context.Context, owner string, callIDs []string, ttl time.Duration) ([]callcat.Lease, error) {
	if err := checkLeaseArgs(owner, ttl); err != nil {
		return nil, fmt.Errorf("claim leases: %w", err)
	}
	if len(callIDs) > MaxLeaseBatch {
		return nil, fmt.Errorf("claim leases: %d call ids, more than %d: %w", len(callIDs), MaxLeaseBatch, callcat.ErrInvalid)
	}
	for _, id := range callIDs {
		if err := checkKey("call id", id); err != nil {
			return nil, fmt.Errorf("claim leases: %w", err)
		}
	}

	// A statement that meets the same key twice fails, and sorted ids keep
	// the lock order of every lease statement.
	ids := slices.Clone(callIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return []callcat.Lease{}, nil
	}

	leases, err := db.queryLeases(ctx, claimLeasesSQL, owner, ids, ttl)
	if err != nil {
		return nil, fmt.Errorf("claim leases of %s: %w", owner, err)
	}
	return leases, nil
}

// RenewLeases extends every unexpired lease of owner to ttl from now on the
// database clock, in one statement, and returns the leases still held,
// sorted by call id. A lease that expired before the renewal is not renewed
// and not returned, even when no other owner claimed it yet.
func (db *DB) RenewLeases(ctx context.Context, owner string, ttl time.Duration) ([]callcat.Lease, error) {
	if err := checkLeaseArgs(owner, ttl); err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	leases, err := db.queryLeases(ctx, renewLeasesSQL, owner, ttl)
	if err != nil {
		return nil, fmt.Errorf("renew leases of %s: %w", owner, err)
	}
	return leases, nil
}

// ReleaseLeases deletes every lease of owner, so that other replicas can
// claim the calls at once.
func (db *DB) ReleaseLeases(ctx context.Context, owner string) error {
	if err := checkKey("lease owner", owner); err != nil {
		return fmt.Errorf("release leases: %w", err)
	}
	ctx, cancel := db.withTimeout(ctx)
	defer cancel()

	if _, err := db.pool.Exec(ctx, releaseLeasesSQL, owner); err != nil {
		return fmt.Errorf("release leases of %s: %w", owner, contextError(ctx, err))
	}
	return nil
}

// ReleaseLease deletes owner's lease of one call. A lease held by another
// owner, or none, is left alone.
func (db *DB) ReleaseLease(ctx context.Context, owner, callID string) error {
	if err := checkKey("lease owner", owner); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	if !validKey(callID) {
		return nil
	}
	ctx, cancel := db.withTimeout(ctx)
	defer cancel()

	if _, err := db.pool.Exec(ctx, releaseLeaseSQL, callID, owner); err != nil {
		return fmt.Errorf("release lease of %s on %s: %w", owner, callID, contextError(ctx, err))
	}
	return nil
}

// AdoptableCalls returns up to limit live calls, oldest first, that have no
// lease or whose lease expired on the database clock. limit is clamped to
// [1, MaxLiveCalls]. First it deletes up to 100 leases that expired more
// than 10 minutes ago on calls that are no longer live. Nothing else would
// delete them: a replica that dies leaves its leases behind, and its calls
// may end before another replica adopts them.
func (db *DB) AdoptableCalls(ctx context.Context, limit int) ([]string, error) {
	limit = min(max(limit, 1), MaxLiveCalls)

	ctx, cancel := db.withTimeout(ctx)
	defer cancel()

	batch := &pgx.Batch{}
	batch.Queue(pruneLeasesSQL, leasePruneAge, maxLeasePrune)
	batch.Queue(adoptableCallsSQL, limit)
	br := db.pool.SendBatch(ctx, batch)
	ids, err := readAdoptable(br)
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return nil, fmt.Errorf("adoptable calls: %w", contextError(ctx, err))
	}
	return ids, nil
}

// readAdoptable reads the results of AdoptableCalls' batch.
func readAdoptable(br pgx.BatchResults) ([]string, error) {
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("prune leases: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

// queryLeases runs one lease statement that returns call_id, owner,
// generation and expires_at, and returns its rows sorted by call id.
func (db *DB) queryLeases(ctx context.Context, query string, args ...any) ([]callcat.Lease, error) {
	ctx, cancel := db.withTimeout(ctx)
	defer cancel()

	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, contextError(ctx, err)
	}
	leases, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (callcat.Lease, error) {
		var l callcat.Lease
		err := row.Scan(&l.CallID, &l.Owner, &l.Generation, &l.ExpiresAt)
		l.ExpiresAt = l.ExpiresAt.UTC()
		return l, err
	})
	if err != nil {
		return nil, contextError(ctx, err)
	}
	if leases == nil {
		leases = []callcat.Lease{}
	}
	// RETURNING has no order.
	slices.SortFunc(leases, func(a, b callcat.Lease) int { return strings.Compare(a.CallID, b.CallID) })
	return leases, nil
}

// checkLeaseArgs validates the owner and ttl of a claim or renewal.
func checkLeaseArgs(owner string, ttl time.Duration) error {
	if err := checkKey("lease owner", owner); err != nil {
		return err
	}
	if ttl < time.Microsecond {
		return fmt.Errorf("lease ttl %v is shorter than a microsecond: %w", ttl, callcat.ErrInvalid)
	}
	return nil
}
