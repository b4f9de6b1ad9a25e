package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/callcat/callcat/internal/callcat"
)

// callColumns are the columns scanCall reads, in its order.
const callColumns = `call_id, status, call_type, direction, from_number, to_number, agent_id,
	start_timestamp, end_timestamp, duration_ms, disconnection_reason, utterance_count,
	metadata, analysis, last_seq, created_at, updated_at`

// Conditions on calls.status. They must stay identical to the WHERE clauses
// of the calls_live and calls_ended_updated partial indexes, or SQLite will
// not use the indexes. They avoid IN lists, which SQLite evaluates through a
// temporary b-tree on every UPDATE of a call.
const (
	liveCondition  = `status <> 'ended' AND status <> 'not_connected' AND status <> 'error'`
	endedCondition = `(status = 'ended' OR status = 'not_connected' OR status = 'error')`
)

const liveCallsSQL = `SELECT ` + callColumns + ` FROM calls
	WHERE ` + liveCondition + ` ORDER BY created_at, call_id LIMIT ?`

const eventsSQL = `SELECT seq, type, data, created_at FROM events
	WHERE call_id = ? AND seq > ? ORDER BY seq LIMIT ?`

// queryer is the part of *sql.DB and *sql.Tx that the read helpers use.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Call returns the call with this id, or an error wrapping
// callcat.ErrNotFound.
func (db *DB) Call(ctx context.Context, id string) (callcat.Call, error) {
	return loadCall(ctx, db.readers, id)
}

// Calls returns one page of calls, newest first by creation time with ties
// broken by call id, so that a cursor stays valid while new calls arrive.
// f.Limit is clamped to [1, callcat.MaxPageSize] and zero means
// callcat.DefaultPageSize. An unknown status filter or a malformed cursor
// returns an error wrapping callcat.ErrInvalid.
func (db *DB) Calls(ctx context.Context, f callcat.CallFilter) (callcat.CallPage, error) {
	limit := clampPageSize(f.Limit)
	query, args, err := callsQuery(f)
	if err != nil {
		return callcat.CallPage{}, fmt.Errorf("list calls: %w", err)
	}

	// One row past the page shows whether another page follows.
	calls, err := queryCalls(ctx, db.readers, query, append(args, limit+1)...)
	if err != nil {
		return callcat.CallPage{}, fmt.Errorf("list calls: %w", err)
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
		where = append(where, `(created_at, call_id) < (?, ?)`)
		args = append(args, createdAt, id)
	}
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if f.AgentID != "" {
		add(`agent_id = ?`, f.AgentID)
	}
	if f.Direction != "" {
		add(`direction = ?`, f.Direction)
	}
	if f.Number != "" {
		where = append(where, `(from_number = ? OR to_number = ?)`)
		args = append(args, f.Number, f.Number)
	}
	if f.StartFrom != nil {
		add(`start_timestamp >= ?`, *f.StartFrom)
	}
	if f.StartBefore != nil {
		add(`start_timestamp < ?`, *f.StartBefore)
	}

	query := `SELECT ` + callColumns + ` FROM calls`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY created_at DESC, call_id DESC LIMIT ?`
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

// decodeCursor parses a cursor from encodeCursor.
func decodeCursor(cursor string) (createdAt int64, id string, err error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, "", fmt.Errorf("cursor %q is not base64url: %w", cursor, callcat.ErrInvalid)
	}
	number, id, ok := strings.Cut(string(raw), ":")
	if !ok || id == "" {
		return 0, "", fmt.Errorf("cursor %q has no call id: %w", cursor, callcat.ErrInvalid)
	}
	createdAt, err = strconv.ParseInt(number, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("cursor %q has no valid time: %w", cursor, callcat.ErrInvalid)
	}
	return createdAt, id, nil
}

// Transcript returns the call's utterances in index order, an empty non-nil
// slice for a call without any, or an error wrapping callcat.ErrNotFound.
func (db *DB) Transcript(ctx context.Context, callID string) ([]callcat.Utterance, error) {
	utterances, err := queryUtterances(ctx, db.readers, callID)
	if err != nil {
		return nil, err
	}
	if len(utterances) > 0 {
		return utterances, nil
	}

	// No rows: tell an unknown call from one without utterances.
	if _, err := loadCall(ctx, db.readers, callID); err != nil {
		return nil, fmt.Errorf("transcript: %w", err)
	}
	return []callcat.Utterance{}, nil
}

// Events returns up to limit events of the call with seq > afterSeq in seq
// order; limit is clamped to [1, MaxEventLimit]. An unknown call returns an
// empty slice.
func (db *DB) Events(ctx context.Context, callID string, afterSeq int64, limit int) ([]callcat.Event, error) {
	limit = min(max(limit, 1), MaxEventLimit)

	rows, err := db.readers.QueryContext(ctx, eventsSQL, callID, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("events %s: %w", callID, err)
	}
	defer rows.Close()

	events := []callcat.Event{}
	for rows.Next() {
		ev := callcat.Event{CallID: callID}
		var eventType string
		var createdAt int64
		if err := rows.Scan(&ev.Seq, &eventType, (*[]byte)(&ev.Data), &createdAt); err != nil {
			return nil, fmt.Errorf("events %s: %w", callID, err)
		}
		ev.Type = callcat.EventType(eventType)
		ev.CreatedAt = fromUnixNano(createdAt)
		events = append(events, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events %s: %w", callID, err)
	}
	return events, nil
}

// LiveCalls returns calls whose status is not terminal, oldest first; limit is
// clamped to [1, MaxLiveCalls]. A call stored without any status yet counts as
// live.
func (db *DB) LiveCalls(ctx context.Context, limit int) ([]callcat.Call, error) {
	limit = min(max(limit, 1), MaxLiveCalls)

	calls, err := queryCalls(ctx, db.readers, liveCallsSQL, limit)
	if err != nil {
		return nil, fmt.Errorf("live calls: %w", err)
	}
	return calls, nil
}

// HasDelivery reports whether a webhook delivery with this digest is stored.
func (db *DB) HasDelivery(ctx context.Context, digest string) (bool, error) {
	var found int
	err := db.readers.QueryRowContext(ctx, `SELECT 1 FROM webhook_deliveries WHERE digest = ?`, digest).Scan(&found)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("has delivery: %w", err)
	}
	return true, nil
}

// loadCall reads one call row, or returns an error wrapping
// callcat.ErrNotFound.
func loadCall(ctx context.Context, q queryer, id string) (callcat.Call, error) {
	var c callcat.Call
	err := scanCall(q.QueryRowContext(ctx, `SELECT `+callColumns+` FROM calls WHERE call_id = ?`, id), &c)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return callcat.Call{}, fmt.Errorf("call %s: %w", id, callcat.ErrNotFound)
	case err != nil:
		return callcat.Call{}, fmt.Errorf("call %s: %w", id, err)
	}
	return c, nil
}

// queryCalls runs a query that selects callColumns and returns its rows as
// calls, an empty non-nil slice when there are none.
func queryCalls(ctx context.Context, q queryer, query string, args ...any) ([]callcat.Call, error) {
	rows, err := q.QueryContext(ctx, query, args...)
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
func scanCall(row interface{ Scan(...any) error }, c *callcat.Call, extra ...any) error {
	var (
		status               string
		start, end, duration sql.NullInt64
		createdAt, updatedAt int64
		dest                 = make([]any, 0, 17+len(extra))
	)
	dest = append(dest,
		&c.ID, &status, &c.Type, &c.Direction, &c.FromNumber, &c.ToNumber, &c.AgentID,
		&start, &end, &duration, &c.DisconnectionReason, &c.UtteranceCount,
		(*[]byte)(&c.Metadata), (*[]byte)(&c.Analysis), &c.LastSeq, &createdAt, &updatedAt)
	dest = append(dest, extra...)
	if err := row.Scan(dest...); err != nil {
		return err
	}

	c.Status = callcat.Status(status)
	c.StartTimestamp = intPointer(start)
	c.EndTimestamp = intPointer(end)
	c.DurationMS = intPointer(duration)
	c.CreatedAt = fromUnixNano(createdAt)
	c.UpdatedAt = fromUnixNano(updatedAt)
	return nil
}

func intPointer(n sql.NullInt64) *int64 {
	if !n.Valid {
		return nil
	}
	v := n.Int64
	return &v
}

// queryUtterances returns a call's stored utterances in index order.
func queryUtterances(ctx context.Context, q queryer, callID string) ([]callcat.Utterance, error) {
	rows, err := q.QueryContext(ctx, selectUtterancesSQL, callID)
	if err != nil {
		return nil, fmt.Errorf("utterances %s: %w", callID, err)
	}
	utterances, err := scanUtterances(rows)
	if err != nil {
		return nil, fmt.Errorf("utterances %s: %w", callID, err)
	}
	return utterances, nil
}

// scanUtterances reads utterance rows and closes them.
func scanUtterances(rows *sql.Rows) ([]callcat.Utterance, error) {
	defer rows.Close()

	var utterances []callcat.Utterance
	var words sql.RawBytes // reused across rows; Unmarshal copies what it keeps
	for rows.Next() {
		var u callcat.Utterance
		if err := rows.Scan(&u.Index, &u.Role, &u.Content, &words); err != nil {
			return nil, err
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
