// Command ssefan measures SSE fan-out: the server memory each open stream
// costs and how fast one event reaches every subscriber. It starts `callcat
// serve` as a child process and starts --calls live calls with call_started
// webhooks. It reads the server's RSS and Go heap, opens --subscribers
// streams, spread evenly over the calls or all on one call with --one-call,
// and reads the memory again. Then it sends --events transcript_updated
// webhooks, each ending its last utterance with a unique word, and records
// when every subscriber received the matching utterance event.
//
// Memory per subscriber is the growth of RSS (and of the Go heap in use)
// divided by the subscribers. The client keeps 10,000 sockets open, so raise
// the open-file limit first (ulimit -n 20000); serve inherits it.
//
//	go build -o callcat ./cmd/callcat && go run ./bench/ssefan --subscribers 10000 --calls 1000
//	go run ./bench/ssefan --subscribers 10000 --one-call
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/callcat/callcat/bench/internal/benchkit"
)

const apiKey = "key_bench_ssefan_0123456789abcdef"

type options struct {
	serve       benchkit.ServeFlags
	subscribers int
	calls       int
	oneCall     bool
	events      int
	eventGap    time.Duration
	fixture     string
	outDir      string
}

type result struct {
	Subscribers      int     `json:"subscribers"`
	Calls            int     `json:"calls"`
	Connected        int     `json:"connected"`
	RSSBeforeMiB     float64 `json:"rss_before_mib"`
	RSSAfterMiB      float64 `json:"rss_after_mib"`
	RSSPerSubKiB     float64 `json:"rss_per_subscriber_kib"`
	HeapPerSubKiB    float64 `json:"heap_inuse_per_subscriber_kib"`
	StackPerSubKiB   float64 `json:"stack_inuse_per_subscriber_kib"`
	GoroutinesPerSub float64 `json:"goroutines_per_subscriber"`
	Deliveries       int     `json:"deliveries"`
	Expected         int     `json:"expected_deliveries"`
	P50ms            float64 `json:"p50_ms"`
	P99ms            float64 `json:"p99_ms"`
	MaxMs            float64 `json:"max_ms"`
}

func main() {
	log.SetFlags(0)
	var o options
	fs := flag.NewFlagSet("ssefan", flag.ExitOnError)
	o.serve.Register(fs)
	fs.IntVar(&o.subscribers, "subscribers", 10_000, "SSE streams to open")
	fs.IntVar(&o.calls, "calls", 1000, "live calls the streams are spread over")
	fs.BoolVar(&o.oneCall, "one-call", false, "open every stream on one call")
	fs.IntVar(&o.events, "events", 20, "webhooks sent after the streams are open, each one event for its call's subscribers")
	fs.DurationVar(&o.eventGap, "event-gap", 250*time.Millisecond, "time between two of those webhooks")
	fs.StringVar(&o.fixture, "fixture", benchkit.DefaultFixture, "provider payload the bodies are built from")
	fs.StringVar(&o.outDir, "out", "bench/out/ssefan", "`directory` for logs and results.json")
	fs.Parse(os.Args[1:])
	if o.oneCall {
		o.calls = 1
	}
	if o.subscribers < 1 || o.subscribers > 50_000 || o.calls < 1 || o.calls > o.subscribers || o.events < 1 || o.events > 1000 {
		log.Fatal("invalid --subscribers (1-50000), --calls (1 to --subscribers) or --events (1-1000)")
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		log.Fatal(err)
	}
	bodies, err := benchkit.LoadTranscripts(o.fixture, 20_000)
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := measure(ctx, &o, bodies)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("subscribers=%d calls=%d connected=%d rss=%.0f->%.0fMiB per_subscriber: rss=%.1fKiB heap=%.1fKiB stack=%.1fKiB goroutines=%.2f "+
		"deliveries=%d/%d p50=%.2fms p99=%.2fms max=%.2fms\n",
		r.Subscribers, r.Calls, r.Connected, r.RSSBeforeMiB, r.RSSAfterMiB, r.RSSPerSubKiB, r.HeapPerSubKiB, r.StackPerSubKiB, r.GoroutinesPerSub,
		r.Deliveries, r.Expected, r.P50ms, r.P99ms, r.MaxMs)
	out, _ := json.MarshalIndent(r, "", "  ")
	name := fmt.Sprintf("results-%dsubs-%dcalls.json", o.subscribers, o.calls)
	if err := os.WriteFile(filepath.Join(o.outDir, name), out, 0o644); err != nil {
		log.Fatal(err)
	}
}

// deliveries records when each subscriber received each event. Events are
// numbered by the k in their tail word "zq<k>", so a subscriber writes its
// receive time into its own slot without taking a lock.
type deliveries struct {
	sentAt   []time.Time   // by event number; written before the event is sent
	received [][]time.Time // by subscriber, then event number
	got      atomic.Int64  // deliveries so far
}

// receiver returns the event callback of subscriber i.
func (d *deliveries) receiver(i int) func(benchkit.Event) {
	return func(ev benchkit.Event) {
		if ev.Type != "utterance" {
			return
		}
		// The data ends with `…zq<k>"}`; reading the number directly
		// keeps the client cheaper than the server it measures.
		data := ev.Data
		end := bytes.LastIndexByte(data, '"')
		start := bytes.LastIndex(data, []byte(" zq"))
		if start < 0 || end < start {
			return
		}
		k, err := strconv.Atoi(string(data[start+3 : end]))
		if err != nil || k < 0 || k >= len(d.received[i]) {
			return
		}
		if d.received[i][k].IsZero() {
			d.received[i][k] = ev.At
			d.got.Add(1)
		}
	}
}

// latencies returns every delivery's latency.
func (d *deliveries) latencies() []time.Duration {
	var out []time.Duration
	for _, times := range d.received {
		for k, at := range times {
			if !at.IsZero() {
				out = append(out, at.Sub(d.sentAt[k]))
			}
		}
	}
	return out
}

func (d *deliveries) count() int { return int(d.got.Load()) }

func measure(ctx context.Context, o *options, bodies *benchkit.Transcripts) (result, error) {
	r := result{Subscribers: o.subscribers, Calls: o.calls}
	dir := filepath.Join(o.outDir, fmt.Sprintf("subs%d-calls%d", o.subscribers, o.calls))
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	stub, stopStub, err := benchkit.ServeStub()
	if err != nil {
		return r, err
	}
	defer stopStub()
	srv, err := benchkit.StartServe(ctx, o.serve, dir, apiKey, stub, 2*o.calls, o.subscribers+100)
	if err != nil {
		return r, err
	}
	defer srv.Stop(20 * time.Second)
	webhookURL := srv.URL() + "/webhooks/retell"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()

	runID := uint32(time.Now().UnixNano())
	ids := make([]string, o.calls)
	for i := range ids {
		ids[i] = benchkit.CallID(runID, i)
		if err := benchkit.PostWebhook(client, webhookURL, apiKey, benchkit.CallStartedBody(ids[i])); err != nil {
			return r, fmt.Errorf("call_started: %w", err)
		}
	}

	m0, s0, err := settledMemory(ctx, srv)
	if err != nil {
		return r, err
	}

	// Open the streams, 32 at a time.
	d := &deliveries{sentAt: make([]time.Time, o.events), received: make([][]time.Time, o.subscribers)}
	for i := range d.received {
		d.received[i] = make([]time.Time, o.events)
	}
	streamCtx, closeStreams := context.WithCancel(ctx)
	var streams sync.WaitGroup
	defer func() {
		closeStreams()
		streams.Wait()
	}()
	sseClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	var openErr error
	var openMu sync.Mutex
	var opening sync.WaitGroup
	slots := make(chan struct{}, 32)
	for i := range o.subscribers {
		slots <- struct{}{}
		opening.Add(1)
		go func() {
			defer opening.Done()
			defer func() { <-slots }()
			streams.Add(1)
			err := benchkit.Subscribe(streamCtx, sseClient, srv.URL()+"/v1/calls/"+ids[i%o.calls]+"/stream", d.receiver(i), func(error) { streams.Done() })
			openMu.Lock()
			defer openMu.Unlock()
			if err != nil {
				streams.Done()
				if openErr == nil {
					openErr = err
				}
				return
			}
			r.Connected++
		}()
	}
	opening.Wait()
	if openErr != nil {
		return r, fmt.Errorf("open stream %d of %d: %w", r.Connected+1, o.subscribers, openErr)
	}

	m1, s1, err := settledMemory(ctx, srv)
	if err != nil {
		return r, err
	}
	n := float64(r.Connected)
	r.RSSBeforeMiB = float64(s0.RSSBytes) / (1 << 20)
	r.RSSAfterMiB = float64(s1.RSSBytes) / (1 << 20)
	r.RSSPerSubKiB = float64(s1.RSSBytes-s0.RSSBytes) / n / 1024
	r.HeapPerSubKiB = (m1.Get("go_memstats_heap_inuse_bytes") - m0.Get("go_memstats_heap_inuse_bytes")) / n / 1024
	r.StackPerSubKiB = (m1.Get("go_memstats_stack_inuse_bytes") - m0.Get("go_memstats_stack_inuse_bytes")) / n / 1024
	r.GoroutinesPerSub = (m1.Get("go_goroutines") - m0.Get("go_goroutines")) / n

	// Send the events: webhook k grows call k mod calls by one item.
	items := make([]int, o.calls)
	for i := range items {
		items[i] = bodies.ItemsFor(2_000)
	}
	perCall := o.subscribers / o.calls
	for k := range o.events {
		call := k % o.calls
		items[call]++
		tail := fmt.Sprintf("zq%d", k)
		body := bodies.Body(ids[call], items[call], " "+tail)
		d.sentAt[k] = time.Now()
		if err := benchkit.PostWebhook(client, webhookURL, apiKey, body); err != nil {
			return r, fmt.Errorf("transcript_updated: %w", err)
		}
		r.Expected += perCall
		if o.subscribers%o.calls > call {
			r.Expected++
		}
		time.Sleep(o.eventGap)
	}

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && d.count() < r.Expected {
		time.Sleep(100 * time.Millisecond)
	}
	// Stop the readers before reading their slots.
	closeStreams()
	streams.Wait()
	sum := benchkit.Summarize(d.latencies())
	r.Deliveries = sum.Count
	r.P50ms = float64(sum.P50) / float64(time.Millisecond)
	r.P99ms = float64(sum.P99) / float64(time.Millisecond)
	r.MaxMs = float64(sum.Max) / float64(time.Millisecond)
	return r, nil
}

// settledMemory waits for the server to go quiet, then reads its metrics
// and /proc sample.
func settledMemory(ctx context.Context, srv *benchkit.Serve) (benchkit.Metrics, benchkit.ProcSample, error) {
	time.Sleep(2 * time.Second)
	m, err := srv.Metrics(ctx)
	if err != nil {
		return nil, benchkit.ProcSample{}, err
	}
	s, err := benchkit.ReadProc(srv.PID())
	return m, s, err
}
