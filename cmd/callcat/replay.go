package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/callcat/callcat/internal/replay"
)

func runReplay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: callcat replay [flags] FILE...\n\nSends captured webhook bodies, signed anew with --key, to a callcat.")
		fs.PrintDefaults()
	}
	to := fs.String("to", "http://127.0.0.1:8080/webhooks/retell", "webhook `URL` of the target callcat")
	key := fs.String("key", "", "provider API `key` the target verifies signatures with (default: RETELL_API_KEY)")
	order := fs.String("order", replay.OrderFiles, "send order: files (as given) or time (file modification time, oldest first)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	files := fs.Args()
	if len(files) == 0 {
		fs.Usage()
		return errors.New("no files to replay")
	}
	if *key == "" {
		*key = getenv("RETELL_API_KEY")
	}
	if *key == "" {
		return errors.New("replay needs the key the target verifies with: pass --key or set RETELL_API_KEY")
	}

	logger, err := newLogger(stderr, "info", "text")
	if err != nil {
		return err
	}
	res, err := replay.Run(ctx, files, replay.Options{URL: *to, Key: *key, Order: *order, Logger: logger})
	fmt.Fprintf(stdout, "replayed %d webhooks: %d accepted, %d rejected\n", res.Sent, res.Accepted, res.Rejected)
	if err != nil {
		return err
	}
	if res.Rejected > 0 {
		return fmt.Errorf("%d webhooks were rejected; the log names each file and status", res.Rejected)
	}
	return nil
}
