// Command loadgen measures webhook ingest. It starts `callcat serve` as a
// child process, or targets a running one with --url. Then it posts signed
// transcript_updated webhooks at fixed rates, open loop. Each request is sent
// at its scheduled time whatever the earlier ones did, and its latency counts
// from that time, so a server that falls behind shows it. Each rate runs for
// --duration. The report gives the acknowledgement latency (p50, p99, max),
// the errors and the body sizes sent.
//
// Bodies are built from the four-minute fixture call. A pool of --calls live
// calls each grows towards its own final size, drawn from a log-normal
// distribution between 2 KB and 150 KB, so that successive webhooks of a call
// carry a longer transcript, as the provider's do, and the posted bodies have
// a median near --median-bytes.
//
//	go build -o callcat ./cmd/callcat && go run ./bench/loadgen --rates 500,1000,2000,3000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/callcat/callcat/bench/internal/benchkit"
)

const apiKey = "key_bench_loadgen_0123456789abcdef"

// Body sizes, in bytes.
const (
	minBodyBytes = 2_000
	maxBodyBytes = 150_000
)

type options struct {
	serve       benchkit.ServeFlags
	url         string
	rates       []int
	runs        int
	duration    time.Duration
	calls       int
	medianBytes int
	maxInFlight int
	fixture     string
	outDir      string
	seed        uint64
}

type result struct {
	Rate        int     `json:"rate"`
	Run         int     `json:"run"`
	Sent        int     `json:"sent"`
	Errors      int     `json:"errors"`
	Skipped     int     `json:"skipped_in_flight_cap"`
	AchievedRPS float64 `json:"achieved_per_sec"`
	P50ms       float64 `json:"ack_p50_ms"`
	P99ms       float64 `json:"ack_p99_ms"`
	MaxMs       float64 `json:"ack_max_ms"`
	BodyP50     int     `json:"body_p50_bytes"`
	BodyP90     int     `json:"body_p90_bytes"`
	BodyMax     int     `json:"body_max_bytes"`
	ServerCores float64 `json:"server_cpu_cores"`
	RSSMiB      float64 `json:"server_rss_mib"`
	Pass        bool    `json:"pass"`
}

func main() {
	log.SetFlags(0)
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ExitOnError)
	o.serve.Register(fs)
	fs.StringVar(&o.url, "url", "", "base `URL` of a running callcat to target instead of starting one (its provider API key must be the one this program signs with)")
	rates := fs.String("rates", "500,1000,2000", "comma-separated webhook `rates` per second")
	fs.IntVar(&o.runs, "runs", 1, "runs per rate, each on a fresh server; the summary gives the median")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "time each rate runs")
	fs.IntVar(&o.calls, "calls", 1000, "live calls the webhooks are spread over, round robin")
	fs.IntVar(&o.medianBytes, "median-bytes", 10_000, "target median body size in `bytes`")
	fs.IntVar(&o.maxInFlight, "max-in-flight", 512, "requests outstanding at once; a request due while all are taken counts as an error")
	fs.StringVar(&o.fixture, "fixture", benchkit.DefaultFixture, "provider payload the bodies are built from")
	fs.StringVar(&o.outDir, "out", "bench/out/loadgen", "`directory` for logs and results.json")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the body sizes")
	fs.Parse(os.Args[1:])

	for _, f := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || n > 50_000 {
			log.Fatalf("invalid --rates entry %q: want 1 to 50000", f)
		}
		o.rates = append(o.rates, n)
	}
	if o.runs < 1 || o.runs > 10 || o.calls < 1 || o.maxInFlight < 1 || o.duration <= 0 || o.duration > 10*time.Minute {
		log.Fatal("invalid --runs (1-10), --calls, --max-in-flight or --duration (up to 10m)")
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		log.Fatal(err)
	}
	bodies, err := benchkit.LoadTranscripts(o.fixture, maxBodyBytes)
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var all []result
	for _, rate := range o.rates {
		var runs []result
		for run := 1; run <= o.runs; run++ {
			r, err := measure(ctx, &o, bodies, rate, run)
			if err != nil {
				log.Fatalf("rate=%d run=%d: %v", rate, run, err)
			}
			fmt.Printf("rate=%d run=%d sent=%d achieved=%.0f/s errors=%d ack_p50=%.2fms p99=%.2fms max=%.2fms body_p50=%dB p90=%dB max=%dB server_cpu=%.2f rss=%.0fMiB pass=%v\n",
				r.Rate, r.Run, r.Sent, r.AchievedRPS, r.Errors, r.P50ms, r.P99ms, r.MaxMs, r.BodyP50, r.BodyP90, r.BodyMax, r.ServerCores, r.RSSMiB, r.Pass)
			runs = append(runs, r)
			all = append(all, r)
		}
		if o.runs > 1 {
			p99 := make([]float64, len(runs))
			errs := make([]float64, len(runs))
			for i, r := range runs {
				p99[i], errs[i] = r.P99ms, float64(r.Errors)
			}
			fmt.Printf("median rate=%d ack_p99=%.2fms errors=%.0f\n", rate, benchkit.Median(p99), benchkit.Median(errs))
		}
	}
	out, _ := json.MarshalIndent(all, "", "  ")
	if err := os.WriteFile(filepath.Join(o.outDir, "results.json"), out, 0o644); err != nil {
		log.Fatal(err)
	}
}

// liveCall is one simulated call of the pool: its webhooks carry 1, 2, …
// items up to final, then the call is replaced by a new one.
type liveCall struct {
	id    string
	items int
	final int
}

// pool hands out the next webhook body, round robin over the live calls.
type pool struct {
	mu     sync.Mutex
	bodies *benchkit.Transcripts
	calls  []liveCall
	next   int
	seq    int
	run    uint32
	rng    *rand.Rand
	median float64
}

func newPool(o *options, bodies *benchkit.Transcripts, run uint32) *pool {
	p := &pool{bodies: bodies, run: run, rng: rand.New(rand.NewPCG(o.seed, uint64(run))), median: float64(o.medianBytes)}
	p.calls = make([]liveCall, o.calls)
	for i := range p.calls {
		p.calls[i] = p.newCall()
		// Start the pool spread over the calls' lives.
		p.calls[i].items = p.rng.IntN(p.calls[i].final)
	}
	return p
}

// newCall draws a final size. Webhooks of a call take every size from the
// first item to the final one, so the posted median is about half the
// final sizes' median: hence the factor 2.
func (p *pool) newCall() liveCall {
	size := 2 * p.median * math.Exp(0.8*p.rng.NormFloat64())
	size = max(minBodyBytes, min(maxBodyBytes, size))
	p.seq++
	return liveCall{id: benchkit.CallID(p.run, p.seq), final: p.bodies.ItemsFor(int(size))}
}

// body returns the next webhook: the next transcript_updated of the next
// call, or the call_ended of a call that reached its final size, after which
// a new call takes its place.
func (p *pool) body() []byte {
	p.mu.Lock()
	c := &p.calls[p.next]
	p.next = (p.next + 1) % len(p.calls)
	if c.items >= c.final {
		id, items := c.id, max(c.items, p.bodies.ItemsFor(minBodyBytes))
		*c = p.newCall()
		p.mu.Unlock()
		return p.bodies.EndedBody(id, items)
	}
	c.items++
	id, items := c.id, c.items
	p.mu.Unlock()

	// The first webhooks of a call carry at least the smallest body of 2 KB,
	// because a smaller one would hold a single short item.
	items = max(items, p.bodies.ItemsFor(minBodyBytes))
	return p.bodies.Body(id, items, "")
}

func measure(ctx context.Context, o *options, bodies *benchkit.Transcripts, rate, run int) (result, error) {
	r := result{Rate: rate, Run: run}
	target := o.url
	var srv *benchkit.Serve
	if target == "" {
		dir := filepath.Join(o.outDir, fmt.Sprintf("rate%d-run%d", rate, run))
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return r, err
		}
		stub, stop, err := benchkit.ServeStub()
		if err != nil {
			return r, err
		}
		defer stop()
		srv, err = benchkit.StartServe(ctx, o.serve, dir, apiKey, stub, 2*o.calls, 1000)
		if err != nil {
			return r, err
		}
		defer srv.Stop(15 * time.Second)
		target = srv.URL()
	}
	url := target + "/webhooks/retell"

	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        o.maxInFlight,
			MaxIdleConnsPerHost: o.maxInFlight,
			MaxConnsPerHost:     o.maxInFlight,
		},
	}
	defer client.CloseIdleConnections()

	p := newPool(o, bodies, uint32(time.Now().UnixNano()))
	total := int(float64(rate) * o.duration.Seconds())
	latencies := make([]time.Duration, total)
	sizes := make([]int, 0, total)
	errs := make([]error, total)
	slots := make(chan struct{}, o.maxInFlight)
	var wg sync.WaitGroup

	var s0 benchkit.ProcSample
	if srv != nil {
		s0, _ = benchkit.ReadProc(srv.PID())
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / float64(rate))
	skipped := 0
	for i := range total {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		body := p.body()
		sizes = append(sizes, len(body))
		select {
		case slots <- struct{}{}:
		default:
			skipped++
			errs[i] = fmt.Errorf("no free request slot: %d requests outstanding", o.maxInFlight)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			errs[i] = benchkit.PostWebhook(client, url, apiKey, body)
			latencies[i] = time.Since(due)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	var ok []time.Duration
	for i, err := range errs {
		if err != nil {
			if r.Errors < 3 {
				log.Printf("rate=%d: request %d: %v", rate, i, err)
			}
			r.Errors++
			continue
		}
		ok = append(ok, latencies[i])
	}
	lat := benchkit.Summarize(ok)
	slices.Sort(sizes)
	r.Sent = total
	r.Skipped = skipped
	r.AchievedRPS = float64(total) / elapsed.Seconds()
	r.P50ms = float64(lat.P50) / float64(time.Millisecond)
	r.P99ms = float64(lat.P99) / float64(time.Millisecond)
	r.MaxMs = float64(lat.Max) / float64(time.Millisecond)
	r.BodyP50 = sizes[len(sizes)/2]
	r.BodyP90 = sizes[len(sizes)*9/10]
	r.BodyMax = sizes[len(sizes)-1]
	if srv != nil {
		s1, _ := benchkit.ReadProc(srv.PID())
		r.ServerCores = (s1.CPUSeconds - s0.CPUSeconds) / s1.At.Sub(s0.At).Seconds()
		r.RSSMiB = float64(s1.RSSBytes) / (1 << 20)
	}
	r.Pass = r.Errors == 0 && r.P99ms < 25
	return r, nil
}
