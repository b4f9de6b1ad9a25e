// Package replay sends captured webhook bodies to a callcat, each signed
// anew with a given key at the moment it is sent, for debugging and for
// moving data between environments.
package replay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/callcat/callcat/internal/retell"
)

// Order values for Options.Order.
const (
	OrderFiles = "files" // the order the files were given in
	OrderTime  = "time"  // by file modification time, oldest first: the capture order
)

// MaxBodyBytes bounds one file; the service's default webhook limit is the
// same, so a larger capture could never be accepted.
const MaxBodyBytes = 16 << 20

// Options configure a replay.
type Options struct {
	URL    string // the webhook endpoint, e.g. http://127.0.0.1:8080/webhooks/retell
	Key    string // the provider key the target verifies signatures with
	Order  string // OrderFiles (default) or OrderTime
	Client *http.Client
	Logger *slog.Logger
}

// Result counts the outcome per file.
type Result struct {
	Sent     int
	Accepted int // answered 2xx
	Rejected int // answered otherwise; logged with the file and status
}

// Run sends every file's exact bytes, one at a time, and stops at the first
// file it cannot read or send. A non-2xx answer is counted and logged, and the
// replay goes on.
func Run(ctx context.Context, files []string, opts Options) (Result, error) {
	var res Result
	if opts.URL == "" || opts.Key == "" {
		return res, fmt.Errorf("replay needs a target URL and a key")
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}

	ordered, err := order(files, opts.Order)
	if err != nil {
		return res, err
	}

	for _, name := range ordered {
		body, err := readCapped(name)
		if err != nil {
			return res, err
		}

		status, err := send(ctx, opts, body)
		if err != nil {
			return res, fmt.Errorf("send %s: %w", name, err)
		}
		res.Sent++
		if status >= 200 && status < 300 {
			res.Accepted++
			continue
		}
		res.Rejected++
		opts.Logger.Warn("replayed webhook rejected", "file", name, "status", status)
	}
	return res, nil
}

func order(files []string, how string) ([]string, error) {
	switch how {
	case "", OrderFiles:
		return files, nil
	case OrderTime:
	default:
		return nil, fmt.Errorf("invalid order %q: use %s or %s", how, OrderFiles, OrderTime)
	}

	type stamped struct {
		name string
		mod  time.Time
	}
	list := make([]stamped, 0, len(files))
	for _, name := range files {
		fi, err := os.Stat(name)
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", name, err)
		}
		list = append(list, stamped{name, fi.ModTime()})
	}
	slices.SortStableFunc(list, func(a, b stamped) int { return a.mod.Compare(b.mod) })

	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.name
	}
	return out, nil
}

func readCapped(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	defer f.Close()

	body, err := io.ReadAll(io.LimitReader(f, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(body) > MaxBodyBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes, the largest webhook callcat accepts", name, MaxBodyBytes)
	}
	return body, nil
}

// send posts body signed at the current time and returns the status.
func send(ctx context.Context, opts Options, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, opts.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(retell.SignatureHeader, retell.Sign(body, opts.Key, time.Now()))

	resp, err := opts.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}
