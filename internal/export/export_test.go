package export_test

import (
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/export"
	"github.com/callcat/callcat/internal/retell"
)

func longCall(t *testing.T) []callcat.Utterance {
	t.Helper()
	body, err := os.ReadFile("../../testdata/retell/long_call/get_call_ended_analyzed.json")
	if err != nil {
		t.Fatal(err)
	}
	call, err := retell.DecodeCall(body)
	if err != nil {
		t.Fatal(err)
	}
	utts, ok := call.Utterances()
	if !ok {
		t.Fatal("long call has no transcript")
	}
	return utts
}

func hostile() []callcat.Utterance {
	return []callcat.Utterance{
		{Role: callcat.RoleAgent, Content: "a <b>bold</b> & --> move", Words: []callcat.Word{
			{Word: "a ", Start: 0.5, End: 0.6}, {Word: "<b>bold</b> ", Start: 0.6, End: 1.0},
			{Word: "& ", Start: 1.0, End: 1.1}, {Word: "-->\n\n", Start: 1.1, End: 1.2}, {Word: "move", Start: 1.2, End: 1.2},
		}},
		{Role: callcat.RoleUser, Content: "no timing"},
		{Role: callcat.RoleUser, Content: "bad", Words: []callcat.Word{{Word: "bad", Start: math.NaN(), End: 2}}},
		{Role: callcat.RoleUser, Content: "late start", Words: []callcat.Word{{Word: "late ", Start: 0.9, End: 1.5}, {Word: "start", Start: 1.5, End: 3661.25}}},
	}
}

var (
	vttTiming = regexp.MustCompile(`^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})$`)
	srtTiming = regexp.MustCompile(`^(\d{2}):([0-5]\d):([0-5]\d),(\d{3}) --> (\d{2}):([0-5]\d):([0-5]\d),(\d{3})$`)
	entity    = regexp.MustCompile(`&(amp|lt|gt);`)
)

func millis(m []string) (start, end int64) {
	n := func(i int) int64 { v, _ := strconv.ParseInt(m[i], 10, 64); return v }
	start = ((n(1)*60+n(2))*60+n(3))*1000 + n(4)
	end = ((n(5)*60+n(6))*60+n(7))*1000 + n(8)
	return start, end
}

// checkWebVTT applies the authoring rules of the WebVTT spec that this
// output can break: the header, blocks separated by one blank line, a timing
// line per cue with end after start and starts in order, and cue text without
// "-->", blank lines, raw "<" or stray "&".
func checkWebVTT(t *testing.T, out string, wantCues int) {
	t.Helper()
	if !strings.HasPrefix(out, "WEBVTT\n") {
		t.Fatalf("missing WEBVTT header: %q", out[:min(len(out), 20)])
	}
	blocks := strings.Split(strings.TrimSuffix(out, "\n"), "\n\n")
	if got := len(blocks) - 1; got != wantCues {
		t.Fatalf("cues=%d, want %d", got, wantCues)
	}
	prevStart := int64(-1)
	for i, block := range blocks[1:] {
		lines := strings.Split(block, "\n")
		if len(lines) != 3 {
			t.Fatalf("cue %d has %d lines, want id, timing, text: %q", i+1, len(lines), block)
		}
		if strings.Contains(lines[0], "-->") || lines[0] != strconv.Itoa(i+1) {
			t.Fatalf("cue %d id=%q", i+1, lines[0])
		}
		m := vttTiming.FindStringSubmatch(lines[1])
		if m == nil {
			t.Fatalf("cue %d timing line %q", i+1, lines[1])
		}
		start, end := millis(m)
		if end <= start {
			t.Fatalf("cue %d ends at %d ms, not after its start %d ms", i+1, end, start)
		}
		if start < prevStart {
			t.Fatalf("cue %d starts at %d ms, before the previous cue's %d ms", i+1, start, prevStart)
		}
		prevStart = start
		text := lines[2]
		if !strings.HasPrefix(text, "<v ") || strings.Count(text, "<") != 1 {
			t.Fatalf("cue %d text %q: want one voice tag and no other tag", i+1, text)
		}
		if strings.Contains(text, "-->") {
			t.Fatalf("cue %d text contains -->: %q", i+1, text)
		}
		if rest := entity.ReplaceAllString(text, ""); strings.Contains(rest, "&") {
			t.Fatalf("cue %d text has a raw &: %q", i+1, text)
		}
	}
}

func checkSRT(t *testing.T, out string, wantCues int) {
	t.Helper()
	blocks := strings.Split(strings.TrimSuffix(out, "\n"), "\n\n")
	if len(blocks) != wantCues {
		t.Fatalf("cues=%d, want %d", len(blocks), wantCues)
	}
	for i, block := range blocks {
		lines := strings.Split(block, "\n")
		if len(lines) != 3 {
			t.Fatalf("cue %d has %d lines: %q", i+1, len(lines), block)
		}
		if lines[0] != strconv.Itoa(i+1) {
			t.Fatalf("cue %d number=%q", i+1, lines[0])
		}
		m := srtTiming.FindStringSubmatch(lines[1])
		if m == nil {
			t.Fatalf("cue %d timing line %q", i+1, lines[1])
		}
		if start, end := millis(m); end <= start {
			t.Fatalf("cue %d ends at %d ms, not after its start %d ms", i+1, end, start)
		}
		if lines[2] == "" || strings.Contains(lines[2], "-->") {
			t.Fatalf("cue %d text %q", i+1, lines[2])
		}
	}
}

func TestWebVTTLongCall(t *testing.T) {
	cues, skipped := export.Cues(longCall(t))
	if skipped != 0 {
		t.Fatalf("skipped=%d, want 0", skipped)
	}
	if len(cues) < 61 {
		t.Fatalf("cues=%d, want at least one per utterance (61)", len(cues))
	}
	out := export.WebVTT(cues)
	checkWebVTT(t, out, len(cues))
	if !strings.Contains(out, "<v Agent>Thank you for calling Harborview Pharmacy") {
		t.Fatalf("first agent cue missing")
	}
	if !strings.Contains(out, "José") {
		t.Fatalf("accented text lost")
	}
}

func TestSRTLongCall(t *testing.T) {
	cues, _ := export.Cues(longCall(t))
	out := export.SRT(cues)
	checkSRT(t, out, len(cues))
	if !strings.HasPrefix(out, "1\n") {
		t.Fatalf("SRT does not start with cue 1: %q", out[:20])
	}
}

func TestCuesHostileText(t *testing.T) {
	cues, skipped := export.Cues(hostile())
	if skipped != 2 {
		t.Fatalf("skipped=%d, want 2 (no timing, NaN timing)", skipped)
	}
	vtt := export.WebVTT(cues)
	checkWebVTT(t, vtt, len(cues))
	checkSRT(t, export.SRT(cues), len(cues))
	if !strings.Contains(vtt, "&lt;b&gt;bold&lt;/b&gt; &amp; --&gt; move") {
		t.Fatalf("escaped text missing from %q", vtt)
	}
	if !strings.Contains(vtt, "01:01:01.250") {
		t.Fatalf("hour timestamp missing from %q", vtt)
	}
}

func TestCuesSplitLongTurn(t *testing.T) {
	var words []callcat.Word
	for i := range 40 {
		words = append(words, callcat.Word{Word: "w ", Start: float64(i) * 0.5, End: float64(i)*0.5 + 0.4})
	}
	cues, _ := export.Cues([]callcat.Utterance{{Role: callcat.RoleAgent, Words: words}})
	if len(cues) < 3 {
		t.Fatalf("cues=%d for a 20 s turn, want it split into at least 3", len(cues))
	}
	for i, c := range cues {
		if c.End-c.Start > export.MaxCueDuration {
			t.Fatalf("cue %d lasts %.2f s, over %v", i, c.End-c.Start, export.MaxCueDuration)
		}
	}
}
