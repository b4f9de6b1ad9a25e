package tracker

import (
	"encoding/binary"
	"hash/maphash"
	"math"

	"github.com/callcat/callcat/internal/callcat"
)

// updateDigest returns a 64-bit hash of what a poll result would write: the
// call's fields and, when present, its utterances with their word timings.
// It leaves out the snapshot's TakenAt, which differs on every poll, so two
// polls that returned the same call hash alike. It never returns 0, which
// trackedCall.digest uses for "none".
func updateDigest(seed maphash.Seed, u *callcat.Update) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)

	f := &u.Fields
	for _, s := range [...]string{string(f.Status), f.Type, f.Direction, f.FromNumber, f.ToNumber, f.AgentID, f.DisconnectionReason} {
		writeString(&h, s)
	}
	for _, p := range [...]*int64{f.StartTimestamp, f.EndTimestamp, f.DurationMS} {
		if p == nil {
			h.WriteByte(0)
			continue
		}
		h.WriteByte(1)
		writeUint64(&h, uint64(*p))
	}
	writeString(&h, string(f.Metadata))
	writeString(&h, string(f.Analysis))

	if s := u.Snapshot; s != nil {
		h.WriteByte(1)
		writeUint64(&h, uint64(len(s.Utterances)))
		for i := range s.Utterances {
			utt := &s.Utterances[i]
			writeString(&h, utt.Role)
			writeString(&h, utt.Content)
			writeUint64(&h, uint64(len(utt.Words)))
			for _, w := range utt.Words {
				writeString(&h, w.Word)
				writeUint64(&h, math.Float64bits(w.Start))
				writeUint64(&h, math.Float64bits(w.End))
			}
		}
	} else {
		h.WriteByte(0)
	}

	if d := h.Sum64(); d != 0 {
		return d
	}
	return 1
}

// writeString writes s with its length first, so that moving bytes from
// one string to the next changes the hash.
func writeString(h *maphash.Hash, s string) {
	writeUint64(h, uint64(len(s)))
	h.WriteString(s)
}

func writeUint64(h *maphash.Hash, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	h.Write(b[:])
}
