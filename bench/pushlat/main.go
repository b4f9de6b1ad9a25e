// Command pushlat measures push latency: the time from sending a
// transcript_updated webhook to an SSE client receiving the utterance event
// it caused. It starts `callcat serve` as a child process, starts --calls
// live calls with call_started webhooks, opens one SSE stream per call, then
// sends each call a transcript_updated every --interval (spread evenly over
// the calls) for --duration. Each webhook's last utterance ends with a unique
// word, so the client matches the event to the send time it recorded, on the
// same clock. Latency covers signing, the HTTP request, verification, the
// store transaction, the hub and the SSE write.
//
//	go build -o callcat ./cmd/callcat && go run ./bench/pushlat --calls 1000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/callcat/callcat/bench/internal/benchkit"
)

const apiKey = "key_bench_pushlat_0123456789abcdef"

type options struct {
	serve    benchkit.ServeFlags
	calls    int
	runs     int
	interval time.Duration
	duration time.Duration
	fixture  string
	outDir   string
}

type result struct {
	Calls       int     `json:"calls"`
	Run         int     `json:"run"`
	Sent        int     `json:"sent"`
	Received    int     `json:"received"`
	SendErrors  int     `json:"send_errors"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	ServerCores float64 `json:"server_cpu_cores"`
	RSSMiB      float64 `json:"server_rss_mib"`
}

func main() {
	log.SetFlags(0)
	var o options
	fs := flag.NewFlagSet("pushlat", flag.ExitOnError)
	o.serve.Register(fs)
	fs.IntVar(&o.calls, "calls", 1000, "live calls, each with one SSE client")
	fs.IntVar(&o.runs, "runs", 1, "runs, each on a fresh server; the summary gives the median")
	fs.DurationVar(&o.interval, "interval", 3*time.Second, "time between two transcript_updated webhooks of one call")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "time webhooks are sent")
	fs.StringVar(&o.fixture, "fixture", benchkit.DefaultFixture, "provider payload the bodies are built from")
	fs.StringVar(&o.outDir, "out", "bench/out/pushlat", "`directory` for logs and results.json")
	fs.Parse(os.Args[1:])
	if o.calls < 1 || o.calls > 10_000 || o.runs < 1 || o.runs > 10 || o.interval <= 0 || o.duration <= 0 || o.duration > 10*time.Minute {
		log.Fatal("invalid --calls (1-10000), --runs (1-10), --interval or --duration (up to 10m)")
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		log.Fatal(err)
	}
	bodies, err := benchkit.LoadTranscripts(o.fixture, 60_000)
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var all []result
	var p50, p99 []float64
	for run := 1; run <= o.runs; run++ {
		r, err := measure(ctx, &o, bodies, run)
		if err != nil {
			log.Fatalf("run %d: %v", run, err)
		}
		fmt.Printf("calls=%d run=%d sent=%d received=%d send_errors=%d p50=%.2fms p99=%.2fms max=%.2fms server_cpu=%.2f rss=%.0fMiB\n",
			r.Calls, r.Run, r.Sent, r.Received, r.SendErrors, r.P50ms, r.P99ms, r.MaxMs, r.ServerCores, r.RSSMiB)
		all = append(all, r)
		p50 = append(p50, r.P50ms)
		p99 = append(p99, r.P99ms)
	}
	if o.runs > 1 {
		fmt.Printf("median calls=%d p50=%.2fms p99=%.2fms\n", o.calls, benchkit.Median(p50), benchkit.Median(p99))
	}
	out, _ := json.MarshalIndent(all, "", "  ")
	if err := os.WriteFile(filepath.Join(o.outDir, "results.json"), out, 0o644); err != nil {
		log.Fatal(err)
	}
}

// latencyLog matches received events to send times.
type latencyLog struct {
	mu        sync.Mutex
	sent      map[string]time.Time // by tail word
	latencies []time.Duration
}

func (l *latencyLog) sending(tail string) {
	l.mu.Lock()
	l.sent[tail] = time.Now()
	l.mu.Unlock()
}

// received records the event if its content ends with a pending tail.
func (l *latencyLog) received(ev benchkit.Event) {
	if ev.Type != "utterance" {
		return
	}
	var data struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		return
	}
	tail := data.Content[strings.LastIndexByte(data.Content, ' ')+1:]
	l.mu.Lock()
	defer l.mu.Unlock()
	if at, ok := l.sent[tail]; ok {
		l.latencies = append(l.latencies, ev.At.Sub(at))
		delete(l.sent, tail)
	}
}

func measure(ctx context.Context, o *options, bodies *benchkit.Transcripts, run int) (result, error) {
	r := result{Calls: o.calls, Run: run}
	dir := filepath.Join(o.outDir, fmt.Sprintf("calls%d-run%d", o.calls, run))
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	stub, stopStub, err := benchkit.ServeStub()
	if err != nil {
		return r, err
	}
	defer stopStub()
	srv, err := benchkit.StartServe(ctx, o.serve, dir, apiKey, stub, 2*o.calls, o.calls+100)
	if err != nil {
		return r, err
	}
	defer srv.Stop(15 * time.Second)
	webhookURL := srv.URL() + "/webhooks/retell"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()

	// Start the calls and open their streams.
	runID := uint32(time.Now().UnixNano())
	ids := make([]string, o.calls)
	for i := range ids {
		ids[i] = benchkit.CallID(runID, i)
		if err := benchkit.PostWebhook(client, webhookURL, apiKey, benchkit.CallStartedBody(ids[i])); err != nil {
			return r, fmt.Errorf("call_started: %w", err)
		}
	}
	streamCtx, closeStreams := context.WithCancel(ctx)
	var streams sync.WaitGroup
	defer func() {
		closeStreams()
		streams.Wait()
	}()
	lat := &latencyLog{sent: make(map[string]time.Time)}
	sseClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.calls}}
	for _, id := range ids {
		streams.Add(1)
		err := benchkit.Subscribe(streamCtx, sseClient, srv.URL()+"/v1/calls/"+id+"/stream", lat.received, func(error) { streams.Done() })
		if err != nil {
			streams.Done()
			return r, err
		}
	}

	// Send: webhook k goes to call k mod calls, every interval/calls.
	rng := rand.New(rand.NewPCG(uint64(runID), 1))
	items := make([]int, o.calls)
	for i := range items {
		items[i] = bodies.ItemsFor(2_000) + rng.IntN(bodies.ItemsFor(30_000))
	}
	step := o.interval / time.Duration(o.calls)
	total := int(o.duration / step)
	s0, _ := benchkit.ReadProc(srv.PID())
	start := time.Now()
	var sends sync.WaitGroup
	var errMu sync.Mutex
	slots := make(chan struct{}, 64)
	for k := range total {
		if d := time.Until(start.Add(time.Duration(k) * step)); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		call := k % o.calls
		items[call]++
		tail := fmt.Sprintf("zq%d", k)
		body := bodies.Body(ids[call], items[call], " "+tail)
		slots <- struct{}{}
		sends.Add(1)
		go func() {
			defer sends.Done()
			defer func() { <-slots }()
			lat.sending(tail)
			if err := benchkit.PostWebhook(client, webhookURL, apiKey, body); err != nil {
				errMu.Lock()
				if r.SendErrors == 0 {
					log.Printf("webhook: %v", err)
				}
				r.SendErrors++
				errMu.Unlock()
			}
		}()
	}
	sends.Wait()
	s1, _ := benchkit.ReadProc(srv.PID())

	// Give the last events time to arrive.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		lat.mu.Lock()
		pending := len(lat.sent)
		lat.mu.Unlock()
		if pending == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	lat.mu.Lock()
	sum := benchkit.Summarize(lat.latencies)
	lat.mu.Unlock()
	r.Sent = total
	r.Received = sum.Count
	r.P50ms = float64(sum.P50) / float64(time.Millisecond)
	r.P99ms = float64(sum.P99) / float64(time.Millisecond)
	r.MaxMs = float64(sum.Max) / float64(time.Millisecond)
	r.ServerCores = (s1.CPUSeconds - s0.CPUSeconds) / s1.At.Sub(s0.At).Seconds()
	r.RSSMiB = float64(s1.RSSBytes) / (1 << 20)
	return r, nil
}
