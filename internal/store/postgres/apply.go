package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callcat/callcat/internal/callcat"
)

// SQL of the statements that Apply runs.
const (
	insertDeliverySQL = `INSERT INTO webhook_deliveries (digest, event, call_id, signed_at, received_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (digest) DO NOTHING`

	// FOR SHARE keeps a concurrent claim from moving the lease to another
	// owner until this transaction ends, so a fenced write commits before
	// the next owner's claim or not at all.
	selectLeaseSQL = `SELECT owner, generation FROM call_leases WHERE call_id = $1 FOR SHARE`

	// FOR UPDATE serialises the Apply calls of one call across replicas.
	selectStateSQL = `SELECT ` + callColumns + `,
		snapshot_final, snapshot_count, snapshot_last_word_end, snapshot_taken_at
		FROM calls WHERE call_id = $1 FOR UPDATE`

	selectUtterancesSQL = `SELECT idx, role, content, words FROM utterances
		WHERE call_id = $1 ORDER BY idx`

	// insertPlaceholderSQL creates the row of a new call so that it can be
	// locked; updateCallSQL fills it in. Its created_at is final. A concurrent Apply of the same new call waits here until the
	// first commits, then finds the row.
	insertPlaceholderSQL = `INSERT INTO calls (call_id, created_at, updated_at) VALUES ($1, $2, $2)
		ON CONFLICT (call_id) DO NOTHING`

	updateCallSQL = `UPDATE calls SET
		status = $2, call_type = $3, direction = $4, from_number = $5, to_number = $6, agent_id = $7,
		start_timestamp = $8, end_timestamp = $9, duration_ms = $10,
		disconnection_reason = $11, utterance_count = $12, metadata = $13, analysis = $14,
		last_seq = $15, snapshot_final = $16, snapshot_count = $17, snapshot_last_word_end = $18,
		snapshot_taken_at = $19, updated_at = $20
		WHERE call_id = $1`

	upsertUtterancesSQL = `INSERT INTO utterances (call_id, idx, role, content, words)
		SELECT $1, u.idx, u.role, u.content, u.words
		FROM unnest($2::integer[], $3::text[], $4::text[], $5::text[]) AS u (idx, role, content, words)
		ON CONFLICT (call_id, idx) DO UPDATE SET
			role = excluded.role, content = excluded.content, words = excluded.words`

	truncateUtterancesSQL = `DELETE FROM utterances WHERE call_id = $1 AND idx >= $2`

	insertEventsSQL = `INSERT INTO events (call_id, seq, type, data, created_at)
		SELECT $1, e.seq, e.type, e.data, e.created_at
		FROM unnest($2::bigint[], $3::text[], $4::text[], $5::timestamptz[]) AS e (seq, type, data, created_at)`

	// The notification is delivered when the transaction commits, and not at
	// all when it rolls back.
	//
	// NOTE: PostgreSQL serialises the commits of all transactions that sent
	// a notification on one database-wide lock, so this caps the write rate
	// of all replicas together. The cap has not been measured here.
	notifySQL = `SELECT pg_notify($1, $2)`
)

// Apply merges u into the stored call in one transaction and returns what it
// wrote; callcat.Merge decides the change. A webhook delivery whose digest is
// already stored returns Duplicate true, the stored call (zero when the call
// does not exist) and writes nothing. An update with a Lease is applied only
// while call_leases has that owner and generation for the call. Otherwise
// Apply writes nothing and fails with an error wrapping callcat.ErrLeaseLost.
//
// Apply fails with callcat.ErrInvalid when u has no call id, a delivery has
// no digest, metadata or analysis is not valid JSON, or a word timing is not
// a finite number, like the SQLite store. It also rejects a call id, digest
// or lease owner longer than MaxIDBytes or holding invalid UTF-8 or NUL, and
// a lease for another call.
//
// PostgreSQL's text type cannot hold invalid UTF-8 or NUL characters, so Apply
// replaces them with U+FFFD in every other string before it merges.
func (db *DB) Apply(ctx context.Context, u callcat.Update) (callcat.ApplyResult, error) {
	if err := validateUpdate(&u); err != nil {
		return callcat.ApplyResult{}, fmt.Errorf("apply %s: %w", u.Fields.ID, err)
	}
	u = cleanUpdate(u)

	ctx, cancel := db.withTimeout(ctx)
	defer cancel()

	start := time.Now()
	res, outcome, err := db.apply(ctx, u)
	db.metrics.observe(start, outcome)
	if err != nil {
		return callcat.ApplyResult{}, fmt.Errorf("apply %s: %w", u.Fields.ID, contextError(ctx, err))
	}
	return res, nil
}

// validateUpdate rejects input that Merge or the schema cannot store.
func validateUpdate(u *callcat.Update) error {
	f := &u.Fields
	if err := checkKey("call id", f.ID); err != nil {
		return err
	}
	switch {
	case len(f.Metadata) > 0 && !json.Valid(f.Metadata):
		return fmt.Errorf("metadata is not valid JSON: %w", callcat.ErrInvalid)
	case len(f.Analysis) > 0 && !json.Valid(f.Analysis):
		return fmt.Errorf("analysis is not valid JSON: %w", callcat.ErrInvalid)
	}
	if u.Delivery != nil {
		if err := checkKey("delivery digest", u.Delivery.Digest); err != nil {
			return err
		}
	}
	if l := u.Lease; l != nil {
		if err := checkKey("lease owner", l.Owner); err != nil {
			return err
		}
		if l.CallID != "" && l.CallID != f.ID {
			return fmt.Errorf("lease is for call %s, not %s: %w", l.CallID, f.ID, callcat.ErrInvalid)
		}
	}

	// JSON has no NaN or infinity.
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

// cleanUpdate returns u with every stored string that is not a key made
// valid for a text column (see cleanText). It copies what it changes and
// never writes to the caller's snapshot or delivery. Words need nothing: they
// are stored as JSON, which encoding/json makes valid UTF-8 with NUL escaped.
func cleanUpdate(u callcat.Update) callcat.Update {
	f := &u.Fields
	f.Status = callcat.Status(cleanText(string(f.Status)))
	for _, s := range []*string{&f.Type, &f.Direction, &f.FromNumber, &f.ToNumber, &f.AgentID, &f.DisconnectionReason} {
		*s = cleanText(*s)
	}
	f.Metadata = cleanJSON(f.Metadata)
	f.Analysis = cleanJSON(f.Analysis)

	if d := u.Delivery; d != nil && (!validText(d.Event) || !validText(d.CallID)) {
		cleaned := *d
		cleaned.Event = cleanText(d.Event)
		cleaned.CallID = cleanText(d.CallID)
		u.Delivery = &cleaned
	}

	if s := u.Snapshot; s != nil {
		dirty := slices.ContainsFunc(s.Utterances, func(utt callcat.Utterance) bool {
			return !validText(utt.Role) || !validText(utt.Content)
		})
		if dirty {
			cleaned := *s
			cleaned.Utterances = slices.Clone(s.Utterances)
			for i := range cleaned.Utterances {
				utt := &cleaned.Utterances[i]
				utt.Role = cleanText(utt.Role)
				utt.Content = cleanText(utt.Content)
			}
			u.Snapshot = &cleaned
		}
	}
	return u
}

// cleanJSON replaces invalid UTF-8 in valid JSON, which can only occur inside
// strings, so the result is still valid JSON. A NUL byte cannot occur
// unescaped in valid JSON.
func cleanJSON(b json.RawMessage) json.RawMessage {
	if utf8.Valid(b) {
		return b
	}
	return json.RawMessage(cleanText(string(b)))
}

// apply runs the Apply transaction and returns its outcome for the metrics.
func (db *DB) apply(ctx context.Context, u callcat.Update) (callcat.ApplyResult, string, error) {
	// Encoded once, the snapshot's words serve both to recognise stored
	// utterances without decoding their words and to write the upserts.
	var words []string
	if u.Snapshot != nil {
		var err error
		if words, err = encodeSnapshotWords(u.Snapshot); err != nil {
			return callcat.ApplyResult{}, outcomeError, err
		}
	}

	now := db.now()
	id := u.Fields.ID

	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return callcat.ApplyResult{}, outcomeError, fmt.Errorf("acquire connection: %w", err)
	}
	defer releaseTx(conn)

	// An update of a stored call takes two round trips: BEGIN with the
	// reads, then the writes with COMMIT (or ROLLBACK when nothing was
	// written). pgx.Tx would add one round trip for BEGIN and one for
	// COMMIT. A new call takes one more, to insert its row.
	read, err := readState(ctx, conn, u, words, now, true)
	if err != nil {
		return callcat.ApplyResult{}, outcomeError, err
	}
	if read.duplicate {
		var call callcat.Call
		if read.state != nil {
			call = read.state.Call
		}
		return callcat.ApplyResult{Call: call, Duplicate: true}, outcomeDuplicate, nil
	}
	if read.leaseErr != nil {
		return callcat.ApplyResult{}, outcomeLeaseLost, read.leaseErr
	}

	state := read.state
	if state == nil {
		created, err := insertPlaceholder(ctx, conn, id, now)
		if err != nil {
			return callcat.ApplyResult{}, outcomeError, err
		}
		if !created {
			// Another transaction created the call after this one read: its
			// row is committed now and can be locked.
			again := u
			again.Delivery, again.Lease = nil, nil
			read, err := readState(ctx, conn, again, words, now, false)
			if err != nil {
				return callcat.ApplyResult{}, outcomeError, err
			}
			if read.state == nil {
				return callcat.ApplyResult{}, outcomeError, errors.New("call row vanished while locking it")
			}
			state = read.state
		}
	}

	ch := callcat.Merge(state, u, now)

	// Change.Changed does not count a snapshot key that moved without any
	// utterance changing (a final snapshot equal to the stored live one). The
	// key is still written, or a later, larger live snapshot would not be
	// seen as stale.
	keyMoved := state != nil && ch.SnapshotKey != state.SnapshotKey
	outcome := outcomeUnchanged
	if ch.Changed() || keyMoved {
		if err := db.writeChange(ctx, conn, &ch, words); err != nil {
			return callcat.ApplyResult{}, outcomeError, err
		}
		outcome = outcomeChanged
	} else if err := endUnchanged(ctx, conn, u.Delivery != nil); err != nil {
		return callcat.ApplyResult{}, outcomeError, err
	}

	return callcat.ApplyResult{
		Call:          ch.Call,
		Events:        ch.Events,
		Created:       ch.Created,
		SnapshotStale: ch.SnapshotStale,
	}, outcome, nil
}

// endUnchanged ends the transaction of an update that changed nothing. It
// commits when the transaction recorded a delivery, and rolls back
// otherwise. Such a transaction wrote only row locks, and a rollback frees
// them without waiting for the WAL flush that a commit of a transaction
// with locked rows waits for under synchronous_commit.
func endUnchanged(ctx context.Context, tx batcher, delivered bool) error {
	if delivered {
		if _, err := tx.Exec(ctx, "COMMIT"); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}
	if _, err := tx.Exec(ctx, "ROLLBACK"); err != nil {
		return fmt.Errorf("roll back unchanged update: %w", err)
	}
	return nil
}

// batcher is the part of *pgxpool.Conn that Apply's steps use. They manage
// the transaction with BEGIN and COMMIT statements of their own.
type batcher interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// releaseTx returns conn to the pool after Apply, rolling back a
// transaction that is still open. The rollback runs with a context of its
// own, so it reaches the server after the caller's context ended. When it
// fails, the pool drops the connection, and the server rolls back the
// transaction of a session that ends.
func releaseTx(conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = conn.Exec(ctx, "ROLLBACK")
		cancel()
	}
	conn.Release()
}

// readResult is the outcome of readState.
type readResult struct {
	duplicate bool           // the delivery's digest was already stored
	leaseErr  error          // wraps callcat.ErrLeaseLost when the lease is not held
	state     *callcat.State // nil when the call is not stored
}

// readState records u's delivery, checks u's lease and reads and locks the
// call's state, in one round trip that starts with BEGIN when begin is true.
// words, the snapshot's words encoded as JSON, may be nil. The stored
// utterances are read only when u has a snapshot, because Merge compares
// them with nothing else, so a poll or lifecycle webhook without a
// transcript does not read the call's whole transcript back.
func readState(ctx context.Context, tx batcher, u callcat.Update, words []string, now time.Time, begin bool) (readResult, error) {
	id := u.Fields.ID
	batch := &pgx.Batch{}
	if begin {
		batch.Queue("BEGIN")
	}
	if d := u.Delivery; d != nil {
		receivedAt := d.ReceivedAt
		if receivedAt.IsZero() {
			receivedAt = now
		}
		batch.Queue(insertDeliverySQL, d.Digest, d.Event, d.CallID, d.SignedAt, receivedAt)
	}
	if u.Lease != nil {
		batch.Queue(selectLeaseSQL, id)
	}
	batch.Queue(selectStateSQL, id)
	if u.Snapshot != nil {
		batch.Queue(selectUtterancesSQL, id)
	}

	br := tx.SendBatch(ctx, batch)
	res, err := readBatch(br, u, words, begin)
	if closeErr := br.Close(); err == nil && closeErr != nil {
		err = closeErr
	}
	if err != nil {
		return readResult{}, err
	}
	return res, nil
}

// readBatch reads the results of readState's batch in queue order.
func readBatch(br pgx.BatchResults, u callcat.Update, words []string, begin bool) (readResult, error) {
	var res readResult
	if begin {
		if _, err := br.Exec(); err != nil {
			return res, fmt.Errorf("begin: %w", err)
		}
	}
	if u.Delivery != nil {
		tag, err := br.Exec()
		if err != nil {
			return res, fmt.Errorf("insert delivery: %w", err)
		}
		res.duplicate = tag.RowsAffected() == 0
	}

	if l := u.Lease; l != nil {
		var owner string
		var generation int64
		err := br.QueryRow().Scan(&owner, &generation)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			res.leaseErr = fmt.Errorf("no lease is stored for the call: %w", callcat.ErrLeaseLost)
		case err != nil:
			return res, fmt.Errorf("check lease: %w", err)
		case owner != l.Owner || generation != l.Generation:
			res.leaseErr = fmt.Errorf("lease is held by %s at generation %d, not by %s at generation %d: %w",
				owner, generation, l.Owner, l.Generation, callcat.ErrLeaseLost)
		}
	}

	var state callcat.State
	key := &state.SnapshotKey
	err := scanCall(br.QueryRow(), &state.Call, &key.Final, &key.Count, &key.LastWordEnd, &key.TakenAt)
	found := true
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		found = false
	case err != nil:
		return res, fmt.Errorf("load call: %w", err)
	}

	if u.Snapshot != nil {
		rows, err := br.Query()
		if err != nil {
			return res, fmt.Errorf("load utterances: %w", err)
		}
		state.Utterances, err = scanUtterances(rows, func(idx int, stored []byte) ([]callcat.Word, bool) {
			// Equal JSON means equal stored words, so the snapshot's own slice
			// replaces them and the row needs no decoding.
			if idx < len(words) && string(stored) == words[idx] {
				return u.Snapshot.Utterances[idx].Words, true
			}
			return nil, false
		})
		if err != nil {
			return res, fmt.Errorf("load utterances: %w", err)
		}
	}

	if found {
		res.state = &state
	}
	return res, nil
}

// insertPlaceholder inserts the row of a new call and reports whether it did;
// false means that another transaction committed the row first.
func insertPlaceholder(ctx context.Context, tx batcher, id string, now time.Time) (bool, error) {
	tag, err := tx.Exec(ctx, insertPlaceholderSQL, id, now)
	if err != nil {
		return false, fmt.Errorf("insert call: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// writeChange stores ch and commits, in one round trip: the call row, the
// utterances, the events, the notification and COMMIT. words are the encoded
// words of the snapshot that the upserts come from.
func (db *DB) writeChange(ctx context.Context, tx batcher, ch *callcat.Change, words []string) error {
	c := &ch.Call
	k := &ch.SnapshotKey
	batch := &pgx.Batch{}
	batch.Queue(updateCallSQL,
		c.ID, string(c.Status), c.Type, c.Direction, c.FromNumber, c.ToNumber, c.AgentID,
		c.StartTimestamp, c.EndTimestamp, c.DurationMS,
		c.DisconnectionReason, c.UtteranceCount, nullJSON(c.Metadata), nullJSON(c.Analysis),
		c.LastSeq, k.Final, k.Count, k.LastWordEnd, k.TakenAt, c.UpdatedAt)

	if n := len(ch.Upserts); n > 0 {
		indexes := make([]int32, n)
		roles := make([]string, n)
		contents := make([]string, n)
		encoded := make([]string, n)
		for i := range ch.Upserts {
			utt := &ch.Upserts[i]
			indexes[i] = int32(utt.Index)
			roles[i] = utt.Role
			contents[i] = utt.Content
			encoded[i] = words[utt.Index]
		}
		batch.Queue(upsertUtterancesSQL, c.ID, indexes, roles, contents, encoded)
	}

	if ch.TruncateTo >= 0 {
		batch.Queue(truncateUtterancesSQL, c.ID, ch.TruncateTo)
	}

	if n := len(ch.Events); n > 0 {
		seqs := make([]int64, n)
		types := make([]string, n)
		data := make([]string, n)
		times := make([]time.Time, n)
		for i := range ch.Events {
			ev := &ch.Events[i]
			seqs[i] = ev.Seq
			types[i] = string(ev.Type)
			data[i] = string(ev.Data)
			times[i] = ev.CreatedAt
		}
		batch.Queue(insertEventsSQL, c.ID, seqs, types, data, times)

		if payload, ok := db.notifyPayload(ctx, c.ID, c.LastSeq); ok {
			batch.Queue(notifySQL, NotifyChannel, payload)
		}
	}

	batch.Queue("COMMIT")

	br := tx.SendBatch(ctx, batch)
	var err error
	for range batch.Len() {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("write change: %w", err)
	}
	return nil
}

// notifyPayload returns the notification of new events up to lastSeq of a
// call: "<call id> <last seq> <replica id>". A call id too long for a
// notification is logged and counted, and reports false.
func (db *DB) notifyPayload(ctx context.Context, callID string, lastSeq int64) (string, bool) {
	if len(callID) > maxNotifyIDBytes {
		db.metrics.notifySkip()
		db.limited.Log(ctx, slog.LevelWarn, "notify_skipped",
			"notification skipped: call id too long; other replicas see its events only after a resync",
			"call_id_bytes", len(callID), "max_bytes", maxNotifyIDBytes)
		return "", false
	}
	return callID + " " + strconv.FormatInt(lastSeq, 10) + " " + db.replicaID, true
}

// encodeSnapshotWords returns the JSON of each utterance's words, as stored
// in utterances.words.
func encodeSnapshotWords(s *callcat.Snapshot) ([]string, error) {
	words := make([]string, len(s.Utterances))
	for i := range s.Utterances {
		var err error
		if words[i], err = encodeWords(s.Utterances[i].Words); err != nil {
			return nil, fmt.Errorf("utterance %d: %w", i, err)
		}
	}
	return words, nil
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

// nullJSON binds optional JSON as text, NULL when absent.
func nullJSON(b []byte) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}
