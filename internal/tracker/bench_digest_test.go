package tracker

import (
	"hash/maphash"
	"strconv"
	"testing"

	"github.com/callcat/callcat/internal/callcat"
)

// digestUpdate returns a poll result of a live call with n utterances of 12
// timed words each.
func digestUpdate(n int) callcat.Update {
	utterances := make([]callcat.Utterance, n)
	clock := 0.0
	for i := range utterances {
		u := callcat.Utterance{Index: i, Role: callcat.RoleAgent}
		for w := range 12 {
			word := "word" + strconv.Itoa(w) + " "
			u.Content += word
			u.Words = append(u.Words, callcat.Word{Word: word, Start: clock, End: clock + 0.3})
			clock += 0.4
		}
		utterances[i] = u
	}
	start := int64(1781000011483)
	return callcat.Update{
		Fields:   callcat.CallFields{ID: "call_digest", Status: callcat.StatusOngoing, AgentID: "agent_1", StartTimestamp: &start},
		Snapshot: &callcat.Snapshot{Utterances: utterances, TakenAt: 1},
	}
}

func TestUpdateDigestIgnoresTakenAt(t *testing.T) {
	seed := maphash.MakeSeed()
	a, b := digestUpdate(3), digestUpdate(3)
	b.Snapshot.TakenAt = 2
	if updateDigest(seed, &a) != updateDigest(seed, &b) {
		t.Fatalf("digests differ for results that differ only in TakenAt")
	}
}

func TestUpdateDigestSeesChanges(t *testing.T) {
	seed := maphash.MakeSeed()
	base := digestUpdate(3)
	want := updateDigest(seed, &base)

	changes := map[string]func(u *callcat.Update){
		"status":       func(u *callcat.Update) { u.Fields.Status = callcat.StatusEnded },
		"end time":     func(u *callcat.Update) { end := int64(5); u.Fields.EndTimestamp = &end },
		"metadata":     func(u *callcat.Update) { u.Fields.Metadata = []byte(`{"a":1}`) },
		"no snapshot":  func(u *callcat.Update) { u.Snapshot = nil },
		"one more":     func(u *callcat.Update) { u.Snapshot.Utterances = digestUpdate(4).Snapshot.Utterances },
		"content":      func(u *callcat.Update) { u.Snapshot.Utterances[2].Content += "x" },
		"word timing":  func(u *callcat.Update) { u.Snapshot.Utterances[1].Words[3].End += 0.01 },
		"role":         func(u *callcat.Update) { u.Snapshot.Utterances[0].Role = callcat.RoleUser },
		"bytes moved":  func(u *callcat.Update) { u.Fields.Type, u.Fields.Direction = "ab", "" },
		"bytes moved2": func(u *callcat.Update) { u.Fields.Type, u.Fields.Direction = "a", "b" },
	}
	seen := map[uint64]string{}
	for name, change := range changes {
		u := digestUpdate(3)
		change(&u)
		got := updateDigest(seed, &u)
		if got == want {
			t.Errorf("%s: digest unchanged", name)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("%s: same digest as %s", name, other)
		}
		seen[got] = name
	}
}

// Allocation ceiling of updateDigest, which runs on every poll: Go 1.26.8
// on linux/amd64 measured 0.
const maxAllocsUpdateDigest = 0

func TestUpdateDigestAllocs(t *testing.T) {
	seed := maphash.MakeSeed()
	u := digestUpdate(40)
	allocs := testing.AllocsPerRun(100, func() { updateDigest(seed, &u) })
	if allocs > maxAllocsUpdateDigest {
		t.Fatalf("allocs=%v, want at most %d", allocs, maxAllocsUpdateDigest)
	}
}

// BenchmarkUpdateDigest hashes a 40-utterance poll result, the cost a poll
// pays to find out that it can skip the store.
func BenchmarkUpdateDigest(b *testing.B) {
	seed := maphash.MakeSeed()
	u := digestUpdate(40)
	b.ReportAllocs()
	for b.Loop() {
		updateDigest(seed, &u)
	}
}
