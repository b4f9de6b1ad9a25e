package app_test

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/sim"
	"github.com/jackc/pgx/v5"
)

// freshDatabase creates a database for one test on the server named by
// CALLCAT_TEST_POSTGRES and drops it when the test ends. It skips the test
// when the variable is unset.
func freshDatabase(t *testing.T) string {
	t.Helper()
	admin := os.Getenv("CALLCAT_TEST_POSTGRES")
	if admin == "" {
		t.Skip("PostgreSQL tests skipped: set CALLCAT_TEST_POSTGRES=postgres://root@127.0.0.1:5432/test?sslmode=disable to run them")
	}

	var b [4]byte
	_, _ = crand.Read(b[:])
	name := "callcat_replicas_" + hex.EncodeToString(b[:])

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to %s: %v", admin, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})

	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("CALLCAT_TEST_POSTGRES is not a URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// replica is one running serve instance of a multi-replica test.
type replica struct {
	name string
	svc  *app.Service
	stop context.CancelFunc
	done chan error
}

func startReplica(t *testing.T, name, dsn, providerURL string, keepLeases bool) *replica {
	t.Helper()
	cfg := app.Config{
		Addr:          "127.0.0.1:0",
		DataDir:       t.TempDir(),
		Store:         dsn,
		ReplicaID:     name,
		RetellAPIKey:  fixtureKey,
		RetellBaseURL: providerURL,
		Logger:        testLogger(t),
	}
	cfg.Tracker.PollInterval = 200 * time.Millisecond
	cfg.Tracker.ReconcileInterval = time.Second
	cfg.Tracker.BackoffMin = 20 * time.Millisecond
	cfg.Tracker.BackoffMax = 200 * time.Millisecond
	cfg.Tracker.LeaseTTL = 2 * time.Second
	cfg.Tracker.LeaseRenewInterval = 500 * time.Millisecond
	cfg.Tracker.KeepLeasesOnStop = keepLeases
	cfg.Client.RequestsPerSecond = 2000
	cfg.Client.MaxInFlight = 16
	cfg.Client.Header = http.Header{sim.ReplicaHeader: {name}}

	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{name: name, stop: cancel, done: make(chan error, 1)}
	ready := make(chan *app.Service, 1)
	go func() { r.done <- app.Serve(ctx, cfg, func(s *app.Service) { ready <- s }) }()
	select {
	case r.svc = <-ready:
	case err := <-r.done:
		cancel()
		t.Fatalf("replica %s failed to start: %v", name, err)
	case <-time.After(15 * time.Second):
		cancel()
		t.Fatalf("replica %s did not start", name)
	}
	t.Cleanup(r.kill)
	return r
}

// kill stops the replica and waits for it; with keepLeases set at start its
// leases stay in the database as after a crash.
func (r *replica) kill() {
	r.stop()
	if r.done != nil {
		<-r.done
		r.done = nil
	}
}

// spreader forwards each webhook to a replica picked at random.
type spreader struct {
	mu      sync.Mutex
	proxies []*httputil.ReverseProxy
	rng     *rand.Rand
}

func (s *spreader) set(replicas []*replica) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proxies = nil
	for _, r := range replicas {
		u, _ := url.Parse(r.svc.URL())
		s.proxies = append(s.proxies, httputil.NewSingleHostReverseProxy(u))
	}
}

func (s *spreader) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if len(s.proxies) == 0 {
		s.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	p := s.proxies[s.rng.IntN(len(s.proxies))]
	s.mu.Unlock()
	p.ServeHTTP(w, r)
}

// TestReplicas runs three replicas on one PostgreSQL database against one
// simulator with 200 calls whose webhooks land on a random replica. Midway
// one replica dies without releasing its leases and the test cuts every
// LISTEN connection. An SSE client on replica A follows every call, so it
// receives events that B and C stored; it must get each event once, in order.
func TestReplicas(t *testing.T) {
	dsn := freshDatabase(t)
	const calls = 200

	spread := &spreader{rng: rand.New(rand.NewPCG(5, 6))}
	hooks := httptest.NewServer(spread)
	t.Cleanup(hooks.Close)

	s, err := sim.New(sim.Config{
		APIKey: fixtureKey, WebhookURL: hooks.URL + "/webhooks/retell",
		Calls: calls, TotalCalls: calls, CallLength: 30 * time.Second, Speed: 6,
		PushTranscripts: true, LiveTranscript: true, NotConnectedRatio: 0.05,
		AnalysisDelay: time.Second, Seed: 21, RequestLog: 4096,
	})
	if err != nil {
		t.Fatal(err)
	}
	provider := httptest.NewServer(s.Handler())
	t.Cleanup(provider.Close)

	a := startReplica(t, "replica-a", dsn, provider.URL, false)
	b := startReplica(t, "replica-b", dsn, provider.URL, false)
	c := startReplica(t, "replica-c", dsn, provider.URL, true)
	spread.set([]*replica{a, b, c})

	followCtx, stopFollowing := context.WithCancel(context.Background())
	defer stopFollowing()
	sm := &simulation{svc: a.svc, sim: s}
	wait := sm.followAll(followCtx, t)

	simDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		simDone <- s.Run(ctx)
	}()

	// Kill replica C once calls are well under way, leaving its leases.
	waitFor(t, time.Minute, "a third of the calls to end", func() bool { return s.Stats().CallsEnded >= calls/3 })
	spread.set([]*replica{a, b})
	killedAt := time.Now()
	c.kill()

	// Cut every LISTEN connection; the replicas reconnect and resync.
	dropListeners(t, dsn)

	if err := <-simDone; err != nil {
		t.Fatalf("simulator: %v", err)
	}
	waitFor(t, 20*time.Second, "replicas A and B to track no call", func() bool {
		return a.svc.Tracker.Tracked() == 0 && b.svc.Tracker.Tracked() == 0
	})
	time.Sleep(200 * time.Millisecond)
	stopFollowing()
	sm.checkCalls(t, wait(), calls)

	// Per call, polls come from one replica at a time: at most one handover
	// (after the kill), plus a last fetch by whichever replica received
	// call_ended.
	ttl, renew, poll := 2*time.Second, 500*time.Millisecond, 200*time.Millisecond
	for _, info := range s.Calls() {
		reqs := s.Requests(info.ID)

		// The final fetch: a replica with at most two requests for the
		// call, all in the last 1.5 s of its log, is the one that received
		// call_ended, not an owner.
		perReplica := map[string]int{}
		for _, r := range reqs {
			perReplica[r.Replica]++
		}
		var last time.Time
		if len(reqs) > 0 {
			last = reqs[len(reqs)-1].At
		}
		finalFetch := map[string]bool{}
		for name, n := range perReplica {
			if n > 2 {
				continue
			}
			late := true
			for _, r := range reqs {
				if r.Replica == name && last.Sub(r.At) > 1500*time.Millisecond {
					late = false
				}
			}
			finalFetch[name] = late
		}

		var runs []string
		for _, r := range reqs {
			if finalFetch[r.Replica] {
				continue
			}
			if len(runs) == 0 || runs[len(runs)-1] != r.Replica {
				runs = append(runs, r.Replica)
			}
		}
		seen := map[string]bool{}
		for _, name := range runs {
			if seen[name] {
				t.Errorf("call %s: replica %s polled again after another took over: %v", info.ID, name, runs)
				break
			}
			seen[name] = true
		}
		if len(runs) > 2 {
			t.Errorf("call %s: %d owners %v, want at most one handover", info.ID, len(runs), runs)
			for _, r := range reqs {
				t.Logf("  %s %s status %d", r.At.Format("15:04:05.000"), r.Replica, r.Status)
			}
			t.Logf("  killed at %s; call %+v", killedAt.Format("15:04:05.000"), info)
		}

		// A call C polled and that was still live at the kill is polled
		// by another replica within the lease TTL plus one renewal period.
		var lastByC, firstAfter time.Time
		for _, r := range reqs {
			if r.Replica == "replica-c" && r.At.Before(killedAt) {
				lastByC = r.At
			}
			if r.Replica != "replica-c" && r.At.After(killedAt) && firstAfter.IsZero() {
				firstAfter = r.At
			}
		}
		if lastByC.IsZero() || killedAt.Sub(lastByC) > 2*time.Second || firstAfter.IsZero() {
			continue
		}
		if gap := firstAfter.Sub(killedAt); gap > ttl+renew+poll+time.Second {
			t.Errorf("call %s: adopted %v after the kill, want within %v", info.ID, gap, ttl+renew+poll+time.Second)
		}
	}
}

// dropListeners terminates every LISTEN connection to the test database.
func dropListeners(t *testing.T, dsn string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)

	var n int
	err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'`).Scan(&n)
	if err != nil {
		t.Fatalf("terminate listeners: %v", err)
	}
	if n < 2 {
		t.Fatalf("terminated %d LISTEN connections, want one per live replica (2)", n)
	}
}
