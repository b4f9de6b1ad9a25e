package stream_test

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/stream"
)

func TestEncodeEventFormat(t *testing.T) {
	ev := callcat.Event{
		CallID: "call_1",
		Seq:    42,
		Type:   callcat.EventUtterance,
		Data:   json.RawMessage(`{"index":3,"role":"agent","content":"Hello there"}`),
	}

	got := string(stream.EncodeEvent(nil, &ev))

	want := "id: 42\nevent: utterance\ndata: {\"index\":3,\"role\":\"agent\",\"content\":\"Hello there\"}\n\n"
	if got != want {
		t.Fatalf("EncodeEvent=%q, want %q", got, want)
	}
}

func TestEncodeEventAppends(t *testing.T) {
	ev := callcat.Event{Seq: 7, Type: callcat.EventEnded, Data: json.RawMessage(`{"status":"ended"}`)}
	dst := []byte(": heartbeat\n\n")

	got := string(stream.EncodeEvent(dst, &ev))

	want := ": heartbeat\n\nid: 7\nevent: ended\ndata: {\"status\":\"ended\"}\n\n"
	if got != want {
		t.Fatalf("EncodeEvent=%q, want %q", got, want)
	}
}

func TestEncodeEventLineBreaks(t *testing.T) {
	tests := []struct {
		name     string
		typ      callcat.EventType
		data     string
		wantType string
		wantData string
	}{
		{"DataLF", "utterance", "{\"a\":\n1}", "utterance", `{"a": 1}`},
		{"DataCR", "utterance", "{\"a\":\r1}", "utterance", `{"a": 1}`},
		{"DataCRLF", "utterance", "{\"a\":\r\n1}", "utterance", `{"a":  1}`},
		{"DataInjectsEvent", "utterance", "{}\n\nid: 99\nevent: ended\ndata: {}", "utterance", "{}  id: 99 event: ended data: {}"},
		{"DataInjectsByCR", "utterance", "{}\r\rid: 99\rdata: x", "utterance", "{}  id: 99 data: x"},
		{"DataOnlyBreaks", "utterance", "\r\n\n\r", "utterance", "    "},
		{"DataLeadingBreak", "utterance", "\nretry: 1", "utterance", " retry: 1"},
		{"DataTrailingBreak", "utterance", "{}\n", "utterance", "{} "},
		{"TypeLF", "utterance\ndata: x", "{}", "utterance data: x", "{}"},
		{"TypeCRLF", "ended\r\n\r\nid: 1", "{}", "ended    id: 1", "{}"},
		{"TypeCR", "status\r", "{}", "status ", "{}"},
		{"Empty", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := callcat.Event{Seq: 5, Type: tt.typ, Data: json.RawMessage(tt.data)}

			got := stream.EncodeEvent(nil, &ev)

			lines := sseLines(got)
			if len(lines) != 4 {
				t.Fatalf("lines=%q (%d), want 3 fields and a blank line", lines, len(lines))
			}
			if lines[0] != "id: 5" {
				t.Fatalf("line 1=%q, want %q", lines[0], "id: 5")
			}
			if lines[1] != "event: "+tt.wantType {
				t.Fatalf("line 2=%q, want %q", lines[1], "event: "+tt.wantType)
			}
			if lines[2] != "data: "+tt.wantData {
				t.Fatalf("line 3=%q, want %q", lines[2], "data: "+tt.wantData)
			}
			if lines[3] != "" {
				t.Fatalf("line 4=%q, want blank", lines[3])
			}
		})
	}
}

func TestEncodeEventAllocs(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"Clean", `{"index":12,"role":"user","content":"I'd like to book a table for two."}`},
		{"LineBreaks", "{\"index\":12,\r\n\"role\":\"user\"}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := callcat.Event{Seq: 1234567, Type: callcat.EventUtterance, Data: json.RawMessage(tt.data)}
			buf := make([]byte, 0, 512)

			allocs := testing.AllocsPerRun(100, func() {
				buf = stream.EncodeEvent(buf[:0], &ev)
			})

			if allocs != 0 {
				t.Fatalf("allocs=%v, want 0", allocs)
			}
		})
	}
}

func FuzzEncodeEvent(f *testing.F) {
	f.Add(int64(1), "utterance", []byte(`{"index":0,"role":"agent","content":"Hi"}`))
	f.Add(int64(9223372036854775807), "ended", []byte("{}\n\nid: 2\ndata: x"))
	f.Add(int64(-9223372036854775808), "status\r\nevent: x", []byte("\r"))
	f.Add(int64(0), "", []byte(""))

	f.Fuzz(func(t *testing.T, seq int64, typ string, data []byte) {
		ev := callcat.Event{Seq: seq, Type: callcat.EventType(typ), Data: json.RawMessage(data)}

		got := stream.EncodeEvent(nil, &ev)

		if !bytes.HasSuffix(got, []byte("\n\n")) {
			t.Fatalf("EncodeEvent=%q, want suffix \\n\\n", got)
		}
		idLine := "id: " + strconv.FormatInt(seq, 10) + "\n"
		if !bytes.HasPrefix(got, []byte(idLine)) {
			t.Fatalf("EncodeEvent=%q, want prefix %q", got, idLine)
		}
		lines := sseLines(got)
		if len(lines) != 4 {
			t.Fatalf("lines=%q (%d), want 3 fields and a blank line", lines, len(lines))
		}
		if want := "event: " + singleLine(typ); lines[1] != want {
			t.Fatalf("line 2=%q, want %q", lines[1], want)
		}
		if want := "data: " + singleLine(string(data)); lines[2] != want {
			t.Fatalf("line 3=%q, want %q", lines[2], want)
		}
	})
}

func BenchmarkEncodeEvent(b *testing.B) {
	ev := callcat.Event{
		CallID: "call_5a3b8c2d1e4f",
		Seq:    1042,
		Type:   callcat.EventUtterance,
		Data:   json.RawMessage(`{"index":17,"role":"user","content":"Yes, Thursday at seven works, and could you add a note that we need a high chair?"}`),
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream.EncodeEvent(nil, &ev))))

	for b.Loop() {
		buf = stream.EncodeEvent(buf[:0], &ev)
	}
}

// sseLines splits b into lines the way an SSE parser does: a line ends at
// CRLF, at a lone CR or at LF. A final line without an end is not returned,
// because a parser would still be waiting for its end.
func sseLines(b []byte) []string {
	var lines []string
	start := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\r':
			lines = append(lines, string(b[start:i]))
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
			start = i + 1
		case '\n':
			lines = append(lines, string(b[start:i]))
			start = i + 1
		}
	}
	return lines
}

// singleLine is the reference for EncodeEvent's sanitizing: CR and LF become spaces.
func singleLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
