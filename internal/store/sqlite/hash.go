package sqlite

import (
	"crypto/sha256"
	"encoding/binary"
	"math"

	"github.com/callcat/callcat/internal/callcat"
)

// utteranceHash is the digest of an utterance: the first 16 bytes of
// a SHA-256, so an accidental match between two versions of one utterance is
// out of reach in practice.
type utteranceHash [16]byte

// utteranceHasher computes utterance hashes, reusing one buffer.
type utteranceHasher struct {
	buf []byte
}

// hash returns the digest of u's role, content and words. Each string is
// length-prefixed and each timing is written as its IEEE 754 bits, so
// utterances with equal hashes have equal fields, barring a SHA-256
// collision. The reverse does not hold for timings of 0 and -0, which compare
// equal but hash differently. Apply then reads the stored row and compares it
// in full, which is only slower.
func (h *utteranceHasher) hash(u *callcat.Utterance) utteranceHash {
	b := h.buf[:0]
	b = appendString(b, u.Role)
	b = appendString(b, u.Content)
	b = binary.AppendUvarint(b, uint64(len(u.Words)))
	for i := range u.Words {
		w := &u.Words[i]
		b = appendString(b, w.Word)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(w.Start))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(w.End))
	}
	h.buf = b

	sum := sha256.Sum256(b)
	return utteranceHash(sum[:len(utteranceHash{})])
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// joinHashes returns hashes as stored in calls.utterance_hashes: one after
// the other in index order.
func joinHashes(hashes []utteranceHash) []byte {
	b := make([]byte, 0, len(hashes)*len(utteranceHash{}))
	for i := range hashes {
		b = append(b, hashes[i][:]...)
	}
	return b
}
