package sim

import (
	"testing"
	"time"
)

// BenchmarkTick measures one scheduler tick with 1000 live calls at Speed 1,
// the steady state of a soak run: Run does this every 25 ms.
func BenchmarkTick(b *testing.B) {
	now := time.Date(2026, 6, 9, 10, 0, 0, 0, time.UTC)
	s, err := New(Config{APIKey: "k", Calls: 1000, PushTranscripts: true, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	// Warm up for two simulated minutes so calls are spread over their lives.
	for range 4800 {
		now = now.Add(tickInterval)
		s.tick()
	}

	for b.Loop() {
		now = now.Add(tickInterval)
		s.tick()
	}
	if live := s.Stats().LiveCalls; live != 1000 {
		b.Fatalf("live calls=%d, want 1000", live)
	}
}

// BenchmarkTranscriptWebhook measures building one transcript_updated body
// late in a 45 s call.
func BenchmarkTranscriptWebhook(b *testing.B) {
	now := time.Date(2026, 6, 9, 10, 0, 0, 0, time.UTC)
	s, err := New(Config{APIKey: "k", Seed: 1, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	id := s.StartCall()
	c := s.calls[id]
	at := c.sc.turnChanges[len(c.sc.turnChanges)-1]

	b.ReportAllocs()
	for b.Loop() {
		s.webhookBody(c, webhookJob{kind: jobTranscriptUpdated, at: at})
	}
}
