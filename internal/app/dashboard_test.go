package app_test

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/httpapi"
	"github.com/callcat/callcat/internal/memwatch"
	"github.com/callcat/callcat/internal/sim"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chromiumMissing names the package that the browser tests need.
const chromiumMissing = "chromium not found: install the Debian package chromium " +
	"(apt-get install -y chromium, or run .ci/install-chromium.sh)"

// chromiumPath returns the Chromium binary. Without one the test is skipped,
// except under CI=true, where CI installs Chromium and its absence fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(chromiumMissing)
	}
	t.Skip(chromiumMissing)
	return ""
}

// browser is a headless Chromium tab and the console messages of its page.
type browser struct {
	ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// startBrowser starts headless Chromium with a fresh profile until the test
// ends. The flags keep it from contacting any host of its own accord:
// background networking, component updates, sync and QUIC are off.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)

	b := &browser{ctx: ctx}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		<-done
		if t.Failed() {
			t.Logf("browser console:\n%s", b.consoleText())
		}
	})

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

func (b *browser) consoleText() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var sb strings.Builder
	for _, m := range b.console {
		sb.WriteString(m.String())
		sb.WriteByte('\n')
	}
	return sb.String()
}

// exceptions returns the uncaught exceptions of the page.
func (b *browser) exceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.console {
		if m.IsException() {
			out = append(out, m.String())
		}
	}
	return out
}

func (b *browser) do(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS polls a JavaScript condition until it holds.
func (b *browser) waitJS(t *testing.T, timeout time.Duration, what, expr string) {
	t.Helper()
	waitFor(t, timeout, what, func() bool { return eval[bool](t, b, expr) })
}

// screenshot saves the visible page as a PNG under dir and checks that it
// decodes to a non-empty image.
func (b *browser) screenshot(t *testing.T, dir, name string) {
	t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	img, err := png.Decode(bytes.NewReader(buf))
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", name, err)
	}
	if r := img.Bounds(); r.Dx() < 100 || r.Dy() < 100 {
		t.Fatalf("screenshot %s is %dx%d, want a page", name, r.Dx(), r.Dy())
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// transcriptLine is one line of the call view as the page shows it.
type transcriptLine struct {
	Index      int    `json:"index"`
	Role       string `json:"role"`
	Content    string `json:"content"`
	InProgress bool   `json:"in_progress"`
}

const readTranscriptJS = `Array.from(document.querySelectorAll('#transcript li')).map((li) => ({
	index: Number(li.dataset.index),
	role: li.dataset.role,
	content: li.querySelector('.said').textContent,
	in_progress: li.classList.contains('in-progress'),
}))`

// TestDashboardInBrowser drives the dashboard in headless Chromium against
// the real service and the simulator. It covers the token prompt, the live
// table, keyboard navigation to a call and a transcript that grows line by
// line. It checks auto-scroll and its jump button, and cuts every stream from
// the server side to see the page resume without a duplicated line. Then it
// waits for the ended state and the analysis, and opens the health panel.
func TestDashboardInBrowser(t *testing.T) {
	const token = "apitok-browser-Kd83Jq2LmX"
	b := startBrowser(t)

	sm := startSimulation(t, sim.Config{
		Calls: 1, TotalCalls: 1, CallLength: 90 * time.Second, Speed: 5,
		PushTranscripts: true, AnalysisDelay: 4 * time.Second, Seed: 21,
	}, app.Config{
		Security: httpapi.Security{APITokens: []string{token}},
		Memory:   memwatch.Config{Interval: 200 * time.Millisecond, Window: 10 * time.Second},
	})
	shots := t.TempDir()

	// The API responds 401, so the page prompts for the token.
	b.do(t, chromedp.Navigate(sm.svc.URL()+"/"), chromedp.WaitVisible(chromedp.ID("token-input")))
	b.do(t,
		chromedp.SendKeys(chromedp.ID("token-input"), token),
		chromedp.Click(chromedp.CSS("#token-form button")),
	)
	b.waitJS(t, 10*time.Second, "the calls view", `!document.getElementById('calls-view').hidden`)
	if got := eval[string](t, b, `sessionStorage.getItem('callcat.apiToken')`); got != token {
		t.Fatalf("sessionStorage token=%q, want the token entered", got)
	}

	simDone := make(chan struct{})
	go func() {
		defer close(simDone)
		sm.run(t, 2*time.Minute)
	}()
	defer func() { <-simDone }()

	// The call appears in the live table, its numbers masked.
	b.waitJS(t, 20*time.Second, "a live call row", `document.querySelector('#live-rows tr[data-call-id]') !== null`)
	id := eval[string](t, b, `document.querySelector('#live-rows tr').dataset.callId`)
	info, ok := sm.sim.Call(id)
	if !ok {
		t.Fatalf("live table shows call %q, which the simulator does not know", id)
	}
	b.waitJS(t, 10*time.Second, "an elapsed time", `/^\d+:\d\d$/.test(document.querySelector('#live-rows tr .elapsed').textContent)`)
	from := eval[string](t, b, `document.querySelector('#live-rows tr').children[3].textContent`)
	if !strings.Contains(from, "•••") {
		t.Fatalf("from=%q, want a masked number", from)
	}
	b.screenshot(t, shots, "live.png")

	// Enter on the focused row opens the call.
	b.do(t, chromedp.Focus(chromedp.CSS(`#live-rows tr[data-call-id]`)), chromedp.KeyEvent(kb.Enter))
	b.waitJS(t, 5*time.Second, "the call view", `location.hash === '#/calls/`+id+`' && !document.getElementById('call-view').hidden`)

	// The transcript grows one utterance at a time.
	lineCount := func() int { return eval[int](t, b, `document.querySelectorAll('#transcript li').length`) }
	seen := map[int]bool{}
	waitFor(t, 30*time.Second, "three utterances", func() bool {
		n := lineCount()
		seen[n] = true
		return n >= 3
	})

	// Auto-scroll stops when the reader scrolls up, and the button jumps
	// back. The box is made small so that three lines overflow it.
	eval[chromedp.Void](t, b, `(() => { const tr = document.getElementById('transcript'); tr.style.height = '80px'; tr.style.minHeight = '0'; })()`)
	eval[chromedp.Void](t, b, `(() => { const tr = document.getElementById('transcript'); tr.scrollTop = tr.scrollHeight; })()`)
	b.waitJS(t, 5*time.Second, "the small box to overflow", `(() => { const tr = document.getElementById('transcript'); return tr.scrollTop > 40; })()`)
	eval[chromedp.Void](t, b, `document.getElementById('transcript').scrollTop = 0`)
	b.waitJS(t, 30*time.Second, "the jump-to-live button", `!document.getElementById('jump-live').hidden`)
	if top := eval[int](t, b, `document.getElementById('transcript').scrollTop`); top != 0 {
		t.Fatalf("scrollTop=%d after a new line, want 0: the view followed although the reader scrolled up", top)
	}
	b.do(t, chromedp.Click(chromedp.ID("jump-live")))
	b.waitJS(t, 5*time.Second, "the view to follow again", `(() => {
		const tr = document.getElementById('transcript');
		return document.getElementById('jump-live').hidden && tr.scrollHeight - tr.scrollTop - tr.clientHeight < 40;
	})()`)
	eval[chromedp.Void](t, b, `(() => { const tr = document.getElementById('transcript'); tr.style.height = ''; tr.style.minHeight = ''; })()`)
	if eval[bool](t, b, `document.querySelector('#transcript li:last-child').classList.contains('in-progress')`) != true {
		t.Fatalf("the last line of a live call is not marked in progress")
	}

	// Cut every stream from the server side; the page reconnects.
	atCut := lineCount()
	if eval[string](t, b, `document.querySelector('#call-status .badge').dataset.status`) != "ongoing" {
		t.Fatalf("the call ended before the cut; lengthen it")
	}
	sm.svc.Streams.CloseAll()
	b.waitJS(t, 20*time.Second, "the call stream to reopen", `Number(document.body.dataset.callStreamOpens) >= 2`)

	// The call ends, and its analysis arrives.
	waitFor(t, 60*time.Second, "the ended state", func() bool {
		seen[lineCount()] = true
		return eval[string](t, b, `(document.querySelector('#call-status .badge') || {dataset: {}}).dataset.status || ''`) == "ended"
	})
	b.waitJS(t, 30*time.Second, "the analysis", `document.getElementById('analysis').dataset.state === 'ready'`)
	if text := eval[string](t, b, `document.getElementById('analysis').textContent`); !strings.Contains(text, "Successful") {
		t.Fatalf("analysis panel=%q, want the success flag", text)
	}
	if reason := eval[string](t, b, `document.getElementById('call-reason').textContent`); reason == "—" || reason == "" {
		t.Fatalf("ended reason=%q, want the disconnection reason", reason)
	}

	lines := eval[[]transcriptLine](t, b, readTranscriptJS)
	t.Run("GrewLineByLine", func(t *testing.T) {
		if len(seen) < 3 {
			t.Fatalf("line counts seen=%v, want the transcript to grow in steps", seen)
		}
		if len(lines) <= atCut {
			t.Fatalf("lines=%d after the cut at %d, want more after resuming", len(lines), atCut)
		}
	})
	t.Run("NoDuplicateLine", func(t *testing.T) {
		for i, l := range lines {
			if l.Index != i {
				t.Fatalf("line %d has index %d, want %d: a line is missing or repeated", i, l.Index, i)
			}
			if l.InProgress {
				t.Fatalf("line %d still in progress after the end", i)
			}
		}
		utterances := make([]callcat.Utterance, len(lines))
		for i, l := range lines {
			utterances[i] = callcat.Utterance{Role: l.Role, Content: l.Content}
		}
		info, _ = sm.sim.Call(id)
		if got := callcat.TranscriptText(utterances); got != info.FinalTranscript {
			t.Fatalf("page transcript=%q\nwant %q", got, info.FinalTranscript)
		}
	})
	b.screenshot(t, shots, "call.png")

	// The health panel draws the memory samples and derives rates.
	eval[chromedp.Void](t, b, `location.hash = '#/health'`)
	b.waitJS(t, 20*time.Second, "the health charts", `document.querySelector('#chart-heap svg polyline') !== null &&
		document.querySelector('#chart-goroutines svg polyline') !== null &&
		document.getElementById('tile-webhooks').textContent !== '—'`)
	if v := eval[string](t, b, `document.getElementById('verdict').dataset.verdict`); v == "" {
		t.Fatalf("no growth verdict")
	}
	b.screenshot(t, shots, "health.png")

	if ex := b.exceptions(); len(ex) > 0 {
		t.Fatalf("uncaught exceptions in the page:\n%s", strings.Join(ex, "\n"))
	}
	t.Logf("screenshots in %s; line counts seen %v", shots, keys(seen))
}

func keys(m map[int]bool) string {
	var parts []string
	for k := range m {
		parts = append(parts, strconv.Itoa(k))
	}
	return strings.Join(parts, ",")
}
