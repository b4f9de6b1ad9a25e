// Package importer backfills ended calls from the provider into the store:
// it pages through v3 list-calls (newest first), fetches each call's full
// record with get-call, and applies it as a final snapshot. Progress is kept
// in a state file after every page, so an interrupted import resumes where
// it stopped.
package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
	"golang.org/x/sync/errgroup"
)

// Defaults for Options.
const (
	DefaultConcurrency = 4
	DefaultPageSize    = 100
)

// terminalFilter asks list-calls for calls that can no longer change.
var terminalFilter = json.RawMessage(`{"call_status":{"type":"enum","op":"in","value":["ended","not_connected","error"]}}`)

// Options configure an import.
type Options struct {
	// Since is the oldest start time imported; list-calls returns calls
	// newest first, so the import stops at the first older call. Calls that
	// never connected have no start time and are imported whatever Since is.
	Since time.Time

	// StateFile records the next page to fetch. An import with the same
	// StateFile resumes there; delete the file to start over.
	StateFile string

	// Concurrency bounds the get-call requests in flight.
	Concurrency int

	// PageSize is the list-calls page size (the provider allows up to 1000).
	PageSize int

	Logger *slog.Logger
}

// Result counts what an import did.
type Result struct {
	Pages    int
	Imported int // calls applied with at least one change
	Skipped  int // calls already stored as they are
	Failed   int // calls whose get-call or store write failed; logged with their ids
}

// state is the content of the state file.
type state struct {
	PaginationKey string `json:"pagination_key"`
	Done          bool   `json:"done"`
	SinceMS       int64  `json:"since_ms"`
}

// Run imports ended calls until list-calls has no more pages or a call older
// than opts.Since appears. It returns an error only when listing or the
// state file fails; failed calls are counted and logged.
func Run(ctx context.Context, client *retell.Client, store callcat.Store, opts Options) (Result, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}

	st, err := loadState(opts.StateFile)
	if err != nil {
		return Result{}, err
	}
	sinceMS := opts.Since.UnixMilli()
	if st.SinceMS != 0 && st.SinceMS != sinceMS {
		return Result{}, fmt.Errorf("state file %s belongs to an import since %s: delete it to start a new import",
			opts.StateFile, time.UnixMilli(st.SinceMS).UTC().Format(time.RFC3339))
	}
	st.SinceMS = sinceMS

	var res Result
	if st.Done {
		opts.Logger.Info("import already complete", "state_file", opts.StateFile)
		return res, nil
	}

	for {
		page, err := client.ListCalls(ctx, retell.ListCallsRequest{
			FilterCriteria: terminalFilter,
			SortOrder:      "descending",
			Limit:          opts.PageSize,
			PaginationKey:  st.PaginationKey,
		})
		if err != nil {
			return res, fmt.Errorf("list calls: %w", err)
		}
		res.Pages++

		reachedSince := importPage(ctx, client, store, page.Items, sinceMS, opts, &res)
		if ctx.Err() != nil {
			return res, context.Cause(ctx)
		}

		st.PaginationKey = page.PaginationKey
		st.Done = reachedSince || !page.HasMore || page.PaginationKey == ""
		if err := saveState(opts.StateFile, st); err != nil {
			return res, err
		}
		opts.Logger.Info("import page done", "page", res.Pages, "imported", res.Imported, "skipped", res.Skipped, "failed", res.Failed)
		if st.Done {
			return res, nil
		}
	}
}

// importPage imports one page's calls with bounded concurrency and reports
// whether the page reached a call older than since.
func importPage(ctx context.Context, client *retell.Client, store callcat.Store, items []retell.Call, sinceMS int64, opts Options, res *Result) bool {
	reached := false
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)

	results := make([]int, len(items)) // 1 imported, 2 skipped, 3 failed
	for i := range items {
		item := &items[i]
		if item.StartTimestamp != nil && *item.StartTimestamp < sinceMS {
			reached = true
			break
		}
		g.Go(func() error {
			results[i] = importCall(gctx, client, store, item.CallID, opts.Logger)
			return nil
		})
	}
	_ = g.Wait() // importCall reports through results, never an error

	for _, r := range results {
		switch r {
		case 1:
			res.Imported++
		case 2:
			res.Skipped++
		case 3:
			res.Failed++
		}
	}
	return reached
}

func importCall(ctx context.Context, client *retell.Client, store callcat.Store, callID string, logger *slog.Logger) int {
	call, err := client.GetCall(ctx, callID)
	if err != nil {
		if ctx.Err() == nil {
			logger.Warn("import: get-call failed", "call_id", callID, "err", err)
		}
		return 3
	}

	u := callcat.Update{Fields: call.Fields()}
	u.Fields.ID = callID
	if utterances, ok := call.Utterances(); ok {
		u.Snapshot = &callcat.Snapshot{Utterances: utterances, Final: u.Fields.Status.Terminal(), TakenAt: time.Now().UnixMilli()}
	}
	applied, err := store.Apply(ctx, u)
	if err != nil {
		if ctx.Err() == nil {
			logger.Warn("import: store write failed", "call_id", callID, "err", err)
		}
		return 3
	}
	if applied.Created || len(applied.Events) > 0 {
		return 1
	}
	return 2
}

func loadState(path string) (state, error) {
	var st state
	if path == "" {
		return st, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read import state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("invalid import state file %s (delete it to start over): %w", path, err)
	}
	return st, nil
}

// saveState writes the state through a temporary file and a rename, so a
// crash leaves the old state or the new one, never half of either.
func saveState(path string, st state) error {
	if path == "" {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".import-state-*")
	if err != nil {
		return fmt.Errorf("write import state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write import state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write import state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write import state: %w", err)
	}
	return nil
}
