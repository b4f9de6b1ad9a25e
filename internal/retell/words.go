package retell

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/callcat/callcat/internal/callcat"
)

// itemWire is the decoding shape of TranscriptItem. Word timings are most of
// a transcript's bytes, so their list has its own decoder.
type itemWire struct {
	Role    string    `json:"role"`
	Content string    `json:"content"`
	Words   wordsWire `json:"words"`
}

// transcriptItems converts decoded items to the exported type. It returns nil
// for an empty list, as Call documents.
func transcriptItems(wire []itemWire) []TranscriptItem {
	if len(wire) == 0 {
		return nil
	}
	items := make([]TranscriptItem, len(wire))
	for i := range wire {
		items[i] = TranscriptItem{Role: wire[i].Role, Content: wire[i].Content, Words: wire[i].Words}
	}
	return items
}

// wordsWire decodes a words array in one pass over its bytes when it has the
// provider's shape: objects with the keys word (a string without escapes),
// start and end (numbers), in any order. Anything else (escapes, other keys,
// values of other types) goes through encoding/json, leniently, so the result
// is the same as decoding into []callcat.Word and ignoring type errors.
//
// encoding/json reflects over every word object, which made decoding the
// words cost about half of a get-call poll's CPU time.
type wordsWire []callcat.Word

func (w *wordsWire) UnmarshalJSON(data []byte) error {
	if words, ok := parseWords(data); ok {
		*w = words
		return nil
	}
	var words []callcat.Word
	if err := decodeLenient(data, &words); err != nil {
		return err
	}
	*w = words
	return nil
}

// parseWords parses the common shape of a words array. ok is false when data
// holds anything the fast path does not handle; the caller then decodes it
// with encoding/json. data is one JSON value that encoding/json has already
// validated, but parseWords checks every byte it reads all the same.
func parseWords(data []byte) (words []callcat.Word, ok bool) {
	p := wordParser{data: data}
	p.skipSpace()
	if p.literal("null") {
		return nil, p.end()
	}
	if !p.consume('[') {
		return nil, false
	}

	// Each word is one object, so the braces bound the length. A brace
	// inside a word only over-allocates.
	words = make([]callcat.Word, 0, bytes.Count(data, []byte{'{'}))
	p.skipSpace()
	if p.consume(']') {
		return words, p.end()
	}
	for {
		var word callcat.Word
		if !p.parseWord(&word) {
			return nil, false
		}
		words = append(words, word)

		p.skipSpace()
		if p.consume(']') {
			return words, p.end()
		}
		if !p.consume(',') {
			return nil, false
		}
		p.skipSpace()
	}
}

type wordParser struct {
	data []byte
	pos  int
}

// parseWord parses {"word":"…","start":n,"end":n} with the keys in any
// order, each at most once in effect (a repeated key overwrites, as in
// encoding/json).
func (p *wordParser) parseWord(w *callcat.Word) bool {
	if !p.consume('{') {
		return false
	}
	p.skipSpace()
	if p.consume('}') {
		return true
	}
	for {
		key, ok := p.plainString()
		if !ok {
			return false
		}
		p.skipSpace()
		if !p.consume(':') {
			return false
		}
		p.skipSpace()

		switch string(key) {
		case "word":
			s, ok := p.plainString()
			if !ok {
				return false
			}
			w.Word = string(s)
		case "start":
			if w.Start, ok = p.number(); !ok {
				return false
			}
		case "end":
			if w.End, ok = p.number(); !ok {
				return false
			}
		default:
			// Another key, or one that matches only case-insensitively
			// as encoding/json allows.
			return false
		}

		p.skipSpace()
		if p.consume('}') {
			return true
		}
		if !p.consume(',') {
			return false
		}
		p.skipSpace()
	}
}

// plainString returns the bytes between the quotes of a string without
// escapes, control characters or invalid UTF-8; encoding/json handles those.
func (p *wordParser) plainString() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	start := p.pos
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			s := p.data[start:p.pos]
			p.pos++
			return s, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.pos++
	}
	return nil, false
}

// number parses a JSON number. strconv accepts a superset of JSON's number
// syntax, but encoding/json validated data before calling UnmarshalJSON.
func (p *wordParser) number() (float64, bool) {
	start := p.pos
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			p.pos++
			continue
		}
		break
	}
	if start == p.pos || (p.data[start] != '-' && (p.data[start] < '0' || p.data[start] > '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(p.data[start:p.pos]), 64)
	return f, err == nil
}

func (p *wordParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *wordParser) consume(c byte) bool {
	if p.pos < len(p.data) && p.data[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

func (p *wordParser) literal(s string) bool {
	if bytes.HasPrefix(p.data[p.pos:], []byte(s)) {
		p.pos += len(s)
		return true
	}
	return false
}

// end reports whether only whitespace is left.
func (p *wordParser) end() bool {
	p.skipSpace()
	return p.pos == len(p.data)
}

var _ json.Unmarshaler = (*wordsWire)(nil)
