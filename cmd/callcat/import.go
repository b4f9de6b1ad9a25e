package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/importer"
	"github.com/callcat/callcat/internal/retell"
)

func runImport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "data", "`directory` of the SQLite database")
	store := fs.String("store", "", "PostgreSQL `URL` (postgres://…); empty uses SQLite in --data-dir")
	baseURL := fs.String("retell-base-url", app.DefaultRetellBaseURL, "provider API base `URL`")
	since := fs.String("since", "", "import calls started at or after this `time` (RFC 3339, e.g. 2026-11-01T00:00:00Z, or a duration back from now such as 720h)")
	stateFile := fs.String("state-file", "", "`file` recording progress so an interrupted import resumes (default: import.state in --data-dir)")
	concurrency := fs.Int("concurrency", importer.DefaultConcurrency, "get-call requests in flight")
	rps := fs.Float64("provider-rps", 10, "maximum provider requests per second")
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}

	from, err := parseSince(*since, time.Now())
	if err != nil {
		return err
	}
	key := getenv("RETELL_API_KEY")
	if key == "" {
		return fmt.Errorf("the provider API key is missing: set RETELL_API_KEY")
	}
	if *stateFile == "" {
		*stateFile = filepath.Join(*dataDir, "import.state")
	}

	logger, err := newLogger(stderr, "info", "text")
	if err != nil {
		return err
	}
	client, err := retell.NewClient(retell.ClientConfig{BaseURL: *baseURL, APIKey: key, MaxInFlight: *concurrency, RequestsPerSecond: *rps, Logger: logger})
	if err != nil {
		return err
	}
	defer client.Close()

	db, closeStore, err := app.OpenStore(ctx, *store, *dataDir, logger)
	if err != nil {
		return err
	}
	defer closeStore()

	res, err := importer.Run(ctx, client, db, importer.Options{Since: from, StateFile: *stateFile, Concurrency: *concurrency, Logger: logger})
	fmt.Fprintf(stdout, "import: %d pages, %d calls imported, %d already stored, %d failed\n", res.Pages, res.Imported, res.Skipped, res.Failed)
	return err
}

// parseSince reads --since as an RFC 3339 time or a duration back from now.
// Empty means the beginning.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("invalid --since %q: use an RFC 3339 time such as 2026-11-01T00:00:00Z or a duration such as 720h", s)
}
