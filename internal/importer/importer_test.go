package importer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/importer"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/sim"
	"github.com/callcat/callcat/internal/store/sqlite"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const key = "key_import_test"

// finishedSim runs n calls to their end and returns the simulator.
func finishedSim(t *testing.T, n int) *sim.Sim {
	t.Helper()
	s, err := sim.New(sim.Config{APIKey: key, Calls: n, TotalCalls: n, CallLength: 20 * time.Second, Speed: 100,
		NotConnectedRatio: 0.2, AnalysisDelay: 100 * time.Millisecond, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// listLog wraps the simulator's API: it records each list-calls request
// body and fails the list request numbered failAt (1-based; 0 never).
type listLog struct {
	mu     sync.Mutex
	bodies []string
	failAt int
	next   http.Handler
}

func (l *listLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v3/list-calls" {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		l.mu.Lock()
		l.bodies = append(l.bodies, string(body))
		n := len(l.bodies)
		l.mu.Unlock()
		if n == l.failAt {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"status":"error","message":"injected"}`))
			return
		}
	}
	l.next.ServeHTTP(w, r)
}

func newClient(t *testing.T, h http.Handler) *retell.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := retell.NewClient(retell.ClientConfig{BaseURL: srv.URL, APIKey: key, RequestsPerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestImportResumes(t *testing.T) {
	const calls = 12
	s := finishedSim(t, calls)
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "callcat.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	opts := importer.Options{StateFile: filepath.Join(dir, "import.state"), PageSize: 5, Concurrency: 3}

	// The second page fails: the first run stops after one page.
	log := &listLog{failAt: 2, next: s.Handler()}
	first, err := importer.Run(context.Background(), newClient(t, log), db, opts)
	if err == nil {
		t.Fatalf("first run succeeded, want the injected list failure")
	}
	if first.Imported != 5 {
		t.Fatalf("first run imported %d, want 5", first.Imported)
	}

	// The second run continues from the saved page, not from the start.
	log.mu.Lock()
	log.failAt = 0
	log.bodies = nil
	log.mu.Unlock()
	second, err := importer.Run(context.Background(), newClient(t, log), db, opts)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if got := first.Imported + second.Imported; got != calls {
		t.Fatalf("imported %d in all, want %d", got, calls)
	}
	var req struct {
		PaginationKey string `json:"pagination_key"`
	}
	json.Unmarshal([]byte(log.bodies[0]), &req)
	if req.PaginationKey == "" {
		t.Fatalf("second run listed from the first page again")
	}

	for _, c := range s.Calls() {
		stored, err := db.Call(context.Background(), c.ID)
		if err != nil {
			t.Fatalf("call %s: %v", c.ID, err)
		}
		if string(stored.Status) != c.Status {
			t.Errorf("call %s: status=%q, want %q", c.ID, stored.Status, c.Status)
		}
		utts, err := db.Transcript(context.Background(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got := callcat.TranscriptText(utts); got != c.FinalTranscript {
			t.Errorf("call %s: transcript=%q\nwant %q", c.ID, got, c.FinalTranscript)
		}
	}

	// A third run finds the import complete and asks nothing.
	log.mu.Lock()
	log.bodies = nil
	log.mu.Unlock()
	if _, err := importer.Run(context.Background(), newClient(t, log), db, opts); err != nil {
		t.Fatal(err)
	}
	if len(log.bodies) != 0 {
		t.Fatalf("complete import listed %d pages again", len(log.bodies))
	}
}

func TestImportTwiceSkips(t *testing.T) {
	s := finishedSim(t, 4)
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "callcat.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	client := newClient(t, s.Handler())

	if _, err := importer.Run(context.Background(), client, db, importer.Options{}); err != nil {
		t.Fatal(err)
	}
	again, err := importer.Run(context.Background(), client, db, importer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Imported != 0 || again.Skipped != 4 {
		t.Fatalf("second import: imported=%d skipped=%d, want 0 and 4", again.Imported, again.Skipped)
	}
}
