package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/store/postgres"
)

// notification is one onEvent call of Listen.
type notification struct {
	callID string
	seq    int64
	origin string
}

// receive waits for the next value on ch, failing the test after 10s.
func receive[T any](t *testing.T, ch <-chan T, description string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", description)
		panic("unreachable")
	}
}

// TestListenReconnects receives notifications, loses the listener's
// connection to pg_terminate_backend, and receives again on the new one.
func TestListenReconnects(t *testing.T) {
	listener := openClean(t, postgres.Options{ReplicaID: "replica-a"})
	writer := openDB(t, postgres.Options{ReplicaID: "replica-b"})

	events := make(chan notification, 100)
	connected := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- listener.Listen(ctx,
			func(callID string, seq int64, origin string) {
				events <- notification{callID, seq, origin}
			},
			func() { connected <- struct{}{} })
	}()
	defer func() {
		cancel()
		if err := receive(t, done, "return of Listen"); err != nil {
			t.Errorf("Listen: %v", err)
		}
	}()
	receive(t, connected, "first connection")

	res := mustApply(t, writer, snapshotUpdate("call_listen", 2, 2, 1))
	want := notification{"call_listen", res.Call.LastSeq, "replica-b"}
	if got := receive(t, events, "notification"); got != want {
		t.Fatalf("notification=%+v, want %+v", got, want)
	}

	// No events, no notification: the next one to arrive is the later call's.
	mustApply(t, writer, snapshotUpdate("call_listen", 2, 2, 1))
	res = mustApply(t, listener, statusUpdate("call with spaces", callcat.StatusRegistered))
	want = notification{"call with spaces", res.Call.LastSeq, "replica-a"}
	if got := receive(t, events, "notification"); got != want {
		t.Fatalf("notification=%+v, want %+v", got, want)
	}

	pid := postgres.ListenerPID(listener)
	if pid == 0 {
		t.Fatalf("ListenerPID=0 after the first connection")
	}
	var terminated bool
	err := postgres.Pool(writer).QueryRow(t.Context(), `SELECT pg_terminate_backend($1)`, int32(pid)).Scan(&terminated)
	if err != nil {
		t.Fatalf("pg_terminate_backend: %v", err)
	}
	if !terminated {
		t.Fatalf("pg_terminate_backend(%d)=false, want true", pid)
	}

	receive(t, connected, "reconnection")
	if got := postgres.ListenerPID(listener); got == pid {
		t.Fatalf("ListenerPID=%d after reconnecting, want a new backend", got)
	}
	res = mustApply(t, writer, snapshotUpdate("call_listen", 4, 2, 2))
	want = notification{"call_listen", res.Call.LastSeq, "replica-b"}
	if got := receive(t, events, "notification after reconnecting"); got != want {
		t.Fatalf("notification=%+v, want %+v", got, want)
	}
}

func TestListenNilOnEvent(t *testing.T) {
	db := openDB(t, postgres.Options{})
	if err := db.Listen(t.Context(), nil, nil); err == nil {
		t.Fatalf("Listen(nil onEvent) err=nil, want an error")
	}
}
