package tracker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/store/sqlite"
	"github.com/callcat/callcat/internal/stream"
)

// growingBodies returns get-call bodies of one live call taken every few
// seconds: body k holds the first k+1 transcript items of the four-minute
// fixture call, with status ongoing and no end fields.
func growingBodies(tb testing.TB) [][]byte {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "retell", "long_call", "get_call_ended_analyzed.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var call map[string]json.RawMessage
	if err := json.Unmarshal(data, &call); err != nil {
		tb.Fatal(err)
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(call["transcript_with_tool_calls"], &items); err != nil {
		tb.Fatal(err)
	}
	for _, key := range []string{"end_timestamp", "duration_ms", "disconnection_reason", "call_analysis",
		"recording_url", "recording_multi_channel_url", "public_log_url", "latency", "llm_token_usage", "call_cost", "transcript"} {
		delete(call, key)
	}
	call["call_status"] = json.RawMessage(`"ongoing"`)

	var bodies [][]byte
	for k := 1; k <= len(items); k++ {
		var utterances []map[string]json.RawMessage
		for _, it := range items[:k] {
			if role := string(it["role"]); role == `"agent"` || role == `"user"` {
				utterances = append(utterances, it)
			}
		}
		call["transcript_with_tool_calls"], _ = json.Marshal(items[:k])
		call["transcript_object"], _ = json.Marshal(utterances)
		body, err := json.Marshal(call)
		if err != nil {
			tb.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	return bodies
}

// pollRig is a tracker polling calls from an httptest provider into a real
// SQLite store, driven one poll at a time without Run.
type pollRig struct {
	tracker *Tracker
	calls   []*trackedCall
	// next returns the body the provider sends for callID's next poll; with
	// advance it also counts the poll.
	next func(callID string, advance bool) []byte
}

// newPollRig tracks calls whose get-call bodies body returns for a call id
// and the poll number of that call.
func newPollRig(tb testing.TB, calls int, body func(callID string, n int) []byte) *pollRig {
	var mu sync.Mutex // guards counts: polls made per call
	counts := map[string]int{}
	next := func(id string, advance bool) []byte {
		mu.Lock()
		defer mu.Unlock()
		b := body(id, counts[id])
		if advance {
			counts[id]++
		}
		return b
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(next(strings.TrimPrefix(r.URL.Path, "/v2/get-call/"), true))
	}))
	tb.Cleanup(srv.Close)

	client, err := retell.NewClient(retell.ClientConfig{BaseURL: srv.URL, APIKey: "key_bench", RequestsPerSecond: 1e9})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(client.Close)
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "callcat.db"), sqlite.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	hub, err := stream.NewHub(stream.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(hub.Close)
	tr, err := New(db, hub, client, Config{MaxTracked: calls})
	if err != nil {
		tb.Fatal(err)
	}

	rig := &pollRig{tracker: tr, next: next}
	for i := range calls {
		id := fmt.Sprintf("call_bench%06d", i)
		if err := tr.Track(id); err != nil {
			tb.Fatal(err)
		}
		rig.calls = append(rig.calls, tr.calls[id])
	}
	return rig
}

// benchPoll polls the rig's calls round robin and reports the get-call
// bytes decoded per second of the benchmark loop.
func benchPoll(b *testing.B, calls int, body func(callID string, n int) []byte) {
	rig := newPollRig(b, calls, body)
	var bytesRead int64
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c := rig.calls[i%calls]
		bytesRead += int64(len(rig.next(c.id, false)))
		rig.tracker.poll(ctx, c)
	}
	b.ReportMetric(float64(bytesRead)/b.Elapsed().Seconds()/1e6, "MB/s")
}

// Allocation ceiling of one poll whose result equals the last one stored,
// for a 40-item transcript of about 37 KB. It counts the httptest provider's
// allocations too, because it runs in the test's process. Go 1.26.8 on
// linux/amd64 measured about 530 (go test -run PollUnchangedAllocs -v
// ./internal/tracker); storing the result as well cost about 1150.
const maxAllocsPollUnchanged = 600

func TestPollUnchangedAllocs(t *testing.T) {
	body := growingBodies(t)[40]
	rig := newPollRig(t, 1, func(string, int) []byte { return body })
	ctx := context.Background()
	c := rig.calls[0]
	rig.tracker.poll(ctx, c) // stores the call

	allocs := testing.AllocsPerRun(50, func() { rig.tracker.poll(ctx, c) })
	t.Logf("%.0f allocs per unchanged poll", allocs)
	if allocs > maxAllocsPollUnchanged {
		t.Fatalf("allocs=%.0f, want at most %d", allocs, maxAllocsPollUnchanged)
	}
}

// BenchmarkPollGrowing polls 50 live calls whose transcripts grow by one
// item per poll, each through the whole four-minute fixture call, as the
// worst-case poll does: every result changes the stored transcript.
func BenchmarkPollGrowing(b *testing.B) {
	bodies := growingBodies(b)
	benchPoll(b, 50, func(callID string, n int) []byte {
		// Calls start at different points so the sizes mix.
		var offset int
		fmt.Sscanf(strings.TrimPrefix(callID, "call_bench"), "%d", &offset)
		return bodies[(offset+n)%len(bodies)]
	})
}

// BenchmarkPollUnchanged polls 50 live calls whose get-call returns the
// same mid-call transcript every time.
func BenchmarkPollUnchanged(b *testing.B) {
	bodies := growingBodies(b)
	benchPoll(b, 50, func(string, int) []byte { return bodies[len(bodies)/2] })
}
