package benchkit

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/retell"
)

const exposition = `# HELP callcat_poll_lateness_seconds Time between a poll's scheduled and actual start.
# TYPE callcat_poll_lateness_seconds histogram
callcat_poll_lateness_seconds_bucket{le="0.1"} 90
callcat_poll_lateness_seconds_bucket{le="0.3"} 99
callcat_poll_lateness_seconds_bucket{le="1"} 100
callcat_poll_lateness_seconds_bucket{le="+Inf"} 100
callcat_polls_total{outcome="ok"} 7
callcat_polls_total{outcome="retry"} 3
go_goroutines 12
`

func TestMetricsParse(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("callcat_polls_total"); got != 10 {
		t.Errorf("Sum=%v, want 10", got)
	}
	if got := m.Get(`callcat_polls_total{outcome="ok"}`); got != 7 {
		t.Errorf("Get ok=%v, want 7", got)
	}
	if got := m.Get("go_goroutines"); got != 12 {
		t.Errorf("go_goroutines=%v, want 12", got)
	}
}

func TestHistogramQuantile(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	h := m.Histogram("callcat_poll_lateness_seconds", "")
	if len(h) != 4 || !math.IsInf(h[3].UpperBound, 1) {
		t.Fatalf("buckets=%v, want 4 ending at +Inf", h)
	}
	if got := Quantile(h, 0.5); got != 0.1 {
		t.Errorf("p50=%v, want 0.1", got)
	}
	if got := Quantile(h, 0.99); got != 0.3 {
		t.Errorf("p99=%v, want 0.3", got)
	}
	if got := FractionAbove(h, 0.3); math.Abs(got-0.01) > 1e-9 {
		t.Errorf("share above 0.3=%v, want 0.01", got)
	}
}

func TestHistogramDeltaCountsWindow(t *testing.T) {
	before := []Bucket{{0.1, 50}, {0.3, 50}, {math.Inf(1), 50}}
	after := []Bucket{{0.1, 60}, {0.3, 70}, {math.Inf(1), 70}}
	d := HistogramDelta(before, after)
	if d[0].Count != 10 || d[2].Count != 20 {
		t.Fatalf("delta=%v, want 10 below 0.1 and 20 in all", d)
	}
	if got := Quantile(d, 0.99); got != 0.3 {
		t.Errorf("window p99=%v, want 0.3", got)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	d := make([]time.Duration, 100)
	for i := range d {
		d[i] = time.Duration(100-i) * time.Millisecond
	}
	l := Summarize(d)
	if l.P50 != 50*time.Millisecond || l.P99 != 99*time.Millisecond || l.Max != 100*time.Millisecond {
		t.Fatalf("summary=%v, want p50 50ms, p99 99ms, max 100ms", l)
	}
}

func loadFixture(t *testing.T) *Transcripts {
	t.Helper()
	tr, err := LoadTranscripts(filepath.Join("..", "..", "..", filepath.FromSlash(DefaultFixture)), 150_000)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestTranscriptsReachMaxSize(t *testing.T) {
	tr := loadFixture(t)
	if got := tr.Size(tr.Items()); got < 150_000 {
		t.Fatalf("largest body=%d bytes, want at least 150000", got)
	}
	n := tr.ItemsFor(10_000)
	if got := tr.Size(n); got < 10_000 || tr.Size(n-1) >= 10_000 {
		t.Fatalf("ItemsFor(10000)=%d gives %d bytes, want the first size at or above 10000", n, got)
	}
}

func TestBodyIsProviderWebhook(t *testing.T) {
	tr := loadFixture(t)
	body := tr.Body("call_0000000000000000000000001", 90, " zq7")
	if !json.Valid(body) {
		t.Fatalf("body is not valid JSON")
	}
	wh, err := retell.ParseWebhook(body)
	if err != nil {
		t.Fatal(err)
	}
	if wh.Event != "transcript_updated" || wh.Call.CallStatus != "ongoing" {
		t.Fatalf("event=%q status=%q, want transcript_updated ongoing", wh.Event, wh.Call.CallStatus)
	}
	utterances, ok := wh.Call.Utterances()
	if !ok || len(utterances) == 0 {
		t.Fatalf("no utterances in the body")
	}
	if last := utterances[len(utterances)-1].Content; !strings.HasSuffix(last, " zq7") {
		t.Fatalf("last utterance %q does not end with the tail", last)
	}
	// Items past the fixture's 80 repeat it later in time, so the last word
	// of the body ends after the fixture call's.
	words := utterances[len(utterances)-1].Words
	if end := words[len(words)-1].End; end < 240 {
		t.Fatalf("last word ends at %v s, want past the fixture's four minutes", end)
	}
}

func TestEndedBodyIsTerminal(t *testing.T) {
	tr := loadFixture(t)
	wh, err := retell.ParseWebhook(tr.EndedBody("call_0000000000000000000000002", 5))
	if err != nil {
		t.Fatal(err)
	}
	if wh.Event != "call_ended" || wh.Call.CallStatus != "ended" {
		t.Fatalf("event=%q status=%q, want call_ended ended", wh.Event, wh.Call.CallStatus)
	}
}

func TestParseStatCPU(t *testing.T) {
	// A backend's stat line has comm in parentheses, then the state and
	// the numeric fields, here with utime 150, stime 50, cutime 30 and
	// cstime 20 ticks.
	stat := []byte("4242 (postgres) S 2208 2208 2208 0 -1 4194560 900 0 0 0 150 50 30 20 20 0 1 0 100 226000000 3000 18446744073709551615")
	comm, seconds, ok := parseStatCPU(stat)
	if !ok {
		t.Fatal("parseStatCPU rejected a valid line")
	}
	if comm != "postgres" {
		t.Errorf("comm=%q, want postgres", comm)
	}
	if seconds != 2.5 {
		t.Errorf("seconds=%v, want 2.5 (250 ticks)", seconds)
	}

	// A command name may contain spaces and parentheses.
	comm, seconds, ok = parseStatCPU([]byte("7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 100 0 0 0 20 0 1 0 5 0 0 0"))
	if !ok || comm != "a) b" || seconds != 1 {
		t.Errorf("got %q %v %v, want \"a) b\" 1 true", comm, seconds, ok)
	}

	if _, _, ok := parseStatCPU([]byte("9 (short) S 1 2 3")); ok {
		t.Error("parseStatCPU accepted a line without the time fields")
	}
}

func TestCommandCPUSelf(t *testing.T) {
	self, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	_, n, err := CommandCPU(strings.TrimSpace(string(self)))
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 {
		t.Errorf("CommandCPU found %d processes named like this test binary, want at least 1", n)
	}
}

func TestLoopbackPostgresURL(t *testing.T) {
	for _, raw := range []string{
		"postgres://root@127.0.0.1:5432/postgres?sslmode=disable",
		"postgresql://root@localhost/postgres",
		"postgres://root@[::1]:5432/postgres",
		"postgres://root@127.0.0.2,127.0.0.1:5433/postgres",
		"postgres:///postgres?host=/var/run/postgresql",
		"postgres:///postgres",
	} {
		if _, err := loopbackPostgresURL(raw); err != nil {
			t.Errorf("loopbackPostgresURL(%q): %v, want accepted", raw, err)
		}
	}
	for _, raw := range []string{
		"postgres://root@10.0.0.5:5432/postgres",
		"postgres://root@db.example.com/postgres",
		"postgres://root@127.0.0.1,192.168.1.9/postgres",
		"postgres:///postgres?host=10.1.1.1",
		"mysql://root@127.0.0.1/db",
		"host=127.0.0.1 dbname=postgres",
	} {
		if _, err := loopbackPostgresURL(raw); err == nil {
			t.Errorf("loopbackPostgresURL(%q) accepted, want an error", raw)
		}
	}
}
