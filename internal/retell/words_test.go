package retell

import (
	"encoding/json"
	"testing"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/google/go-cmp/cmp"
)

// wordInputs are words arrays in the provider's shape and in every shape the
// fast path hands to encoding/json.
var wordInputs = []string{
	`[{"word":"Thank ","start":0.655,"end":0.9468},{"word":"you ","start":0.9851,"end":1.1968}]`,
	"[\n  {\n    \"word\": \"Hi \",\n    \"start\": 1,\n    \"end\": 1.5e0\n  }\n]",
	`[{"end":2,"start":1,"word":"reordered "}]`,
	`[{"word":"café ","start":-0,"end":1E2}]`,
	`[]`,
	` [ ] `,
	`null`,
	`[{}]`,
	`[{"word":"a","start":1,"end":2,"word":"b"}]`,
	`[{"word":"say \"hi\" ","start":1,"end":2}]`,
	`[{"word":"\u00e9 ","start":1,"end":2}]`,
	`[{"Word":"case ","Start":1,"END":2}]`,
	`[{"word":"extra ","start":1,"end":2,"confidence":0.9}]`,
	`[{"word":7,"start":"1","end":null}]`,
	`[{"word":"x","start":1,"end":2},"not an object",{"word":"y"}]`,
	`{"word":"not an array"}`,
	`"words"`,
	`[{"word":"bad utf8 \xff","start":1,"end":2}]`,
	`[{"word":"tab	inside","start":1,"end":2}]`,
}

// decodeWordsReference decodes words the way encoding/json does when a
// transcript item's words field is []callcat.Word, ignoring type errors.
func decodeWordsReference(t *testing.T, input string) []callcat.Word {
	t.Helper()
	var item struct {
		Words []callcat.Word `json:"words"`
	}
	if err := decodeLenient([]byte(`{"words":`+input+`}`), &item); err != nil {
		t.Fatalf("reference decode of %s: %v", input, err)
	}
	return item.Words
}

func TestWordsMatchEncodingJSON(t *testing.T) {
	for _, input := range wordInputs {
		if !json.Valid([]byte(input)) {
			continue
		}
		want := decodeWordsReference(t, input)

		var item itemWire
		if err := decodeLenient([]byte(`{"words":`+input+`}`), &item); err != nil {
			t.Fatalf("decode %s: %v", input, err)
		}
		if diff := cmp.Diff(want, []callcat.Word(item.Words)); diff != "" {
			t.Errorf("words of %s (-encoding/json +wordsWire):\n%s", input, diff)
		}
	}
}

func TestWordsFastPathTakesProviderShape(t *testing.T) {
	for _, input := range wordInputs[:7] {
		if _, ok := parseWords([]byte(input)); !ok {
			t.Errorf("parseWords(%s) fell back to encoding/json, want the fast path", input)
		}
	}
}

func FuzzWords(f *testing.F) {
	for _, input := range wordInputs {
		f.Add(input)
	}
	f.Fuzz(func(t *testing.T, input string) {
		if !json.Valid([]byte(input)) {
			return
		}
		want := decodeWordsReference(t, input)
		var item itemWire
		if err := decodeLenient([]byte(`{"words":`+input+`}`), &item); err != nil {
			t.Fatalf("decode %q: %v", input, err)
		}
		if diff := cmp.Diff(want, []callcat.Word(item.Words)); diff != "" {
			t.Fatalf("words of %q (-encoding/json +wordsWire):\n%s", input, diff)
		}
	})
}
