package tracker

import (
	"testing"
	"time"
)

func TestBackoffFinalFetchIgnoresLiveFailures(t *testing.T) {
	tr := &Tracker{cfg: Config{BackoffMin: time.Second, BackoffMax: time.Hour}}
	tr.cfg.setDefaults()

	// Twelve failed polls while the call was live would allow a wait of up
	// to BackoffMax. Its final fetch has failed twice, so it waits at most
	// BackoffMin << 2.
	c := &trackedCall{id: "call_a", failures: 12, final: true, finalFetch: true, finalFailures: 2}
	for range 50 {
		if d := tr.backoff(c, 0); d < tr.cfg.BackoffMin/2 || d > 4*time.Second {
			t.Fatalf("final fetch backoff=%v, want between 0.5s and 4s", d)
		}
	}

	// The Retry-After still wins when it is longer.
	if d := tr.backoff(c, 10*time.Second); d != 10*time.Second {
		t.Fatalf("final fetch backoff with Retry-After 10s=%v, want 10s", d)
	}
}
