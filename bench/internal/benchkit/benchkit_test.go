package benchkit

import (
	"encoding/json"
	"math"
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
