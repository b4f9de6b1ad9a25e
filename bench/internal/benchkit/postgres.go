package benchkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
)

// TempDatabase is a PostgreSQL database that a benchmark run created for
// itself and drops at its end.
type TempDatabase struct {
	admin string // URL of the database the CREATE and DROP run from
	Name  string
	URL   string // admin with the database replaced by Name
}

// CreateDatabase creates a database named <prefix>_<12 hex digits> on the
// server that admin names, a postgres:// URL whose host must be a loopback
// address, localhost or a Unix socket directory. The URL may name any
// database that the user can connect to, such as postgres.
func CreateDatabase(ctx context.Context, admin, prefix string) (*TempDatabase, error) {
	u, err := loopbackPostgresURL(admin)
	if err != nil {
		return nil, err
	}
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	name := prefix + "_" + hex.EncodeToString(suffix)

	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", u.Redacted(), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u.Path = "/" + name
	return &TempDatabase{admin: admin, Name: name, URL: u.String()}, nil
}

// Drop ends the sessions still connected to the database and drops it
// (DROP DATABASE … WITH (FORCE), PostgreSQL 13 and later).
func (d *TempDatabase) Drop(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, d.admin)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", d.Name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.Name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.Name, err)
	}
	return nil
}

// loopbackPostgresURL parses a postgres:// URL and checks that every host
// it names is on this machine, because the benchmark programs load only
// servers on loopback.
func loopbackPostgresURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("invalid PostgreSQL URL: want postgres://user@127.0.0.1:5432/postgres")
	}

	hosts := []string{u.Hostname()}
	if u.Host == "" {
		hosts = []string{u.Query().Get("host")} // empty means the default Unix socket
	} else if strings.Contains(u.Host, ",") {
		hosts = nil
		for h := range strings.SplitSeq(u.Host, ",") {
			if name, _, err := net.SplitHostPort(h); err == nil {
				h = name
			}
			hosts = append(hosts, strings.Trim(h, "[]"))
		}
	}
	for _, h := range hosts {
		if !isLocalHost(h) {
			return nil, fmt.Errorf("PostgreSQL host %q is not on loopback: benchmarks load only servers on 127.0.0.0/8, ::1, localhost or a Unix socket", h)
		}
	}
	return u, nil
}

func isLocalHost(h string) bool {
	if h == "" || h == "localhost" || strings.HasPrefix(h, "/") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
