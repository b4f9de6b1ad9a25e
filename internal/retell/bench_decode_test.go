package retell_test

import (
	"testing"

	"github.com/callcat/callcat/internal/retell"
)

// decodeFixtures are get-call bodies of growing size: a live call early and
// later, an ended call, and a four-minute call.
var decodeFixtures = []string{
	"outbound/get_call_3_ongoing_partial.json",
	"outbound/get_call_4_ongoing_later.json",
	"outbound/get_call_5_ended.json",
	"long_call/get_call_ended_analyzed.json",
}

// Allocation ceilings of decoding a get-call body with its utterances, a bit
// above what Go 1.26.8 on linux/amd64 measured (go test -run DecodeAllocs -v
// ./internal/retell). Most allocations are one string per word; the ceiling
// catches a return to one allocation per word field or per slice growth.
var maxDecodeAllocs = map[string]float64{
	"outbound/get_call_4_ongoing_later.json": 150,
	"long_call/get_call_ended_analyzed.json": 820,
}

func decodeWithUtterances(tb testing.TB, data []byte) int {
	c, err := retell.DecodeCall(data)
	if err != nil {
		tb.Fatal(err)
	}
	utterances, present := c.Utterances()
	if !present {
		tb.Fatal("transcript absent")
	}
	return len(utterances)
}

// BenchmarkDecodeLimit decodes each fixture in a tight loop on one
// goroutine: the decode limit that a poll's bytes per CPU second are
// compared with.
func BenchmarkDecodeLimit(b *testing.B) {
	for _, name := range decodeFixtures {
		data := readFixture(b, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				decodeWithUtterances(b, data)
			}
		})
	}
}

func TestDecodeAllocs(t *testing.T) {
	for name, ceiling := range maxDecodeAllocs {
		data := readFixture(t, name)
		allocs := testing.AllocsPerRun(50, func() { decodeWithUtterances(t, data) })
		t.Logf("%s: %.0f allocs", name, allocs)
		if allocs > ceiling {
			t.Errorf("%s: allocs=%.0f, want at most %.0f", name, allocs, ceiling)
		}
	}
}
