package tracker_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
	"github.com/callcat/callcat/internal/store/sqlite"
	"github.com/callcat/callcat/internal/tracker"
	"github.com/prometheus/client_golang/prometheus"
)

// sameTranscript returns the same live transcript for every poll.
func sameTranscript(w http.ResponseWriter, callID string, _ int) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"call_id":"` + callID + `","call_status":"ongoing",` +
		`"transcript_object":[{"role":"agent","content":"Hello there.","words":[` +
		`{"word":"Hello ","start":0.1,"end":0.4},{"word":"there.","start":0.5,"end":0.9}]}]}`))
}

// counterSum returns the sum of every series of a counter in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// newCountingTracker returns a running tracker whose store and tracker
// metrics register in the returned registry.
func newCountingTracker(t *testing.T, client *retell.Client) (*tracker.Tracker, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "callcat.db"), sqlite.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	cfg := fastConfig()
	cfg.Registerer = reg
	tr, err := tracker.New(db, newHub(t), client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr)
	return tr, reg
}

func TestPollUnchangedSkipsStore(t *testing.T) {
	p, client := newProvider(t, sameTranscript)
	tr, reg := newCountingTracker(t, client)

	if err := tr.Track("call_same"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "six polls", func() bool { return len(p.times("call_same")) >= 6 })
	waitFor(t, "unchanged polls counted", func() bool {
		return counterSum(t, reg, "callcat_polls_unchanged_total") >= 4
	})

	// The first poll stores the call; the ones after it find nothing new.
	if writes := counterSum(t, reg, "callcat_store_writes_total"); writes != 1 {
		t.Fatalf("store writes=%v, want 1", writes)
	}
}

func TestPollAfterWebhookStoresAgain(t *testing.T) {
	p, client := newProvider(t, sameTranscript)
	tr, reg := newCountingTracker(t, client)

	if err := tr.Track("call_hooked"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an unchanged poll", func() bool {
		return counterSum(t, reg, "callcat_polls_unchanged_total") >= 1
	})

	wh, err := retell.ParseWebhook([]byte(`{"event":"call_started","call":{"call_id":"call_hooked","call_status":"ongoing","agent_id":"agent_new"}}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tr.HandleWebhook(context.Background(), wh, callcat.Delivery{Digest: "d1", SignedAt: time.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	writesAfterWebhook := counterSum(t, reg, "callcat_store_writes_total")
	polls := len(p.times("call_hooked"))

	// The poll after the webhook returns what the poll before it did, and
	// is stored all the same.
	waitFor(t, "a poll after the webhook", func() bool { return len(p.times("call_hooked")) >= polls+2 })
	waitFor(t, "the poll result stored", func() bool {
		return counterSum(t, reg, "callcat_store_writes_total") > writesAfterWebhook
	})
}
