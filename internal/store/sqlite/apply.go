package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/callcat/callcat/internal/callcat"
)

// Apply merges u into the stored call in one write transaction and returns
// what it wrote; callcat.Merge decides the change. A webhook delivery whose
// digest is already stored returns Duplicate true, the stored call (zero when
// the call does not exist) and writes nothing. Apply fails with
// callcat.ErrInvalid when u has no call id, a delivery has no digest, metadata
// or analysis is not valid JSON, or a word timing is not a finite number.
func (db *DB) Apply(ctx context.Context, u callcat.Update) (callcat.ApplyResult, error) {
	if err := validateUpdate(&u); err != nil {
		return callcat.ApplyResult{}, fmt.Errorf("apply %s: %w", u.Fields.ID, err)
	}

	start := time.Now()
	res, outcome, err := db.apply(ctx, u)
	db.metrics.observe(start, outcome)
	if err != nil {
		return callcat.ApplyResult{}, fmt.Errorf("apply %s: %w", u.Fields.ID, err)
	}
	return res, nil
}

// validateUpdate rejects input that Merge or the schema cannot store.
func validateUpdate(u *callcat.Update) error {
	f := &u.Fields
	switch {
	case f.ID == "":
		return fmt.Errorf("call id is empty: %w", callcat.ErrInvalid)
	case len(f.Metadata) > 0 && !json.Valid(f.Metadata):
		return fmt.Errorf("metadata is not valid JSON: %w", callcat.ErrInvalid)
	case len(f.Analysis) > 0 && !json.Valid(f.Analysis):
		return fmt.Errorf("analysis is not valid JSON: %w", callcat.ErrInvalid)
	case u.Delivery != nil && u.Delivery.Digest == "":
		return fmt.Errorf("delivery digest is empty: %w", callcat.ErrInvalid)
	}

	// JSON has no NaN or infinity, and SQLite stores NaN as NULL.
	if u.Snapshot != nil {
		for i, utt := range u.Snapshot.Utterances {
			for _, w := range utt.Words {
				if !finite(w.Start) || !finite(w.End) {
					return fmt.Errorf("utterance %d: word %q has a non-finite timing: %w", i, w.Word, callcat.ErrInvalid)
				}
			}
		}
	}
	return nil
}

func finite(f float64) bool {
	return !math.IsNaN(f) && !math.IsInf(f, 0)
}

// apply runs the Apply transaction and returns its outcome for the metrics.
func (db *DB) apply(ctx context.Context, u callcat.Update) (callcat.ApplyResult, string, error) {
	// The snapshot's utterance hashes find the stored utterances it leaves
	// unchanged, so only the others are read, compared and written.
	var hashes []utteranceHash
	if u.Snapshot != nil {
		var h utteranceHasher
		hashes = make([]utteranceHash, len(u.Snapshot.Utterances))
		for i := range u.Snapshot.Utterances {
			hashes[i] = h.hash(&u.Snapshot.Utterances[i])
		}
	}

	if err := db.writeQueue.acquire(ctx); err != nil {
		return callcat.ApplyResult{}, outcomeError, fmt.Errorf("wait for the writer: %w", err)
	}
	defer db.writeQueue.release()

	// ctx bounds the wait for the writer connection. Once it is held, the
	// transaction runs to its end without ctx's cancellation: it takes about
	// a millisecond and busy_timeout bounds its lock waits. With a
	// cancellable context, the driver would start a goroutine per statement
	// to watch it, and database/sql one per transaction.
	conn, err := db.writer.Conn(ctx)
	if err != nil {
		return callcat.ApplyResult{}, outcomeError, fmt.Errorf("writer connection: %w", err)
	}
	defer conn.Close()
	ctx = context.WithoutCancel(ctx)

	sqlTx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return callcat.ApplyResult{}, outcomeError, fmt.Errorf("begin: %w", err)
	}
	defer sqlTx.Rollback()
	tx := &writeTx{tx: sqlTx, stmts: db.stmts}

	now := db.now()
	id := u.Fields.ID

	if u.Delivery != nil {
		inserted, err := tx.insertDelivery(ctx, u.Delivery, now)
		if err != nil {
			return callcat.ApplyResult{}, outcomeError, err
		}
		if !inserted {
			call, err := loadCall(ctx, sqlTx, id)
			if err != nil && !errors.Is(err, callcat.ErrNotFound) {
				return callcat.ApplyResult{}, outcomeError, err
			}
			return callcat.ApplyResult{Call: call, Duplicate: true}, outcomeDuplicate, nil
		}
	}

	state, storedHashes, err := tx.loadState(ctx, id, u.Snapshot, hashes)
	if err != nil {
		return callcat.ApplyResult{}, outcomeError, err
	}

	ch := callcat.Merge(state, u, now)

	// A snapshot that Merge applied is now the stored transcript.
	if u.Snapshot != nil && !ch.SnapshotStale {
		storedHashes = joinHashes(hashes)
	}

	// Change.Changed does not count a snapshot key that moved without any
	// utterance changing (a final snapshot equal to the stored live one). The
	// key is still written, or a later, larger live snapshot would not be
	// seen as stale.
	keyMoved := state != nil && ch.SnapshotKey != state.SnapshotKey
	outcome := outcomeUnchanged
	if ch.Changed() || keyMoved {
		if err := tx.writeChange(ctx, &ch, storedHashes); err != nil {
			return callcat.ApplyResult{}, outcomeError, err
		}
		outcome = outcomeChanged
	}

	// Commit even when only the delivery row was written.
	if err := sqlTx.Commit(); err != nil {
		return callcat.ApplyResult{}, outcomeError, fmt.Errorf("commit: %w", err)
	}

	return callcat.ApplyResult{
		Call:          ch.Call,
		Events:        ch.Events,
		Created:       ch.Created,
		SnapshotStale: ch.SnapshotStale,
	}, outcome, nil
}

// writeTx runs the prepared write statements inside one transaction.
type writeTx struct {
	tx    *sql.Tx
	stmts *writeStatements
}

func (tx *writeTx) exec(ctx context.Context, stmt *sql.Stmt, args ...any) (sql.Result, error) {
	return tx.tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
}

// insertDelivery records d and reports whether it was new.
func (tx *writeTx) insertDelivery(ctx context.Context, d *callcat.Delivery, now time.Time) (bool, error) {
	receivedAt := d.ReceivedAt
	if receivedAt.IsZero() {
		receivedAt = now
	}

	res, err := tx.exec(ctx, tx.stmts.insertDelivery,
		d.Digest, d.Event, d.CallID, d.SignedAt, receivedAt.UnixNano())
	if err != nil {
		return false, fmt.Errorf("insert delivery: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert delivery: %w", err)
	}
	return n == 1, nil
}

// loadState reads what Merge needs about a call, or nil when it is not
// stored, and the stored utterance hashes. Utterances are read only when
// there is a snapshot to compare them with. hashes are the snapshot's
// utterance hashes.
func (tx *writeTx) loadState(ctx context.Context, id string, snapshot *callcat.Snapshot, hashes []utteranceHash) (*callcat.State, []byte, error) {
	var state callcat.State
	var stored []byte
	key := &state.SnapshotKey
	row := tx.tx.StmtContext(ctx, tx.stmts.selectState).QueryRowContext(ctx, id)
	err := scanCall(row, &state.Call, &key.Final, &key.Count, &key.LastWordEnd, &key.TakenAt, &stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("load call: %w", err)
	}

	if snapshot == nil {
		return &state, stored, nil
	}
	if state.Utterances, err = tx.loadUtterances(ctx, &state.Call, stored, snapshot, hashes); err != nil {
		return nil, nil, fmt.Errorf("load utterances: %w", err)
	}
	return &state, stored, nil
}

// loadUtterances returns the stored utterances of call c for Merge to
// compare with snapshot. stored is c's utterance_hashes column. A stored
// utterance whose hash equals the snapshot's at the same index is equal to
// it, so the snapshot's own utterance replaces it. From the first one
// that differs, rows are read and decoded in full. A typical transcript
// update changes only its last utterance or appends one, so it reads at most
// one row.
func (tx *writeTx) loadUtterances(ctx context.Context, c *callcat.Call, stored []byte, snapshot *callcat.Snapshot, hashes []utteranceHash) ([]callcat.Utterance, error) {
	count := c.UtteranceCount
	size := len(utteranceHash{})

	// Hashes that do not cover every stored utterance (a call written
	// before the column existed) match nothing.
	same := 0
	if len(stored) == count*size {
		for same < count && same < len(hashes) && string(stored[same*size:(same+1)*size]) == string(hashes[same][:]) {
			same++
		}
	}

	utterances := make([]callcat.Utterance, same, count)
	for i := range same {
		utterances[i] = snapshot.Utterances[i]
		utterances[i].Index = i
	}
	if same == count {
		return utterances, nil
	}

	rows, err := tx.tx.StmtContext(ctx, tx.stmts.selectUtterances).QueryContext(ctx, c.ID, same)
	if err != nil {
		return nil, err
	}
	rest, err := scanUtterances(rows)
	if err != nil {
		return nil, err
	}
	if len(rest) != count-same {
		return nil, fmt.Errorf("read %d utterances from index %d, want %d", len(rest), same, count-same)
	}
	return append(utterances, rest...), nil
}

// writeChange stores ch: the call row, then the utterances, then the events,
// so that the foreign keys of a new call find its row. hashes is the
// utterance_hashes column of the transcript after the change.
func (tx *writeTx) writeChange(ctx context.Context, ch *callcat.Change, hashes []byte) error {
	if err := tx.writeCall(ctx, ch, hashes); err != nil {
		return err
	}

	for i := range ch.Upserts {
		utt := &ch.Upserts[i]
		words, err := encodeWords(utt.Words)
		if err != nil {
			return fmt.Errorf("utterance %d: %w", utt.Index, err)
		}
		_, err = tx.exec(ctx, tx.stmts.upsertUtterance,
			ch.Call.ID, utt.Index, utt.Role, utt.Content, words)
		if err != nil {
			return fmt.Errorf("upsert utterance %d: %w", utt.Index, err)
		}
	}

	if ch.TruncateTo >= 0 {
		if _, err := tx.exec(ctx, tx.stmts.truncateUtterances, ch.Call.ID, ch.TruncateTo); err != nil {
			return fmt.Errorf("truncate utterances to %d: %w", ch.TruncateTo, err)
		}
	}

	for i := range ch.Events {
		ev := &ch.Events[i]
		_, err := tx.exec(ctx, tx.stmts.insertEvent,
			ev.CallID, ev.Seq, string(ev.Type), string(ev.Data), ev.CreatedAt.UnixNano())
		if err != nil {
			return fmt.Errorf("insert event %d: %w", ev.Seq, err)
		}
	}
	return nil
}

// writeCall inserts or updates the call row of ch with its utterance hashes.
func (tx *writeTx) writeCall(ctx context.Context, ch *callcat.Change, hashes []byte) error {
	c := &ch.Call
	k := &ch.SnapshotKey
	args := []any{
		string(c.Status), c.Type, c.Direction, c.FromNumber, c.ToNumber, c.AgentID,
		nullInt(c.StartTimestamp), nullInt(c.EndTimestamp), nullInt(c.DurationMS),
		c.DisconnectionReason, c.UtteranceCount, nullJSON(c.Metadata), nullJSON(c.Analysis),
		c.LastSeq, boolInt(k.Final), k.Count, k.LastWordEnd, k.TakenAt,
		hashes, c.UpdatedAt.UnixNano(),
	}

	var err error
	if ch.Created {
		_, err = tx.exec(ctx, tx.stmts.insertCall, append(args, c.CreatedAt.UnixNano(), c.ID)...)
	} else {
		_, err = tx.exec(ctx, tx.stmts.updateCall, append(args, c.ID)...)
	}
	if err != nil {
		return fmt.Errorf("write call: %w", err)
	}
	return nil
}

// encodeWords returns the JSON stored in utterances.words; no words is "[]".
func encodeWords(words []callcat.Word) (string, error) {
	if len(words) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(words)
	if err != nil {
		return "", fmt.Errorf("encode words: %w", err)
	}
	return string(b), nil
}

// nullInt binds an optional integer, NULL when absent.
func nullInt(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// nullJSON binds optional JSON as TEXT, NULL when absent. STRICT tables
// reject a []byte, which the driver would bind as a BLOB.
func nullJSON(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
