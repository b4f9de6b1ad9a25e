// Command callcat keeps every live phone call of a voice-AI provider in view.
// See README.md for the subcommands and their flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `callcat keeps every live call of a voice-AI provider in view.

Usage:
  callcat serve [flags]   run the service
  callcat demo  [flags]   run the service and a simulated provider with live calls
  callcat sim   [flags]   run the provider simulator alone
  callcat soak  [flags]   run the service and the simulator under call churn and check memory stays flat
  callcat replay [flags] FILE...  send captured webhook bodies, signed anew, to a callcat
  callcat import [flags]  backfill ended calls from the provider into the store

Run "callcat <command> -h" for a command's flags. Every flag can also be set
through the environment as CALLCAT_<FLAG>, for example CALLCAT_ADDR for --addr.
The provider API key is read from RETELL_API_KEY.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()

	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "callcat:", err)
		os.Exit(1)
	}
}

// run executes one subcommand. It is main without the process: tests call it
// with their own arguments, environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}

	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, getenv, stdout, stderr)
	case "sim":
		return runSim(ctx, rest, getenv, stdout, stderr)
	case "soak":
		return runSoak(ctx, rest, getenv, stdout, stderr)
	case "replay":
		return runReplay(ctx, rest, getenv, stdout, stderr)
	case "import":
		return runImport(ctx, rest, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// parseFlags parses args, then fills every flag not given on the command line
// from its CALLCAT_<FLAG> environment variable.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		name := envName(f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if setErr := fs.Set(f.Name, v); setErr != nil {
			err = fmt.Errorf("invalid %s=%q: %w", name, v, setErr)
		}
	})
	return err
}

// envName maps a flag name to its environment variable: poll-interval →
// CALLCAT_POLL_INTERVAL.
func envName(flagName string) string {
	return "CALLCAT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newLogger returns the process logger writing to w.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid log level %q: use debug, info, warn or error", level)
	}

	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("invalid log format %q: use text or json", format)
	}
}
