package postgres

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callcat/callcat/internal/callcat"
)

// TestQueryPlans checks that every list, replay and lease query reads the
// index it was written for, in its ORDER BY order. On the test's nearly empty
// tables a sequential scan and a sort would be cheapest, so the test prices
// sequential scans, bitmap scans and sorts out of the planner's reach. A plan
// that still sorts then shows that no index gives the order.
//
// The plans run on a schema of their own, whose tables no other test fills,
// so that table statistics cannot change the planner's choice between two
// usable indexes.
func TestQueryPlans(t *testing.T) {
	db := openEmptySchema(t, "query_plans")

	cursor := encodeCursor(1000, "call_x")
	tests := []planCase{
		{"LiveCalls", liveCallsSQL, []any{10}, "calls_live"},
		{"Events", eventsSQL, []any{"call_x", 0, 10}, "events_pkey"},
		{"Utterances", selectUtterancesSQL, []any{"call_x"}, "utterances_pkey"},
		{"State", selectStateSQL, []any{"call_x"}, "calls_pkey"},
		{"AdoptableCalls", adoptableCallsSQL, []any{10}, "calls_live"},
		{"RenewLeases", renewLeasesSQL, []any{"replica-a", time.Minute}, "call_leases_owner"},
		{"ReleaseLeases", releaseLeasesSQL, []any{"replica-a"}, "call_leases_owner"},
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
		index := "calls_created"
		if filter.Status == callcat.FilterLive {
			index = "calls_live"
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
			if !strings.Contains(plan, "Index Scan") || !strings.Contains(plan, tc.want) {
				t.Fatalf("plan does not scan index %s:\n%s", tc.want, plan)
			}
			if strings.Contains(plan, "Sort") {
				t.Fatalf("plan sorts:\n%s", plan)
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

// queryPlan returns the EXPLAIN output of query, one line per plan node.
func queryPlan(t *testing.T, db *DB, query string, args []any) string {
	t.Helper()
	ctx := t.Context()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	defer rollback(tx)
	for _, setting := range []string{"enable_seqscan", "enable_bitmapscan", "enable_sort"} {
		if _, err := tx.Exec(ctx, "SET LOCAL "+setting+" = off"); err != nil {
			t.Fatalf("SET LOCAL %s: %v", setting, err)
		}
	}

	rows, err := tx.Query(ctx, "EXPLAIN "+query, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", query, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read plan of %s: %v", query, err)
	}
	return strings.Join(lines, "\n")
}

// openEmptySchema creates schema name in the test database, opens a DB on
// it, and drops both when the test ends.
func openEmptySchema(t *testing.T, name string) *DB {
	t.Helper()
	ctx := t.Context()
	err := withAdminConn(testDSN, func(ctx context.Context, conn *pgx.Conn) error {
		schema := pgx.Identifier{name}.Sanitize()
		_, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE; CREATE SCHEMA "+schema)
		return err
	})
	if err != nil {
		t.Fatalf("create schema %s: %v", name, err)
	}

	dsn := testDSN + " search_path=" + name
	if u, err := url.Parse(testDSN); err == nil && u.Scheme != "" {
		query := u.Query()
		query.Set("search_path", name)
		u.RawQuery = query.Encode()
		dsn = u.String()
	}
	db, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		db.Close()
		err := withAdminConn(testDSN, func(ctx context.Context, conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE")
			return err
		})
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return db
}
