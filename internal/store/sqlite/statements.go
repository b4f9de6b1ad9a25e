package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// SQL of the statements that Apply runs on every write.
const (
	insertDeliverySQL = `INSERT INTO webhook_deliveries (digest, event, call_id, signed_at, received_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (digest) DO NOTHING`

	selectStateSQL = `SELECT ` + callColumns + `,
		snapshot_final, snapshot_count, snapshot_last_word_end, snapshot_taken_at,
		utterance_hashes
		FROM calls WHERE call_id = ?`

	selectUtterancesSQL = `SELECT idx, role, content, words FROM utterances
		WHERE call_id = ? ORDER BY idx`

	selectUtterancesFromSQL = `SELECT idx, role, content, words FROM utterances
		WHERE call_id = ? AND idx >= ? ORDER BY idx`

	insertCallSQL = `INSERT INTO calls (
		status, call_type, direction, from_number, to_number, agent_id,
		start_timestamp, end_timestamp, duration_ms,
		disconnection_reason, utterance_count, metadata, analysis,
		last_seq, snapshot_final, snapshot_count, snapshot_last_word_end, snapshot_taken_at,
		utterance_hashes, updated_at, created_at, call_id
	) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	updateCallSQL = `UPDATE calls SET
		status = ?, call_type = ?, direction = ?, from_number = ?, to_number = ?, agent_id = ?,
		start_timestamp = ?, end_timestamp = ?, duration_ms = ?,
		disconnection_reason = ?, utterance_count = ?, metadata = ?, analysis = ?,
		last_seq = ?, snapshot_final = ?, snapshot_count = ?, snapshot_last_word_end = ?, snapshot_taken_at = ?,
		utterance_hashes = ?, updated_at = ?
		WHERE call_id = ?`

	upsertUtteranceSQL = `INSERT INTO utterances (call_id, idx, role, content, words)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (call_id, idx) DO UPDATE SET
			role = excluded.role, content = excluded.content, words = excluded.words`

	truncateUtterancesSQL = `DELETE FROM utterances WHERE call_id = ? AND idx >= ?`

	insertEventSQL = `INSERT INTO events (call_id, seq, type, data, created_at) VALUES (?, ?, ?, ?, ?)`
)

// writeStatements are the Apply statements, prepared once on the writer
// connection. Parsing them anew on every Apply cost about a fifth of its time.
type writeStatements struct {
	insertDelivery     *sql.Stmt
	selectState        *sql.Stmt
	selectUtterances   *sql.Stmt
	insertCall         *sql.Stmt
	updateCall         *sql.Stmt
	upsertUtterance    *sql.Stmt
	truncateUtterances *sql.Stmt
	insertEvent        *sql.Stmt
}

// prepareWriteStatements prepares every write statement on db.
func prepareWriteStatements(ctx context.Context, db *sql.DB) (*writeStatements, error) {
	s := &writeStatements{}
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&s.insertDelivery, insertDeliverySQL},
		{&s.selectState, selectStateSQL},
		{&s.selectUtterances, selectUtterancesFromSQL},
		{&s.insertCall, insertCallSQL},
		{&s.updateCall, updateCallSQL},
		{&s.upsertUtterance, upsertUtteranceSQL},
		{&s.truncateUtterances, truncateUtterancesSQL},
		{&s.insertEvent, insertEventSQL},
	} {
		stmt, err := db.PrepareContext(ctx, p.query)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("prepare statement: %w", err)
		}
		*p.stmt = stmt
	}
	return s, nil
}

// close closes the statements prepared so far.
func (s *writeStatements) close() error {
	var errs []error
	for _, stmt := range []*sql.Stmt{
		s.insertDelivery, s.selectState, s.selectUtterances, s.insertCall,
		s.updateCall, s.upsertUtterance, s.truncateUtterances, s.insertEvent,
	} {
		if stmt != nil {
			errs = append(errs, stmt.Close())
		}
	}
	return errors.Join(errs...)
}
