package sim_test

import (
	"testing"
	"time"

	"github.com/callcat/callcat/internal/sim"
)

func TestStopStarting(t *testing.T) {
	rec := newRecorder(t, nil)
	s, _ := newSim(t, sim.Config{
		WebhookURL:      rec.srv.URL,
		Calls:           4,
		Speed:           200,
		PushTranscripts: true,
		AnalysisDelay:   time.Second,
		Seed:            7,
	})
	r := startRun(t, s)
	waitFor(t, "8 calls started", func() bool { return s.Stats().CallsStarted >= 8 })

	s.StopStarting()
	startedAtStop := s.Stats().CallsStarted
	if err := r.wait(t); err != nil {
		t.Fatalf("Run: %v, want nil", err)
	}

	st := s.Stats()
	if st.CallsStarted > startedAtStop {
		t.Errorf("calls started=%d after Run returned, want %d as at StopStarting", st.CallsStarted, startedAtStop)
	}
	if st.CallsAnalyzed != st.CallsStarted {
		t.Errorf("calls analyzed=%d, want every started call (%d)", st.CallsAnalyzed, st.CallsStarted)
	}
	if st.LiveCalls != 0 {
		t.Errorf("live calls=%d, want 0", st.LiveCalls)
	}
	if st.WebhooksQueued != 0 {
		t.Errorf("webhooks queued=%d, want 0", st.WebhooksQueued)
	}
}

func TestStopStartingIdle(t *testing.T) {
	s, _ := newSim(t, sim.Config{Speed: 200})
	s.StopStarting()
	if err := startRun(t, s).wait(t); err != nil {
		t.Fatalf("Run: %v, want nil", err)
	}
	if n := s.Stats().CallsStarted; n != 0 {
		t.Errorf("calls started=%d, want 0", n)
	}
}
