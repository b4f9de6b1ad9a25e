package replay_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/replay"
	"github.com/callcat/callcat/internal/retell"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const key = "key_replay_test"

// receiver verifies each webhook like callcat does and records its body.
type receiver struct {
	mu     sync.Mutex
	bodies [][]byte
	reject []byte // a body answered 400
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if _, err := retell.VerifySignature(body, r.Header.Get(retell.SignatureHeader), key, time.Now()); err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	rc.bodies = append(rc.bodies, body)
	rc.mu.Unlock()
	if bytes.Equal(body, rc.reject) {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func fixtures(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, name := range []string{"webhook_1_call_started.json", "webhook_2_transcript_updated.json", "webhook_6_call_ended.json"} {
		files = append(files, filepath.Join("../../testdata/retell/outbound", name))
	}
	return files
}

func TestReplayFileOrder(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	files := fixtures(t)
	rc.reject, _ = os.ReadFile(files[1])
	res, err := replay.Run(context.Background(), files, replay.Options{URL: srv.URL, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 3 || res.Accepted != 2 || res.Rejected != 1 {
		t.Fatalf("result=%+v, want 3 sent, 2 accepted, 1 rejected", res)
	}
	for i, name := range files {
		want, _ := os.ReadFile(name)
		if !bytes.Equal(rc.bodies[i], want) {
			t.Fatalf("body %d differs from %s: bytes must be sent verbatim", i, name)
		}
	}
}

func TestReplayTimeOrder(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	// Copies whose modification times run backwards from the given order.
	dir := t.TempDir()
	src := fixtures(t)
	var files []string
	base := time.Now().Add(-time.Hour)
	for i, name := range src {
		body, _ := os.ReadFile(name)
		dst := filepath.Join(dir, filepath.Base(name))
		os.WriteFile(dst, body, 0o600)
		mod := base.Add(time.Duration(len(src)-i) * time.Minute)
		if err := os.Chtimes(dst, mod, mod); err != nil {
			t.Fatal(err)
		}
		files = append(files, dst)
	}

	if _, err := replay.Run(context.Background(), files, replay.Options{URL: srv.URL, Key: key, Order: replay.OrderTime}); err != nil {
		t.Fatal(err)
	}
	for i := range files {
		want, _ := os.ReadFile(files[len(files)-1-i])
		if !bytes.Equal(rc.bodies[i], want) {
			t.Fatalf("body %d is not the %d-th oldest file", i, i+1)
		}
	}
}

func TestReplayWrongKeyRejected(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	res, err := replay.Run(context.Background(), fixtures(t)[:1], replay.Options{URL: srv.URL, Key: "key_other"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rejected != 1 {
		t.Fatalf("rejected=%d, want 1 for a body signed with another key", res.Rejected)
	}
}

func TestReplayBadInput(t *testing.T) {
	if _, err := replay.Run(context.Background(), []string{"/nonexistent/file.json"}, replay.Options{URL: "http://127.0.0.1:1", Key: key}); err == nil {
		t.Fatalf("missing file: no error")
	}
	if _, err := replay.Run(context.Background(), nil, replay.Options{URL: "http://127.0.0.1:1", Key: key, Order: "random"}); err == nil {
		t.Fatalf("bad order: no error")
	}
	if _, err := replay.Run(context.Background(), nil, replay.Options{}); err == nil {
		t.Fatalf("no URL or key: no error")
	}
}
