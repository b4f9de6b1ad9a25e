package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

// testDSNEnv names the environment variable with the DSN of a database that
// the tests may connect to and create databases from.
const testDSNEnv = "CALLCAT_TEST_POSTGRES"

// testDSN is the DSN of the database TestMain created for this run.
var testDSN string

// TestMain creates a fresh database for the run and drops it at the end,
// also when tests fail. Without CALLCAT_TEST_POSTGRES it runs nothing.
//
// NOTE: a run that panics or hits the go test timeout exits without the
// cleanup and leaves its callcat_test_* database behind.
func TestMain(m *testing.M) {
	admin := os.Getenv(testDSNEnv)
	if admin == "" {
		fmt.Println("postgres tests skipped: set " + testDSNEnv + "=postgres://root@127.0.0.1:5432/test?sslmode=disable to run them")
		os.Exit(0)
	}

	name, dsn, err := createTestDatabase(admin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "postgres tests: create test database: %v\n", err)
		os.Exit(1)
	}
	testDSN = dsn

	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if err := dropTestDatabase(admin, name); err != nil {
			fmt.Fprintf(os.Stderr, "postgres tests: drop test database %s: %v\n", name, err)
			if code == 0 {
				code = 1
			}
		}
		os.Exit(code)
	}))
}

// createTestDatabase creates callcat_test_<random hex> and returns its name
// and DSN.
func createTestDatabase(admin string) (name, dsn string, err error) {
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return "", "", err
	}
	name = "callcat_test_" + hex.EncodeToString(suffix)
	if dsn, err = withDatabase(admin, name); err != nil {
		return "", "", err
	}

	err = withAdminConn(admin, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		return err
	})
	return name, dsn, err
}

// dropTestDatabase ends the sessions still connected to the database, which
// a failed test may have left, and drops it.
func dropTestDatabase(admin, name string) error {
	return withAdminConn(admin, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, name)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	})
}

// withAdminConn runs f on a connection to the admin database.
func withAdminConn(admin string, f func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return f(ctx, conn)
}

// withDatabase returns dsn with its database replaced by name. dsn is a URL
// or a key=value string, in which a later key wins.
func withDatabase(dsn, name string) (string, error) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn + " dbname=" + name, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", testDSNEnv, err)
	}
	u.Path = "/" + name
	return u.String(), nil
}
