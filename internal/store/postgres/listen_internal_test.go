package postgres

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/ratelog"
)

func TestParsePayload(t *testing.T) {
	tests := []struct {
		payload string
		callID  string
		seq     int64
		origin  string
		ok      bool
	}{
		{"call_1 7 replica-a", "call_1", 7, "replica-a", true},
		{"call_1 7 ", "call_1", 7, "", true},
		{"call with spaces 12 r", "call with spaces", 12, "r", true},
		{"call_1 7", "", 0, "", false},
		{"call_1 x r", "", 0, "", false},
		{"call_1 0 r", "", 0, "", false},
		{" 7 r", "", 0, "", false},
		{"", "", 0, "", false},
	}
	for _, tc := range tests {
		callID, seq, origin, ok := parsePayload(tc.payload)
		if ok != tc.ok {
			t.Fatalf("parsePayload(%q) ok=%v, want %v", tc.payload, ok, tc.ok)
		}
		if callID != tc.callID || seq != tc.seq || origin != tc.origin {
			t.Fatalf("parsePayload(%q)=(%q, %d, %q), want (%q, %d, %q)",
				tc.payload, callID, seq, origin, tc.callID, tc.seq, tc.origin)
		}
	}
}

// retryCounter is a slog.Handler that reports every retry line.
type retryCounter struct {
	retries chan<- struct{}
}

func (h retryCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h retryCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h retryCounter) WithGroup(string) slog.Handler            { return h }

func (h retryCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "store listener failed; reconnecting" {
		select {
		case h.retries <- struct{}{}:
		default:
		}
	}
	return nil
}

// TestListenRetriesUntilCanceled points Listen at a port where no server
// runs: it must keep retrying and return nil once its context ends.
func TestListenRetriesUntilCanceled(t *testing.T) {
	cfg, err := pgx.ParseConfig("postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	retries := make(chan struct{}, 10)
	logger := slog.New(retryCounter{retries: retries})
	db := &DB{
		connConfig: cfg,
		logger:     logger,
		limited:    ratelog.New(logger, time.Nanosecond),
		timeout:    time.Second,
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- db.Listen(ctx, func(string, int64, string) {}, func() { t.Errorf("onReconnect called without a server") })
	}()
	for i := range 3 {
		select {
		case <-retries:
		case <-time.After(10 * time.Second):
			t.Fatalf("retry %d not logged within 10s", i+1)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Listen=%v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Listen did not return within 10s of the cancel")
	}
}

// TestListenPingsWhileQuiet shortens the ping interval so that the listener
// times out its wait and pings many times: the connection must survive, with
// no reconnect, and still deliver the next notification.
func TestListenPingsWhileQuiet(t *testing.T) {
	saved := listenPingInterval
	listenPingInterval = 10 * time.Millisecond
	defer func() { listenPingInterval = saved }()

	db, err := Open(t.Context(), testDSN, Options{ReplicaID: "replica-a"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	if _, err := db.pool.Exec(t.Context(), `DELETE FROM events WHERE call_id = 'call_quiet'`); err != nil {
		t.Fatalf("delete events: %v", err)
	}
	if _, err := db.pool.Exec(t.Context(), `DELETE FROM calls WHERE call_id = 'call_quiet'`); err != nil {
		t.Fatalf("delete call: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	connects := make(chan struct{}, 10)
	seqs := make(chan int64, 10)
	done := make(chan error, 1)
	go func() {
		done <- db.Listen(ctx,
			func(callID string, seq int64, _ string) {
				if callID == "call_quiet" {
					seqs <- seq
				}
			},
			func() { connects <- struct{}{} })
	}()
	defer func() {
		cancel()
		<-done
	}()

	select {
	case <-connects:
	case <-time.After(10 * time.Second):
		t.Fatalf("no connection within 10s")
	}
	// Quiet time for about 20 waits that time out, each followed by a ping.
	time.Sleep(200 * time.Millisecond)

	res, err := db.Apply(t.Context(), callcat.Update{Fields: callcat.CallFields{ID: "call_quiet", Status: callcat.StatusOngoing}})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	select {
	case seq := <-seqs:
		if seq != res.Call.LastSeq {
			t.Fatalf("seq=%d, want %d", seq, res.Call.LastSeq)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no notification within 10s")
	}
	if n := len(connects); n != 0 {
		t.Fatalf("%d reconnects during quiet time, want 0", n)
	}
}
