package sqlite

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/callcat/callcat/internal/callcat"
)

// TestQueryPlans checks that every list and replay query reads an index in
// its ORDER BY order, with no full scan and no sort of all rows.
func TestQueryPlans(t *testing.T) {
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "callcat.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })

	cursor := encodeCursor(1, "call_x")
	tests := []planCase{
		{"LiveCalls", liveCallsSQL, []any{10}, "USING INDEX calls_live"},
		{"Events", eventsSQL, []any{"call_x", 0, 10}, "USING PRIMARY KEY"},
		{"Utterances", selectUtterancesSQL, []any{"call_x"}, "USING INDEX sqlite_autoindex_utterances_1"},
		{"UtterancesFrom", selectUtterancesFromSQL, []any{"call_x", 3}, "USING INDEX sqlite_autoindex_utterances_1 (call_id=? AND idx>?)"},
		{"State", selectStateSQL, []any{"call_x"}, "USING INDEX sqlite_autoindex_calls_1"},
		{"Prunable", prunableCallsSQL, []any{1, 10}, "USING INDEX calls_ended_updated"},
	}
	for _, filter := range []callcat.CallFilter{
		{Status: callcat.FilterAll},
		{Status: callcat.FilterAll, Cursor: cursor},
		{Status: callcat.FilterLive},
		{Status: callcat.FilterLive, Cursor: cursor},
		{Status: callcat.FilterEnded, Cursor: cursor},
	} {
		query, args, err := callsQuery(filter)
		if err != nil {
			t.Fatalf("callsQuery(%+v): %v", filter, err)
		}
		index := "USING INDEX calls_created"
		if filter.Status == callcat.FilterLive {
			index = "USING INDEX calls_live"
		}
		name := "Calls/" + string(filter.Status)
		if filter.Cursor != "" {
			name += "/cursor"
		}
		tests = append(tests, planCase{name, query, append(args, 10), index})
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := queryPlan(t, db, tc.query, tc.args)
			if !strings.Contains(plan, tc.want) {
				t.Fatalf("plan=%q, want %q", plan, tc.want)
			}
			if strings.Contains(plan, "TEMP B-TREE") {
				t.Fatalf("plan=%q sorts in a temporary b-tree", plan)
			}
		})
	}
}

// planCase is a query, its arguments and the index its plan must use.
type planCase struct {
	name  string
	query string
	args  []any
	want  string
}

// queryPlan returns the EXPLAIN QUERY PLAN details of query, one per line.
func queryPlan(t *testing.T, db *DB, query string, args []any) string {
	t.Helper()
	rows, err := db.readers.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", query, err)
	}
	defer rows.Close()

	var details []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatalf("scan plan: %v", err)
		}
		details = append(details, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read plan: %v", err)
	}
	return strings.Join(details, "\n")
}

// TestWriteStatementsOpenNoTemporaryTable checks the programs of the Apply
// write statements for OpenEphemeral, the opcode of a temporary b-tree. An IN
// list in a partial index's WHERE clause once added four of them to every
// UPDATE of a call.
func TestWriteStatementsOpenNoTemporaryTable(t *testing.T) {
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "callcat.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })

	for name, query := range map[string]string{
		"insertDelivery":     insertDeliverySQL,
		"insertCall":         insertCallSQL,
		"updateCall":         updateCallSQL,
		"upsertUtterance":    upsertUtteranceSQL,
		"truncateUtterances": truncateUtterancesSQL,
		"insertEvent":        insertEventSQL,
	} {
		t.Run(name, func(t *testing.T) {
			args := make([]any, strings.Count(query, "?"))
			rows, err := db.readers.QueryContext(t.Context(), "EXPLAIN "+query, args...)
			if err != nil {
				t.Fatalf("explain: %v", err)
			}
			defer rows.Close()

			cols, err := rows.Columns()
			if err != nil {
				t.Fatalf("columns: %v", err)
			}
			for rows.Next() {
				values := make([]any, len(cols))
				dest := make([]any, len(cols))
				for i := range values {
					dest[i] = &values[i]
				}
				if err := rows.Scan(dest...); err != nil {
					t.Fatalf("scan: %v", err)
				}
				if opcode, _ := values[1].(string); opcode == "OpenEphemeral" {
					t.Errorf("instruction %v opens a temporary b-tree", values[0])
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("read program: %v", err)
			}
		})
	}
}
