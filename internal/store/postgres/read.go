package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callcat/callcat/internal/callcat"
)

// callColumns are the columns scanCall reads, in its order.
const callColumns = `call_id, status, call_type, direction, from_number, to_number, agent_id,
	start_timestamp, end_timestamp, duration_ms, disconnection_reason, utterance_count,
	metadata, analysis, last_seq, created_at, updated_at`

// Conditions on calls.status. liveCondition must stay identical to the WHERE
// clause of the calls_live partial index, so that the planner can prove the
// index covers a query.
const (
	liveCondition  = `status NOT IN ('ended', 'not_connected', 'error')`
	endedCondition = `status IN ('ended', 'not_connected', 'error')`
)

const liveCallsSQL = `SELECT ` + callColumns + ` FROM calls
	WHERE ` + liveCondition + ` ORDER BY created_at, call_id LIMIT $1`

const eventsSQL = `SELECT seq, type, data, created_at FROM events
	WHERE call_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`

const selectCallSQL = `SELECT ` + callColumns + ` FROM calls WHERE call_id = $1`

// Call returns the call with this id, or an error wrapping
// callcat.ErrNotFound.
func (db *DB) Call(ctx context.Context, id string) (callcat.Call, error) {
	ctx, cancel := db.withTimeout(ctx)
	defer cancel()
	return loadCall(ctx, db.pool, id)
}

// Calls returns one page of calls, newest first by creation time with ties
// broken by call id, so that a cursor stays valid while new calls arrive.
// f.Limit is clamped to [1, callcat.MaxPageSize] and zero means
// callcat.DefaultPageSize. An unknown status filter or a malformed cursor
// returns an error wrapping callcat.ErrInvalid. Cursors have the SQLite
// store's format.
func (db *DB) Calls(ctx context.Context, f callcat.CallFilter) (callcat.CallPage, error) {
	limit := clampPageSize(f.Limit)
	query, args, err := callsQuery(f)
	if err != nil {
		return callcat.CallPage{}, fmt.Errorf("list calls: %w", err)
	}

	ctx, cancel := db.withTimeout(ctx)
	defer cancel()

	// One row past the page shows whether another page follows.
	calls, err := queryCalls(ctx, db.pool, query, append(args, limit+1)...)
	if err != nil {
		return callcat.CallPage{}, fmt.Errorf("list calls: %w", contextError(ctx, err))
	}

	page := callcat.CallPage{Calls: calls}
	if len(calls) > limit {
		page.Calls = calls[:limit]
		last := &page.Calls[limit-1]
		page.NextCursor = encodeCursor(last.CreatedAt.UnixNano(), last.ID)
	}
	return page, nil
}

// callsQuery returns the query of Calls for f and its arguments, all but the
// final LIMIT.
func callsQuery(f callcat.CallFilter) (string, []any, error) {
	var where []string
	var args []any
	switch f.Status {
	case "", callcat.FilterAll:
	case callcat.FilterLive:
		where = append(where, liveCondition)
	case callcat.FilterEnded:
		where = append(where, endedCondition)
	default:
		return "", nil, fmt.Errorf("status filter %q is not live, ended or all: %w", f.Status, callcat.ErrInvalid)
	}
	if f.Cursor != "" {
		createdAt, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return "", nil, err
		}
		where = append(where, `(created_at, call_id) < ($1, $2)`)
		args = append(args, createdAt, id)
	}
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	if f.AgentID != "" {
		add(`agent_id = $?`, f.AgentID)
	}
	if f.Direction != "" {
		add(`direction = $?`, f.Direction)
	}
	if f.Number != "" {
		add(`(from_number = $? OR to_number = $?)`, f.Number)
	}
	if f.StartFrom != nil {
		add(`start_timestamp >= $?`, *f.StartFrom)
	}
	if f.StartBefore != nil {
		add(`start_timestamp < $?`, *f.StartBefore)
	}

	query := `SELECT ` + callColumns + ` FROM calls`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY created_at DESC, call_id DESC LIMIT $` + strconv.Itoa(len(args)+1)
	return query, args, nil
}

// clampPageSize applies the page size rules of callcat.CallFilter.Limit.
func clampPageSize(limit int) int {
	switch {
	case limit == 0:
		return callcat.DefaultPageSize
	case limit < 1:
		return 1
	case limit > callcat.MaxPageSize:
		return callcat.MaxPageSize
	}
	return limit
}

// encodeCursor returns the opaque cursor after the call (createdAt, id):
// base64url of "<created_at Unix ns>:<call id>".
func encodeCursor(createdAt int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(createdAt, 10) + ":" + id))
}

// decodeCursor parses a cursor from encodeCursor. Stored times are whole
// microseconds, so a cursor with a finer time was not made by this store and
// is rejected.
func decodeCursor(cursor string) (createdAt time.Time, id string, err error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("cursor %q is not base64url: %w", cursor, callcat.ErrInvalid)
	}
	number, id, ok := strings.Cut(string(raw), ":")
	if !ok || id == "" {
		return time.Time{}, "", fmt.Errorf("cursor %q has no call id: %w", cursor, callcat.ErrInvalid)
	}
	if !validKey(id) {
		return time.Time{}, "", fmt.Errorf("cursor %q has an invalid call id: %w", cursor, callcat.ErrInvalid)
	}
	ns, err := strconv.ParseInt(number, 10, 64)
	if err != nil || ns%int64(time.Microsecond) != 0 {
		return time.Time{}, "", fmt.Errorf("cursor %q has no valid time: %w", cursor, callcat.ErrInvalid)
	}
	return time.Unix(0, ns).UTC(), id, nil
}

// Transcript returns the call's utterances in index order, an empty non-nil
// slice for a call without any, or an error wrapping callcat.ErrNotFound.
func (db *DB) Transcript(ctx context.Context, callID string) ([]callcat.Utterance, error) {
	if !validKey(callID) {
		return nil, fmt.Errorf("transcript: call %s: %w", callID, callcat.ErrNotFound)
	}
	ctx, cancel := db.withTimeout(ctx)
	defer cancel()

	utterances, err := queryUtterances(ctx, db.pool, callID)
	if err != nil {
		return nil, contextError(ctx, err)
	}
	if len(utterances) > 0 {
		return utterances, nil
	}

	// No rows: tell an unknown call from one without utterances.
	if _, err := loadCall(ctx, db.pool, callID); err != nil {
		return nil, fmt.Errorf("transcript: %w", err)
	}
	return []callcat.Utterance{}, nil
}

// Events returns up to limit events of the call with seq > afterSeq in seq
// order. limit is clamped to [1, MaxEventLimit]. An unknown call, or an id
// that cannot be stored, returns an empty slice.
func (db *DB) Events(ctx context.Context, callID string, afterSeq int64, limit int) ([]callcat.Event, error) {
	limit = min(max(limit, 1), MaxEventLimit)
	events := []callcat.Event{}
	if !validKey(callID) {
		return events, nil
	}

	ctx, cancel := db.withTimeout(ctx)
	defer cancel()

	rows, err := db.pool.Query(ctx, eventsSQL, callID, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("events %s: %w", callID, contextError(ctx, err))
	}
	defer rows.Close()

	for rows.Next() {
		ev := callcat.Event{CallID: callID}
		var eventType string
		if err := rows.Scan(&ev.Seq, &eventType, (*[]byte)(&ev.Data), &ev.CreatedAt); err != nil {
			return nil, fmt.Errorf("events %s: %w", callID, err)
		}
		ev.Type = callcat.EventType(eventType)
		ev.CreatedAt = ev.CreatedAt.UTC()
		events = append(events, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events %s: %w", callID, contextError(ctx, err))
	}
	return events, nil
}

// LiveCalls returns calls whose status is not terminal, oldest first. limit is
// clamped to [1, MaxLiveCalls]. A call stored without any status yet counts as
// live.
func (db *DB) LiveCalls(ctx context.Context, limit int) ([]callcat.Call, error) {
	limit = min(max(limit, 1), MaxLiveCalls)

	ctx, cancel := db.withTimeout(ctx)
	defer cancel()

	calls, err := queryCalls(ctx, db.pool, liveCallsSQL, limit)
	if err != nil {
		return nil, fmt.Errorf("live calls: %w", contextError(ctx, err))
	}
	return calls, nil
}

// HasDelivery reports whether a webhook delivery with this digest is stored.
func (db *DB) HasDelivery(ctx context.Context, digest string) (bool, error) {
	if !validKey(digest) {
		return false, nil
	}
	ctx, cancel := db.withTimeout(ctx)
	defer cancel()

	var found bool
	err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE digest = $1)`, digest).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("has delivery: %w", contextError(ctx, err))
	}
	return found, nil
}

// querier is the part of *pgxpool.Pool and pgx.Tx that the read helpers use.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// loadCall reads one call row, or returns an error wrapping
// callcat.ErrNotFound.
func loadCall(ctx context.Context, q querier, id string) (callcat.Call, error) {
	if !validKey(id) {
		return callcat.Call{}, fmt.Errorf("call %s: %w", id, callcat.ErrNotFound)
	}
	var c callcat.Call
	err := scanCall(q.QueryRow(ctx, selectCallSQL, id), &c)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return callcat.Call{}, fmt.Errorf("call %s: %w", id, callcat.ErrNotFound)
	case err != nil:
		return callcat.Call{}, fmt.Errorf("call %s: %w", id, contextError(ctx, err))
	}
	return c, nil
}

// queryCalls runs a query that selects callColumns and returns its rows as
// calls, an empty non-nil slice when there are none.
func queryCalls(ctx context.Context, q querier, query string, args ...any) ([]callcat.Call, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()

	calls := []callcat.Call{}
	for rows.Next() {
		var c callcat.Call
		if err := scanCall(rows, &c); err != nil {
			return nil, err
		}
		calls = append(calls, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return calls, nil
}

// scanCall scans callColumns into c, followed by any extra destinations.
func scanCall(row pgx.Row, c *callcat.Call, extra ...any) error {
	var status string
	dest := make([]any, 0, 17+len(extra))
	dest = append(dest,
		&c.ID, &status, &c.Type, &c.Direction, &c.FromNumber, &c.ToNumber, &c.AgentID,
		&c.StartTimestamp, &c.EndTimestamp, &c.DurationMS, &c.DisconnectionReason, &c.UtteranceCount,
		(*[]byte)(&c.Metadata), (*[]byte)(&c.Analysis), &c.LastSeq, &c.CreatedAt, &c.UpdatedAt)
	dest = append(dest, extra...)
	if err := row.Scan(dest...); err != nil {
		return err
	}

	c.Status = callcat.Status(status)
	c.CreatedAt = c.CreatedAt.UTC()
	c.UpdatedAt = c.UpdatedAt.UTC()
	return nil
}

// queryUtterances returns a call's stored utterances in index order.
func queryUtterances(ctx context.Context, q querier, callID string) ([]callcat.Utterance, error) {
	rows, err := q.Query(ctx, selectUtterancesSQL, callID)
	if err != nil {
		return nil, fmt.Errorf("utterances %s: %w", callID, err)
	}
	utterances, err := scanUtterances(rows, nil)
	if err != nil {
		return nil, fmt.Errorf("utterances %s: %w", callID, err)
	}
	return utterances, nil
}

// scanUtterances reads utterance rows and closes them. known, when not nil,
// may supply the words of a row from its stored JSON and report true, so that
// the row is not decoded.
func scanUtterances(rows pgx.Rows, known func(idx int, stored []byte) ([]callcat.Word, bool)) ([]callcat.Utterance, error) {
	defer rows.Close()

	var utterances []callcat.Utterance
	var words reusedBytes // Unmarshal copies what it keeps
	for rows.Next() {
		var u callcat.Utterance
		if err := rows.Scan(&u.Index, &u.Role, &u.Content, &words); err != nil {
			return nil, err
		}
		if known != nil {
			var ok bool
			if u.Words, ok = known(u.Index, words); ok {
				utterances = append(utterances, u)
				continue
			}
		}
		if err := json.Unmarshal(words, &u.Words); err != nil {
			return nil, fmt.Errorf("decode words of utterance %d: %w", u.Index, err)
		}
		if len(u.Words) == 0 {
			u.Words = nil
		}
		utterances = append(utterances, u)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return utterances, nil
}

// reusedBytes scans a text column into one buffer reused across rows, where
// scanning into a []byte would allocate a copy per row.
type reusedBytes []byte

// ScanBytes implements pgtype.BytesScanner.
func (b *reusedBytes) ScanBytes(src []byte) error {
	*b = append((*b)[:0], src...)
	return nil
}
