// Package stream fans call events out to in-process subscribers and encodes
// them as Server-Sent Events messages. It contains no HTTP code. The handler
// that serves a stream subscribes here, replays stored events from the store
// and writes the frames it receives.
package stream

import (
	"strconv"

	"github.com/callcat/callcat/internal/callcat"
)

// Frame is one event encoded once as an SSE message and shared by every
// subscriber that receives it. Bytes must not be modified, because several
// goroutines write the same slice to their clients concurrently.
type Frame struct {
	CallID string
	Seq    int64
	Type   callcat.EventType

	// Bytes is "id: <seq>\nevent: <type>\ndata: <data>\n\n".
	Bytes []byte
}

// Fixed parts of an encoded message. maxInt64Digits is the length of
// math.MinInt64 in decimal, sign included.
const (
	idPrefix       = "id: "
	eventPrefix    = "\nevent: "
	dataPrefix     = "\ndata: "
	messageEnd     = "\n\n"
	maxInt64Digits = 20
)

// encodedSizeMax returns an upper bound of the bytes EncodeEvent appends for ev.
// The bound is exact except for the digits of the seq, because sanitizing
// replaces each line break byte with one space.
func encodedSizeMax(ev *callcat.Event) int {
	return len(idPrefix) + maxInt64Digits + len(eventPrefix) + len(ev.Type) +
		len(dataPrefix) + len(ev.Data) + len(messageEnd)
}

// EncodeEvent appends ev to dst as one SSE message and returns the extended
// slice: "id: <seq>\nevent: <type>\ndata: <data>\n\n". Each CR or LF in the
// type or the data becomes a space, so that a field can neither start a new
// field nor end the message early. Event data is compact JSON, where a line
// break can only be whitespace between tokens, so the data stays valid JSON.
// EncodeEvent allocates only when dst lacks capacity.
func EncodeEvent(dst []byte, ev *callcat.Event) []byte {
	dst = append(dst, idPrefix...)
	dst = strconv.AppendInt(dst, ev.Seq, 10)
	dst = append(dst, eventPrefix...)
	dst = appendSingleLine(dst, ev.Type)
	dst = append(dst, dataPrefix...)
	dst = appendSingleLine(dst, ev.Data)
	return append(dst, messageEnd...)
}

// appendSingleLine appends s to dst with every CR and LF replaced by a space.
// SSE ends a line at CR, LF or CRLF, so both bytes must go.
func appendSingleLine[T ~string | ~[]byte](dst []byte, s T) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '\r' && s[i] != '\n' {
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, ' ')
		start = i + 1
	}
	return append(dst, s[start:]...)
}
