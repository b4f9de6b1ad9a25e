package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/sim"
	"github.com/callcat/callcat/internal/soak"
)

func runSoak(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)

	var cfg soak.Config
	fs.IntVar(&cfg.Calls, "calls", 100, "concurrent simulated calls to keep going")
	fs.IntVar(&cfg.TotalCalls, "total-calls", 0, "end the churn once this many calls were started, even before --duration (0: no limit)")
	fs.DurationVar(&cfg.CallLength, "call-length", sim.DefaultCallLength, "simulated length of a connected call")
	fs.Float64Var(&cfg.Speed, "speed", 1, "time compression: 30 plays a 45s call in 1.5s")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", 0, "get-call period of a live call in wall time (0: 3s divided by --speed)")
	fs.BoolVar(&cfg.PushTranscripts, "push-transcripts", true, "send transcript_updated webhooks at each turn")
	fs.BoolVar(&cfg.LiveTranscript, "live-transcript", false, "let get-call carry the live transcript of an ongoing call")
	fs.Float64Var(&cfg.NotConnectedRatio, "not-connected-ratio", 0.1, "share of calls that never connect (0 to 1)")
	fs.IntVar(&cfg.Subscribers, "subscribers", 20, "most SSE subscribers open at once, each following a random live call for a random time")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Minute, "time calls keep starting before the drain")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "first part of --duration left out of the slopes (0: a tenth of --duration)")
	fs.DurationVar(&cfg.SampleInterval, "sample-interval", soak.DefaultSampleInterval, "time between memory samples")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 0, "longest wait for every call to end after the churn (0: 1m plus two call lengths)")
	fs.Float64Var(&cfg.ProviderRPS, "provider-rps", 0, "maximum requests per second to the simulated provider (0: twice the poll rate, at least 50)")
	fs.IntVar(&cfg.ProviderMaxInFlight, "provider-max-in-flight", 16, "maximum concurrent requests to the simulated provider")
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed of the simulated conversations")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "`directory` for the SQLite database (default: a temporary directory, removed at the end)")
	retention := fs.String("retention", "0", "delete ended calls with their transcripts and events this long after their last change, in wall time (not scaled by --speed), e.g. 2m, or 0 to keep them and not check the database growth")
	fs.DurationVar(&cfg.Retention.Deliveries, "retention-deliveries", 0, "delete webhook delivery records this long after receipt, in wall time (0: --retention when set, else 7 days)")
	fs.DurationVar(&cfg.Retention.Idempotency, "retention-idempotency", 0, "delete Idempotency-Key records this long after creation, in wall time (0: --retention when set, else 24h)")
	fs.DurationVar(&cfg.Retention.Interval, "prune-interval", 0, "time between retention rounds, in wall time (0: a tenth of --retention, from 1s to 1h; 1h without --retention)")

	maxGrowth := fs.Float64("max-growth", soak.DefaultMaxGrowthPerHour, "fail when the steady-state live heap grows faster, in `bytes per hour`")
	maxHeap := fs.Uint64("max-heap-above-baseline", soak.DefaultMaxHeapAboveBaseline, "fail when the live heap after the drain exceeds the baseline by more, in `bytes`")
	maxGoroutines := fs.Int("max-goroutines-above-baseline", soak.DefaultMaxGoroutinesAboveBaseline, "fail when goroutines after the drain exceed the baseline by more")
	maxFDs := fs.Int("max-fds-above-baseline", soak.DefaultMaxFDsAboveBaseline, "fail when open file descriptors after the drain exceed the baseline by more")
	maxDBGrowth := fs.Float64("max-db-growth", 0, fmt.Sprintf("with --retention, fail when the database size grows faster over the second half of the steady phase, in `bytes per hour`: "+
		"a least-squares slope of page_count × page_size sampled every --sample-interval, which counts free pages and pages still in the WAL but not the WAL file, whose size follows checkpoints "+
		"(0: %.0f%% of the growth the churn would cause without retention, estimated as bytes per stored call times calls started per hour)", 100*soak.DefaultDBGrowthShare))
	// The simulator's --fault-* flags, so the soak can run against a
	// misbehaving provider.
	var faults simFlags
	faults.registerFaults(fs)
	fs.BoolVar(&cfg.PlantLeak, "plant-leak", false, "keep every ended call in memory, to see the soak fail (testing only)")

	reportPath := fs.String("report", "", "write the JSON report to this `file`")
	chartPath := fs.String("chart", "", "write the SVG chart of live heap, RSS, database size and goroutines to this `file`")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole soak to this `file`")
	memProfile := fs.String("memprofile", "", "write a heap profile at the end of the steady phase to this `file`")
	logLevel := fs.String("log-level", "warn", "log `level`: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	// NOTE: soaking a callcat running elsewhere (--target) is not built: the
	// rules need a GC-forced sample of the process under test, which only
	// the in-process mode can take.
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}
	cfg.Faults = faults.cfg.Faults
	callRetention, err := app.ParseRetention(*retention)
	if err != nil {
		return fmt.Errorf("--retention: %w", err)
	}
	cfg.Retention.Calls = callRetention
	cfg.Rules = soak.Rules{
		MaxGrowthPerHour:           *maxGrowth,
		MaxHeapAboveBaseline:       *maxHeap,
		MaxGoroutinesAboveBaseline: *maxGoroutines,
		MaxFDsAboveBaseline:        *maxFDs,
		MaxDBGrowthPerHour:         *maxDBGrowth,
	}
	if *chartPath != "" && !strings.EqualFold(filepath.Ext(*chartPath), ".svg") {
		return fmt.Errorf("invalid --chart %q: the chart is SVG, so the file name must end in .svg", *chartPath)
	}

	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	cfg.Logger = logger

	if *cpuProfile != "" {
		// The profiler keeps a table of every distinct stack it sampled in
		// the Go heap of this process until the profile is written.
		fmt.Fprintln(stdout, "NOTE: --cpuprofile keeps the stacks it samples in this process's heap, so the live heap grows with the profile; judge memory from a run without it.")
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("create CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var profileErr error
	if *memProfile != "" {
		cfg.AtSteadyEnd = func() { profileErr = writeHeapProfile(*memProfile) }
	}

	fmt.Fprintf(stdout, "callcat soak: %d concurrent calls at speed %g for %s, up to %d subscribers\n",
		cfg.Calls, cfg.Speed, cfg.Duration, cfg.Subscribers)
	if cfg.Retention.Calls > 0 {
		fmt.Fprintf(stdout, "callcat soak: retention deletes ended calls %s after their last change, in wall time\n", cfg.Retention.Calls)
	}
	rep, err := soak.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if profileErr != nil {
		return profileErr
	}

	if *reportPath != "" {
		if err := writeReport(*reportPath, rep); err != nil {
			return err
		}
	}
	if *chartPath != "" {
		if err := writeChart(*chartPath, rep); err != nil {
			return err
		}
	}
	if err := rep.WriteSummary(stdout); err != nil {
		return err
	}
	return rep.Err()
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create heap profile: %w", err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("write heap profile %s: %w", path, err)
	}
	return f.Close()
}

func writeReport(path string, rep *soak.Report) error {
	body, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode soak report: %w", err)
	}
	if err := os.WriteFile(path, append(body, '\n'), 0o644); err != nil {
		return fmt.Errorf("write soak report: %w", err)
	}
	return nil
}

func writeChart(path string, rep *soak.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create soak chart: %w", err)
	}
	if err := soak.WriteSVG(f, rep); err != nil {
		f.Close()
		return fmt.Errorf("write soak chart %s: %w", path, err)
	}
	return f.Close()
}
