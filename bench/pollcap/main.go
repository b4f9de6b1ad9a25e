// Command pollcap measures how many concurrent live calls one callcat can
// poll on this machine. For each level of --calls it starts `callcat sim` and
// `callcat serve` as two child processes. The simulator's get-call carries
// the live transcript. Once the calls reach a steady state, pollcap reads
// poll lateness from the tracker's callcat_poll_lateness_seconds histogram,
// polls per second, the server's CPU time and RSS from /proc, and heap
// allocations per poll from the Go runtime metrics, over a measurement
// window. The bytes the simulator wrote (its get-call responses, plus a few
// webhooks) count as the bytes the server decoded.
//
//	go build -o callcat ./cmd/callcat && go run ./bench/pollcap --calls 1000,3000,5000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/callcat/callcat/bench/internal/benchkit"
)

const apiKey = "key_bench_pollcap_0123456789abcdef"

// latenessLimit is the p99 poll lateness a level must stay under, in
// seconds. It is one of the histogram's bucket bounds.
const latenessLimit = 0.3

type options struct {
	serve        benchkit.ServeFlags
	levels       []int
	runs         int
	speed        float64
	live         bool
	callLength   time.Duration
	warmup       time.Duration
	window       time.Duration
	pprofSeconds int
	outDir       string
}

// result is one run at one level.
type result struct {
	Calls           int     `json:"calls"`
	Run             int     `json:"run"`
	Tracked         float64 `json:"tracked"`
	PollsPerSec     float64 `json:"polls_per_sec"`
	FailedPolls     float64 `json:"failed_polls"`
	LatenessP50     float64 `json:"lateness_p50_seconds_upper"`
	LatenessP99     float64 `json:"lateness_p99_seconds_upper"`
	LateShare       float64 `json:"share_later_than_limit"`
	StoreWriteP50   float64 `json:"store_write_p50_seconds_upper"`
	StoreWriteP99   float64 `json:"store_write_p99_seconds_upper"`
	GetCallP99      float64 `json:"get_call_p99_seconds_upper"`
	ServerCores     float64 `json:"server_cpu_cores"`
	SimCores        float64 `json:"sim_cpu_cores"`
	MachineBusy     float64 `json:"machine_busy_cores"`
	RSSMiB          float64 `json:"server_rss_mib"`
	PeakRSSMiB      float64 `json:"server_peak_rss_mib"`
	HeapMiB         float64 `json:"server_heap_inuse_mib"`
	MallocsPerPoll  float64 `json:"server_mallocs_per_poll"`
	AllocKBPerPoll  float64 `json:"server_alloc_kib_per_poll"`
	DecodedMBPerSec float64 `json:"decoded_mb_per_sec"`
	MBPerCoreSec    float64 `json:"decoded_mb_per_server_core_sec"`
	UnchangedShare  float64 `json:"store_unchanged_share"`
	Pass            bool    `json:"pass"`
}

func main() {
	log.SetFlags(0)
	var o options
	fs := flag.NewFlagSet("pollcap", flag.ExitOnError)
	o.serve.Register(fs)
	levels := fs.String("calls", "1000,3000,5000", "comma-separated `levels` of concurrent live calls")
	fs.IntVar(&o.runs, "runs", 1, "runs per level; the summary gives the median")
	fs.Float64Var(&o.speed, "speed", 1, "simulator time compression (1: real time, so transcripts grow as in a real call)")
	fs.BoolVar(&o.live, "live-transcript", true, "let get-call carry the live transcript (the worst case); false gives the provider's documented shape, where an ongoing call has none")
	fs.DurationVar(&o.callLength, "call-length", 45*time.Second, "simulated call length")
	fs.DurationVar(&o.warmup, "warmup", 75*time.Second, "time before the measurement window, for calls to spread over their lives")
	fs.DurationVar(&o.window, "window", 45*time.Second, "measurement window")
	fs.IntVar(&o.pprofSeconds, "pprof-seconds", 0, "take a CPU profile of this many seconds in the window, and a heap and allocs profile after it (needs --admin-token and --serve-args=--pprof)")
	fs.StringVar(&o.outDir, "out", "bench/out/pollcap", "`directory` for logs, profiles and results.json")
	fs.Parse(os.Args[1:])

	for _, f := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			log.Fatalf("invalid --calls entry %q: want a positive integer", f)
		}
		o.levels = append(o.levels, n)
	}
	if o.runs < 1 || o.runs > 10 {
		log.Fatalf("invalid --runs %d: want 1 to 10", o.runs)
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var all []result
	for _, level := range o.levels {
		var runs []result
		for run := 1; run <= o.runs; run++ {
			r, err := measure(ctx, &o, level, run)
			if err != nil {
				log.Fatalf("calls=%d run=%d: %v", level, run, err)
			}
			printResult(r)
			runs = append(runs, r)
			all = append(all, r)
		}
		if o.runs > 1 {
			printMedian(level, runs)
		}
	}

	out, _ := json.MarshalIndent(all, "", "  ")
	if err := os.WriteFile(filepath.Join(o.outDir, "results.json"), out, 0o644); err != nil {
		log.Fatal(err)
	}
}

// measure runs one level once.
func measure(ctx context.Context, o *options, calls, run int) (result, error) {
	r := result{Calls: calls, Run: run}
	dir := filepath.Join(o.outDir, fmt.Sprintf("calls%d-run%d", calls, run))
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}

	simAddr, err := benchkit.FreeAddr()
	if err != nil {
		return r, err
	}
	srv, err := benchkit.StartServe(ctx, o.serve, dir, apiKey, "http://"+simAddr, calls*2, 1000)
	if err != nil {
		return r, err
	}
	defer srv.Stop(15 * time.Second)

	sim, err := benchkit.Start("callcat sim", o.serve.Binary, []string{"sim",
		"--addr", simAddr,
		"--calls", strconv.Itoa(calls),
		"--speed", strconv.FormatFloat(o.speed, 'f', -1, 64),
		"--call-length", o.callLength.String(),
		"--live-transcript=" + strconv.FormatBool(o.live),
		"--push-transcripts=false",
		"--api-key", apiKey,
		"--webhook-url", srv.URL() + "/webhooks/retell",
		"--log-level", "warn",
	}, nil, filepath.Join(dir, "sim.log"))
	if err != nil {
		return r, err
	}
	defer sim.Stop(10 * time.Second)
	if err := waitTCP(ctx, simAddr, 10*time.Second); err != nil {
		return r, err
	}

	log.Printf("calls=%d run=%d: warming up for %v", calls, run, o.warmup)
	if err := sleep(ctx, o.warmup); err != nil {
		return r, err
	}

	m0, err := srv.Metrics(ctx)
	if err != nil {
		return r, err
	}
	s0, _ := benchkit.ReadProc(srv.PID())
	p0, _ := benchkit.ReadProc(sim.PID())
	busy0, _, _ := benchkit.MachineCPU()

	profileDone := make(chan error, 1)
	if o.pprofSeconds > 0 {
		go func() {
			profileDone <- fetchProfile(ctx, srv, o.serve.AdminToken, fmt.Sprintf("/debug/pprof/profile?seconds=%d", o.pprofSeconds), filepath.Join(dir, "cpu.pprof"))
		}()
	} else {
		profileDone <- nil
	}

	log.Printf("calls=%d run=%d: measuring for %v", calls, run, o.window)
	if err := sleep(ctx, o.window); err != nil {
		return r, err
	}

	m1, err := srv.Metrics(ctx)
	if err != nil {
		return r, err
	}
	s1, _ := benchkit.ReadProc(srv.PID())
	p1, _ := benchkit.ReadProc(sim.PID())
	busy1, _, _ := benchkit.MachineCPU()
	if err := <-profileDone; err != nil {
		log.Printf("cpu profile: %v", err)
	}
	if o.pprofSeconds > 0 {
		for _, name := range []string{"heap", "allocs"} {
			if err := fetchProfile(ctx, srv, o.serve.AdminToken, "/debug/pprof/"+name, filepath.Join(dir, name+".pprof")); err != nil {
				log.Printf("%s profile: %v", name, err)
			}
		}
	}

	secs := s1.At.Sub(s0.At).Seconds()
	okPolls := m1.Get(`callcat_polls_total{outcome="ok"}`) - m0.Get(`callcat_polls_total{outcome="ok"}`)
	allPolls := m1.Sum("callcat_polls_total") - m0.Sum("callcat_polls_total")
	lateness := benchkit.HistogramDelta(m0.Histogram("callcat_poll_lateness_seconds", ""), m1.Histogram("callcat_poll_lateness_seconds", ""))
	storeWrites := benchkit.HistogramDelta(m0.Histogram("callcat_store_write_duration_seconds", ""), m1.Histogram("callcat_store_write_duration_seconds", ""))
	getCalls := benchkit.HistogramDelta(m0.Histogram("callcat_provider_request_duration_seconds", `endpoint="get_call",`),
		m1.Histogram("callcat_provider_request_duration_seconds", `endpoint="get_call",`))

	r.Tracked = m1.Get("callcat_tracked_calls")
	r.PollsPerSec = allPolls / secs
	r.FailedPolls = allPolls - okPolls
	r.LatenessP50 = benchkit.Quantile(lateness, 0.50)
	r.LatenessP99 = benchkit.Quantile(lateness, 0.99)
	r.LateShare = benchkit.FractionAbove(lateness, latenessLimit)
	r.StoreWriteP50 = benchkit.Quantile(storeWrites, 0.50)
	r.StoreWriteP99 = benchkit.Quantile(storeWrites, 0.99)
	r.GetCallP99 = benchkit.Quantile(getCalls, 0.99)
	r.ServerCores = (s1.CPUSeconds - s0.CPUSeconds) / secs
	r.SimCores = (p1.CPUSeconds - p0.CPUSeconds) / secs
	r.MachineBusy = (busy1 - busy0) / secs
	r.RSSMiB = float64(s1.RSSBytes) / (1 << 20)
	r.PeakRSSMiB = float64(s1.HWMBytes) / (1 << 20)
	r.HeapMiB = m1.Get("go_memstats_heap_inuse_bytes") / (1 << 20)
	if allPolls > 0 {
		r.MallocsPerPoll = (m1.Get("go_memstats_mallocs_total") - m0.Get("go_memstats_mallocs_total")) / allPolls
		r.AllocKBPerPoll = (m1.Get("go_memstats_alloc_bytes_total") - m0.Get("go_memstats_alloc_bytes_total")) / allPolls / 1024
	}
	r.DecodedMBPerSec = float64(p1.WriteBytes-p0.WriteBytes) / secs / 1e6
	if r.ServerCores > 0 {
		r.MBPerCoreSec = r.DecodedMBPerSec / r.ServerCores
	}
	changed := m1.Get(`callcat_store_writes_total{outcome="changed"}`) - m0.Get(`callcat_store_writes_total{outcome="changed"}`)
	unchanged := m1.Get(`callcat_store_writes_total{outcome="unchanged"}`) - m0.Get(`callcat_store_writes_total{outcome="unchanged"}`)
	if changed+unchanged > 0 {
		r.UnchangedShare = unchanged / (changed + unchanged)
	}
	r.Pass = r.LateShare <= 0.01 && r.RSSMiB < 200 && r.FailedPolls == 0

	select {
	case err := <-srv.Exited():
		return r, fmt.Errorf("callcat serve exited during the run: %v (see %s)", err, srv.Log.Name())
	default:
	}
	return r, nil
}

func printResult(r result) {
	fmt.Printf("calls=%d run=%d tracked=%.0f polls/s=%.0f failed=%.0f lateness_p50<=%gs p99<=%gs late>300ms=%.2f%% store_write_p50<=%gs p99<=%gs get_call_p99<=%gs "+
		"server_cpu=%.2f sim_cpu=%.2f machine_busy=%.2f rss=%.0fMiB peak=%.0fMiB heap=%.0fMiB "+
		"mallocs/poll=%.0f alloc/poll=%.1fKiB decoded=%.1fMB/s per_core=%.1fMB/s store_unchanged=%.0f%% pass=%v\n",
		r.Calls, r.Run, r.Tracked, r.PollsPerSec, r.FailedPolls, r.LatenessP50, r.LatenessP99, 100*r.LateShare, r.StoreWriteP50, r.StoreWriteP99, r.GetCallP99,
		r.ServerCores, r.SimCores, r.MachineBusy, r.RSSMiB, r.PeakRSSMiB, r.HeapMiB,
		r.MallocsPerPoll, r.AllocKBPerPoll, r.DecodedMBPerSec, r.MBPerCoreSec, 100*r.UnchangedShare, r.Pass)
}

func printMedian(level int, runs []result) {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		return benchkit.Median(v)
	}
	fmt.Printf("median calls=%d polls/s=%.0f lateness_p99<=%gs late>300ms=%.2f%% server_cpu=%.2f rss=%.0fMiB mallocs/poll=%.0f decoded=%.1fMB/s per_core=%.1fMB/s\n",
		level,
		pick(func(r result) float64 { return r.PollsPerSec }),
		pick(func(r result) float64 { return r.LatenessP99 }),
		100*pick(func(r result) float64 { return r.LateShare }),
		pick(func(r result) float64 { return r.ServerCores }),
		pick(func(r result) float64 { return r.RSSMiB }),
		pick(func(r result) float64 { return r.MallocsPerPoll }),
		pick(func(r result) float64 { return r.DecodedMBPerSec }),
		pick(func(r result) float64 { return r.MBPerCoreSec }))
}

func fetchProfile(ctx context.Context, srv *benchkit.Serve, token, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+path, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, io.LimitReader(resp.Body, 256<<20))
	return err
}

func waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("nothing listens on %s after %v", addr, timeout)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
