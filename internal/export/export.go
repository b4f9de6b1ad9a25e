// Package export renders a call's transcript as subtitles: WebVTT (with the
// speaker as a voice tag) and SRT. Cue times come from the provider's word
// timings, which are seconds from the start of the call audio.
package export

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/callcat/callcat/internal/callcat"
)

// MaxCueDuration splits an utterance longer than this into several cues at
// word boundaries, so a long turn does not stay on screen as one block.
const MaxCueDuration = 7.0 // seconds

// softCueDuration ends a cue at the first sentence or clause end after this
// many seconds, so cues break where a reader expects rather than mid-phrase.
const softCueDuration = 3.5 // seconds

// minCueDuration keeps a cue's end after its start when a word has no length.
const minCueDuration = 0.001 // seconds

// Cue is one subtitle: a speaker's words between two times in seconds.
type Cue struct {
	Start, End float64
	Role       string
	Text       string
}

// Cues splits utterances into cues. An utterance without word timings has no
// time on the call's audio and gets no cue; skipped returns how many.
func Cues(utterances []callcat.Utterance) (cues []Cue, skipped int) {
	for _, u := range utterances {
		words := timedWords(u.Words)
		if len(words) == 0 {
			skipped++
			continue
		}

		var cur *Cue
		var text strings.Builder
		flush := func() {
			if cur == nil {
				return
			}
			cur.Text = collapseSpace(text.String())
			if cur.End < cur.Start+minCueDuration {
				cur.End = cur.Start + minCueDuration
			}
			if cur.Text != "" {
				cues = append(cues, *cur)
			}
			cur = nil
			text.Reset()
		}

		for _, w := range words {
			if cur != nil && w.End-cur.Start > MaxCueDuration {
				flush()
			}
			if cur == nil {
				cur = &Cue{Start: w.Start, End: w.End, Role: u.Role}
			}
			if w.End > cur.End {
				cur.End = w.End
			}
			text.WriteString(w.Word)
			if cur.End-cur.Start >= softCueDuration && endsClause(w.Word) {
				flush()
			}
		}
		flush()
	}

	// Subtitle formats want cues in order of start time. An interruption
	// can start before the previous turn's last word, so sort, keeping the
	// transcript order among equal starts.
	slices.SortStableFunc(cues, func(a, b Cue) int { return cmp.Compare(a.Start, b.Start) })
	return cues, skipped
}

// endsClause reports whether a word ends a sentence or a clause.
func endsClause(word string) bool {
	word = strings.TrimSpace(word)
	return word != "" && strings.ContainsRune(".?!,;:", rune(word[len(word)-1]))
}

// timedWords drops words without a usable time.
func timedWords(words []callcat.Word) []callcat.Word {
	out := words[:0:0]
	for _, w := range words {
		if math.IsNaN(w.Start) || math.IsNaN(w.End) || math.IsInf(w.Start, 0) || math.IsInf(w.End, 0) || w.Start < 0 || w.End < w.Start {
			continue
		}
		out = append(out, w)
	}
	return out
}

// collapseSpace joins the text on one line: subtitle cue text ends at a
// blank line, and a line break inside a turn carries no meaning here.
func collapseSpace(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// WebVTT renders cues as a WebVTT file. The speaker is a voice tag
// (<v Agent>), and &, < and > in the text are escaped as character
// references, so no text can open a tag or form the "-->" separator.
func WebVTT(cues []Cue) string {
	var b strings.Builder
	b.WriteString("WEBVTT\n")
	for i, c := range cues {
		fmt.Fprintf(&b, "\n%d\n%s --> %s\n<v %s>%s\n", i+1,
			timestamp(c.Start, '.'), timestamp(c.End, '.'),
			escapeVTT(callcat.RoleLabel(c.Role)), escapeVTT(c.Text))
	}
	return b.String()
}

// SRT renders cues as a SubRip file, with the speaker as a "Name: " prefix.
func SRT(cues []Cue) string {
	var b strings.Builder
	for i, c := range cues {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%d\n%s --> %s\n%s: %s\n", i+1,
			timestamp(c.Start, ','), timestamp(c.End, ','),
			callcat.RoleLabel(c.Role), strings.ReplaceAll(c.Text, "-->", "->"))
	}
	return b.String()
}

// timestamp formats seconds as hh:mm:ss.ttt (WebVTT) or hh:mm:ss,ttt (SRT).
func timestamp(seconds float64, sep byte) string {
	ms := int64(math.Round(seconds * 1000))
	h := ms / 3_600_000
	m := ms / 60_000 % 60
	s := ms / 1000 % 60
	return fmt.Sprintf("%02d:%02d:%02d%c%03d", h, m, s, sep, ms%1000)
}

var vttEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func escapeVTT(s string) string {
	return vttEscaper.Replace(s)
}
