package app_test

import (
	"context"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/sim"
)

// simulation is the service and the simulator wired to each other.
type simulation struct {
	svc *app.Service
	sim *sim.Sim
}

// startSimulation starts the service and a simulator whose webhooks go to
// it. The simulator's calls do not progress until runSim.
func startSimulation(t *testing.T, simCfg sim.Config, cfg app.Config) *simulation {
	t.Helper()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	simCfg.APIKey = fixtureKey
	simCfg.WebhookURL = "http://" + ln.Addr().String() + "/webhooks/retell"
	s, err := sim.New(simCfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	provider := httptest.NewServer(s.Handler())
	t.Cleanup(provider.Close)

	cfg.Listener = ln
	cfg.RetellBaseURL = provider.URL
	return &simulation{svc: startService(t, cfg), sim: s}
}

// run runs the simulator until every call is finished.
func (sm *simulation) run(t *testing.T, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := sm.sim.Run(ctx); err != nil {
		t.Fatalf("simulator: %v", err)
	}
}

// followAll starts an SSE follower for every call that appears in the API
// until ctx ends, and returns the followers by call id once they finished.
func (sm *simulation) followAll(ctx context.Context, t *testing.T) func() map[string]*transcriptFollower {
	var (
		mu        sync.Mutex
		followers = make(map[string]*transcriptFollower)
		wg        sync.WaitGroup
	)

	start := func(id string) {
		f := &transcriptFollower{}
		followers[id] = f
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := follow(ctx, sm.svc.URL(), id, f); err != nil {
				t.Errorf("follow %s: %v", id, err)
			}
		}()
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var list struct {
				Calls []callJSON `json:"calls"`
			}
			if err := getJSONCtx(ctx, sm.svc.URL()+"/v1/calls?status=all&limit=500", &list); err == nil {
				mu.Lock()
				for _, c := range list.Calls {
					if _, ok := followers[c.CallID]; !ok {
						start(c.CallID)
					}
				}
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	return func() map[string]*transcriptFollower {
		wg.Wait()
		return followers
	}
}

// checkCalls compares, for every simulated call, the simulator's final
// transcript with the stored one and with what the SSE follower assembled.
func (sm *simulation) checkCalls(t *testing.T, followers map[string]*transcriptFollower, wantCalls int) {
	t.Helper()

	calls := sm.sim.Calls()
	if len(calls) != wantCalls {
		t.Fatalf("simulated calls=%d, want %d", len(calls), wantCalls)
	}

	waitFor(t, 15*time.Second, "every call to leave tracking", func() bool {
		return sm.svc.Tracker.Tracked() == 0
	})

	for _, c := range calls {
		if !c.Ended {
			t.Errorf("call %s: simulator says not ended", c.ID)
			continue
		}

		var stored callJSON
		getJSON(t, sm.svc.URL()+"/v1/calls/"+c.ID, &stored)
		if stored.Status != c.Status {
			t.Errorf("call %s: status=%q, want %q", c.ID, stored.Status, c.Status)
		}

		text := getText(t, sm.svc.URL()+"/v1/calls/"+c.ID+"/transcript?format=text")
		if text != c.FinalTranscript {
			t.Errorf("call %s: stored transcript=%q\nwant %q", c.ID, text, c.FinalTranscript)
		}

		f, ok := followers[c.ID]
		if !ok {
			t.Errorf("call %s: never followed", c.ID)
			continue
		}
		if !f.ended {
			t.Errorf("call %s: stream ended without an ended event", c.ID)
		}
		if got := f.text(); got != c.FinalTranscript {
			t.Errorf("call %s: streamed transcript=%q\nwant %q", c.ID, got, c.FinalTranscript)
		}
	}
}

func TestEndToEnd(t *testing.T) {
	const calls = 50

	cases := []struct {
		name string
		sim  sim.Config
	}{
		{"PushOnly", sim.Config{PushTranscripts: true}},
		{"PollOnly", sim.Config{LiveTranscript: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			simCfg := tc.sim
			simCfg.Calls = calls
			simCfg.TotalCalls = calls
			simCfg.CallLength = 30 * time.Second
			simCfg.Speed = 15
			simCfg.NotConnectedRatio = 0.1
			simCfg.AnalysisDelay = time.Second
			simCfg.Seed = 7
			sm := startSimulation(t, simCfg, app.Config{})

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wait := sm.followAll(ctx, t)

			sm.run(t, 2*time.Minute)

			// Every stream closes by itself after its ended event; the
			// discovery loop stops with ctx.
			waitFor(t, 15*time.Second, "every call to leave tracking", func() bool {
				return sm.svc.Tracker.Tracked() == 0
			})
			time.Sleep(100 * time.Millisecond)
			cancel()
			sm.checkCalls(t, wait(), calls)

			// Each mode took the path it names.
			pushes := metricValue(t, sm.svc, "callcat_webhooks_total", map[string]string{"event": "transcript_updated", "outcome": "accepted"})
			polls := metricValue(t, sm.svc, "callcat_polls_total", map[string]string{"outcome": "ok"})
			if tc.sim.PushTranscripts && pushes == 0 {
				t.Errorf("push mode accepted no transcript_updated webhooks")
			}
			if !tc.sim.PushTranscripts && pushes != 0 {
				t.Errorf("poll mode accepted %v transcript_updated webhooks, want 0", pushes)
			}
			if polls == 0 {
				t.Errorf("no successful polls")
			}
		})
	}
}

// TestStreamResume disconnects a client mid-call, twice, and checks that
// after reconnecting with Last-Event-ID it receives every event exactly once
// and in order (the follower fails on any id that is not the last one + 1).
func TestStreamResume(t *testing.T) {
	sm := startSimulation(t, sim.Config{
		Calls: 1, TotalCalls: 1, CallLength: 40 * time.Second, Speed: 10, PushTranscripts: true, Seed: 3,
	}, app.Config{})

	simDone := make(chan struct{})
	go func() {
		defer close(simDone)
		sm.run(t, time.Minute)
	}()

	var id string
	waitFor(t, 10*time.Second, "the call to appear", func() bool {
		var list struct {
			Calls []callJSON `json:"calls"`
		}
		getJSON(t, sm.svc.URL()+"/v1/calls", &list)
		if len(list.Calls) > 0 {
			id = list.Calls[0].CallID
		}
		return id != ""
	})

	f := &transcriptFollower{}
	for cut := range 2 {
		// Follow until a few more events arrived, then drop the connection.
		target := f.seenCount() + 3
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- follow(ctx, sm.svc.URL(), id, f) }()
		waitFor(t, 20*time.Second, "events before cut", func() bool { return f.seenCount() >= target || f.isEnded() })
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if f.isEnded() {
			t.Fatalf("call ended before cut %d; lengthen it", cut)
		}
	}

	if err := follow(context.Background(), sm.svc.URL(), id, f); err != nil {
		t.Fatalf("final follow: %v", err)
	}
	<-simDone

	info, ok := sm.sim.Call(id)
	if !ok {
		t.Fatalf("simulator lost call %s", id)
	}
	if got := f.text(); got != info.FinalTranscript {
		t.Fatalf("resumed transcript=%q\nwant %q", got, info.FinalTranscript)
	}
	if !f.isEnded() {
		t.Fatalf("resumed stream has no ended event")
	}
}
