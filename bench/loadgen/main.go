// Command loadgen measures webhook ingest. It starts `callcat serve` as a
// child process, or targets a running one with --url. Then it posts signed
// transcript_updated webhooks at fixed rates, open loop. Each request is sent
// at its scheduled time whatever the earlier ones did, and its latency counts
// from that time, so a server that falls behind shows it. Each rate runs for
// --duration. The report gives the acknowledgement latency (p50, p99, max),
// the errors and the body sizes sent.
//
// With --replicas N it starts N serve children on one shared PostgreSQL
// store, and --url takes a comma-separated list of running servers. Each
// request then goes to one of them drawn at random, as a load balancer
// without call affinity would send it. --postgres names a PostgreSQL server
// on which every run creates a fresh database for the replicas' --store and
// drops it at the end.
//
// Bodies are built from the four-minute fixture call. A pool of --calls live
// calls each grows towards its own final size, drawn from a log-normal
// distribution between 2 KB and 150 KB, so that successive webhooks of a call
// carry a longer transcript, as the provider's do, and the posted bodies have
// a median near --median-bytes.
//
//	go build -o callcat ./cmd/callcat && go run ./bench/loadgen --rates 500,1000,2000,3000
//	go run ./bench/loadgen --postgres postgres://root@127.0.0.1:5432/postgres?sslmode=disable --replicas 3 --rates 250,500
package main

import (
	"context"
	"encoding/json"
	"errors"
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
	urls        []string // running servers to target instead of starting serve
	replicas    int
	postgres    string // admin URL of the server that holds each run's database
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
	ServerCores float64 `json:"server_cpu_cores"` // all replicas together
	RSSMiB      float64 `json:"server_rss_mib"`   // all replicas together
	Pass        bool    `json:"pass"`

	Replicas int `json:"replicas"` // servers the requests were spread over

	// CPU cores used during the run. PostgresCores counts every process
	// named postgres, whoever's queries it ran. MachineCores is the busy
	// time of the whole machine from /proc/stat, other jobs included, which
	// the kernel samples at each tick and so reads low under a bursty load.
	PostgresCores float64 `json:"postgres_cpu_cores"`
	LoadgenCores  float64 `json:"loadgen_cpu_cores"`
	MachineCores  float64 `json:"machine_busy_cores"`

	PerReplica []replicaResult `json:"per_replica,omitempty"` // with more than one target

	// P99BySecond is the ack p99 of the requests due in each second of the
	// run, which separates a slow start from a steady backlog.
	P99BySecond []float64 `json:"ack_p99_ms_by_second"`
}

// replicaResult is the share of one run that one target took.
type replicaResult struct {
	Replica int     `json:"replica"` // 1-based, in the order of --url or of start
	URL     string  `json:"url"`
	Sent    int     `json:"sent"`
	Errors  int     `json:"errors"`
	P99ms   float64 `json:"ack_p99_ms"`
	Cores   float64 `json:"cpu_cores"` // zero for a server this program did not start
	RSSMiB  float64 `json:"rss_mib"`
}

func main() {
	log.SetFlags(0)
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ExitOnError)
	o.serve.Register(fs)
	urls := fs.String("url", "", "base `URLs` of running callcat servers to target instead of starting serve, comma-separated; each request goes to one at random (their provider API key must be the one this program signs with)")
	fs.IntVar(&o.replicas, "replicas", 1, "serve children to start on one shared PostgreSQL --store (1 to 16); each request goes to one at random")
	fs.StringVar(&o.postgres, "postgres", "", "admin `URL` of a PostgreSQL server on loopback, e.g. postgres://root@127.0.0.1:5432/postgres?sslmode=disable; each run creates a fresh database there, passes it to every replica as --store and drops it")
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
	if err := o.parseTargets(*urls); err != nil {
		log.Fatal(err)
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
			fmt.Printf("rate=%d run=%d replicas=%d sent=%d achieved=%.0f/s errors=%d ack_p50=%.2fms p99=%.2fms max=%.2fms body_p50=%dB p90=%dB max=%dB server_cpu=%.2f rss=%.0fMiB postgres_cpu=%.2f loadgen_cpu=%.2f machine_cpu=%.2f pass=%v\n",
				r.Rate, r.Run, r.Replicas, r.Sent, r.AchievedRPS, r.Errors, r.P50ms, r.P99ms, r.MaxMs, r.BodyP50, r.BodyP90, r.BodyMax,
				r.ServerCores, r.RSSMiB, r.PostgresCores, r.LoadgenCores, r.MachineCores, r.Pass)
			for _, t := range r.PerReplica {
				fmt.Printf("  replica=%d url=%s sent=%d errors=%d ack_p99=%.2fms cpu=%.2f rss=%.0fMiB\n",
					t.Replica, t.URL, t.Sent, t.Errors, t.P99ms, t.Cores, t.RSSMiB)
			}
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

// parseTargets checks --url, --replicas and --postgres together and fills
// o.urls from the comma-separated list urls.
func (o *options) parseTargets(urls string) error {
	if o.replicas < 1 || o.replicas > 16 {
		return fmt.Errorf("invalid --replicas %d: want 1 to 16", o.replicas)
	}
	if urls != "" {
		if o.replicas > 1 || o.postgres != "" {
			return errors.New("--url targets running servers; --replicas and --postgres apply only to servers this program starts")
		}
		for u := range strings.SplitSeq(urls, ",") {
			u = strings.TrimRight(strings.TrimSpace(u), "/")
			if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				return fmt.Errorf("invalid --url entry %q: want a base URL such as http://127.0.0.1:8080", u)
			}
			o.urls = append(o.urls, u)
		}
		o.replicas = len(o.urls)
		return nil
	}

	ownStore := hasStoreFlag(o.serve.ExtraArgs)
	switch {
	case o.postgres != "" && ownStore:
		return errors.New("set --postgres or --store in --serve-args, not both")
	case o.replicas > 1 && o.postgres == "" && !ownStore:
		return errors.New("--replicas above 1 needs a store the replicas share: set --postgres, or --serve-args \"--store postgres://…\"")
	}
	return nil
}

// hasStoreFlag reports whether serve's extra arguments set --store.
func hasStoreFlag(args string) bool {
	for _, a := range strings.Fields(args) {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "store" {
			return true
		}
	}
	return false
}

// fleet is the set of servers one run posts to: those named by --url, or
// the serve children it started with their stub provider and database.
type fleet struct {
	urls    []string          // webhook URL of each replica
	serves  []*benchkit.Serve // the children; empty with --url
	cleanup []func()          // run in reverse order by stop
}

// startFleet starts the run's servers, each with its own data directory
// and log under the run's folder of --out. On PostgreSQL they share one
// store, and with --postgres a database created for this run.
func startFleet(ctx context.Context, o *options, rate, run int) (_ *fleet, err error) {
	f := &fleet{}
	if len(o.urls) > 0 {
		for _, u := range o.urls {
			f.urls = append(f.urls, u+"/webhooks/retell")
		}
		return f, nil
	}
	defer func() {
		if err != nil {
			f.stop()
		}
	}()

	dir := filepath.Join(o.outDir, fmt.Sprintf("rate%d-run%d", rate, run))
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}

	serve := o.serve
	if o.postgres != "" {
		db, err := benchkit.CreateDatabase(ctx, o.postgres, "callcat_loadgen")
		if err != nil {
			return nil, err
		}
		f.cleanup = append(f.cleanup, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := db.Drop(ctx); err != nil {
				log.Printf("rate=%d run=%d: %v", rate, run, err)
			}
		})
		serve.ExtraArgs += " --store " + db.URL
	}

	stub, stopStub, err := benchkit.ServeStub()
	if err != nil {
		return nil, err
	}
	f.cleanup = append(f.cleanup, stopStub)

	for k := range o.replicas {
		replicaDir := dir
		if o.replicas > 1 {
			replicaDir = filepath.Join(dir, fmt.Sprintf("replica%d", k+1))
			if err := os.MkdirAll(replicaDir, 0o755); err != nil {
				return nil, err
			}
		}
		srv, err := benchkit.StartServe(ctx, serve, replicaDir, apiKey, stub, 2*o.calls, 1000)
		if err != nil {
			return nil, fmt.Errorf("replica %d: %w", k+1, err)
		}
		f.serves = append(f.serves, srv)
		f.cleanup = append(f.cleanup, func() { srv.Stop(15 * time.Second) })
		f.urls = append(f.urls, srv.URL()+"/webhooks/retell")
	}
	return f, nil
}

// stop stops the children and the stub provider, then drops the database.
func (f *fleet) stop() {
	for i := len(f.cleanup) - 1; i >= 0; i-- {
		f.cleanup[i]()
	}
	f.cleanup = nil
}

// cpuSample is one reading of the CPU counters that a run reports.
type cpuSample struct {
	at       time.Time
	serves   []benchkit.ProcSample
	postgres float64 // seconds, every process named postgres
	loadgen  float64 // seconds, this process
	busy     float64 // seconds, the whole machine
}

func sampleCPU(f *fleet) cpuSample {
	s := cpuSample{at: time.Now()}
	for _, srv := range f.serves {
		p, _ := benchkit.ReadProc(srv.PID())
		s.serves = append(s.serves, p)
	}
	s.postgres, _, _ = benchkit.CommandCPU("postgres")
	if self, err := benchkit.ReadProc(os.Getpid()); err == nil {
		s.loadgen = self.CPUSeconds
	}
	s.busy, _, _ = benchkit.MachineCPU()
	return s
}

func measure(ctx context.Context, o *options, bodies *benchkit.Transcripts, rate, run int) (result, error) {
	r := result{Rate: rate, Run: run, Replicas: o.replicas}
	f, err := startFleet(ctx, o, rate, run)
	if err != nil {
		return r, err
	}
	defer f.stop()

	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        o.maxInFlight,
			MaxIdleConnsPerHost: o.maxInFlight,
			MaxConnsPerHost:     o.maxInFlight,
		},
	}
	defer client.CloseIdleConnections()

	runID := uint32(time.Now().UnixNano())
	p := newPool(o, bodies, runID)
	pick := rand.New(rand.NewPCG(o.seed+1, uint64(runID)))
	total := int(float64(rate) * o.duration.Seconds())
	latencies := make([]time.Duration, total)
	targets := make([]int, total)
	sizes := make([]int, 0, total)
	errs := make([]error, total)
	slots := make(chan struct{}, o.maxInFlight)
	var wg sync.WaitGroup

	c0 := sampleCPU(f)
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
		if len(f.urls) > 1 {
			targets[i] = pick.IntN(len(f.urls))
		}
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
			errs[i] = benchkit.PostWebhook(client, f.urls[targets[i]], apiKey, body)
			latencies[i] = time.Since(due)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	c1 := sampleCPU(f)

	var ok []time.Duration
	perTarget := make([][]time.Duration, len(f.urls))
	perSecond := make([][]time.Duration, int(math.Ceil(o.duration.Seconds())))
	if len(f.urls) > 1 {
		r.PerReplica = make([]replicaResult, len(f.urls))
	}
	for i, err := range errs {
		if r.PerReplica != nil {
			r.PerReplica[targets[i]].Sent++
		}
		if err != nil {
			if r.Errors < 3 {
				log.Printf("rate=%d: request %d: %v", rate, i, err)
			}
			r.Errors++
			if r.PerReplica != nil {
				r.PerReplica[targets[i]].Errors++
			}
			continue
		}
		ok = append(ok, latencies[i])
		perTarget[targets[i]] = append(perTarget[targets[i]], latencies[i])
		second := min(i/rate, len(perSecond)-1)
		perSecond[second] = append(perSecond[second], latencies[i])
	}
	for _, l := range perSecond {
		r.P99BySecond = append(r.P99BySecond, float64(benchkit.Summarize(l).P99)/float64(time.Millisecond))
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
	r.Pass = r.Errors == 0 && r.P99ms < 25

	window := c1.at.Sub(c0.at).Seconds()
	r.PostgresCores = (c1.postgres - c0.postgres) / window
	r.LoadgenCores = (c1.loadgen - c0.loadgen) / window
	r.MachineCores = (c1.busy - c0.busy) / window
	for k, url := range f.urls {
		var cores, rss float64
		if k < len(c1.serves) {
			cores = (c1.serves[k].CPUSeconds - c0.serves[k].CPUSeconds) / window
			rss = float64(c1.serves[k].RSSBytes) / (1 << 20)
			r.ServerCores += cores
			r.RSSMiB += rss
		}
		if r.PerReplica != nil {
			t := &r.PerReplica[k]
			t.Replica, t.URL, t.Cores, t.RSSMiB = k+1, strings.TrimSuffix(url, "/webhooks/retell"), cores, rss
			t.P99ms = float64(benchkit.Summarize(perTarget[k]).P99) / float64(time.Millisecond)
		}
	}
	return r, nil
}
