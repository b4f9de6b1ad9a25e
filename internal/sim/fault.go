package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults for zero Faults fields.
const (
	DefaultLatencyTailFactor = 10
	DefaultRetryAfter        = time.Second
	DefaultSlowBodyDuration  = time.Second
	DefaultOversizeBytes     = 9 << 20 // above callcat's default 8 MiB response cap
	DefaultLateWebhookAge    = 6 * time.Minute
)

// faultStream is the PCG stream of the fault generator. Scripts use the
// streams 1, 2, … (their start order), so the two never share draws.
const faultStream = 0x6661756c74 // "fault"

// Faults selects the failures the Sim injects. Each ratio is the share, from
// 0 to 1, of API requests, snapshots or webhooks that get the fault, drawn
// one by one from a generator seeded with Config.Seed. Which request gets a
// fault depends on the order requests arrive in, so only the ratios repeat
// from run to run. The zero value injects nothing and leaves the Sim's
// behaviour unchanged.
type Faults struct {
	// Latency delays every API response. LatencyTailRatio of the responses
	// wait LatencyTailFactor times as long instead (default factor 10).
	Latency           time.Duration
	LatencyTailRatio  float64
	LatencyTailFactor float64

	// The response faults below exclude each other: one draw per API request
	// picks at most one of them, so their ratios must add up to at most 1.

	// RateLimitRatio answers 429 with a Retry-After header of RetryAfter
	// rounded up to whole seconds (default 1 s). RetryAfterDateRatio of those
	// responses give the same delay as an HTTP-date instead, rounded up to the
	// next whole second.
	RateLimitRatio      float64
	RetryAfter          time.Duration
	RetryAfterDateRatio float64

	// ServerErrorRatio answers 500, 502, 503 or 504 with the provider's error
	// body.
	ServerErrorRatio float64

	// ResetRatio sends the status line, the headers with the full
	// Content-Length and part of the body, then resets the connection.
	ResetRatio float64

	// TruncateRatio answers with the real status and the body cut short, so
	// the body is not valid JSON. Content-Length matches the cut body.
	TruncateRatio float64

	// SlowBodyRatio sends the body in small pieces spread over
	// SlowBodyDuration (default 1 s).
	SlowBodyRatio    float64
	SlowBodyDuration time.Duration

	// OversizeRatio pads the body with trailing whitespace, which keeps it
	// valid JSON, to OversizeBytes plus one (default 9 MiB).
	OversizeRatio float64
	OversizeBytes int

	// UnknownFieldRatio adds fields the provider does not document to API
	// response bodies and webhooks, at the top level and inside the call.
	UnknownFieldRatio float64

	// TranscriptRewriteRatio shortens the last word of the last utterance in
	// live snapshots (get-call of an ongoing call and transcript_updated
	// before the end), as a speech recogniser revising its guess does. Word
	// timings stay, so the snapshot does not look older. Later snapshots carry
	// the full text again. Final transcripts are never rewritten.
	TranscriptRewriteRatio float64

	// DuplicateWebhookRatio delivers a webhook a second time right after it
	// was accepted, with the same bytes and signature.
	DuplicateWebhookRatio float64

	// ReorderWebhookRatio holds a webhook back and sends it after the call's
	// next webhook. call_analyzed, always a call's last webhook, is never held.
	ReorderWebhookRatio float64

	// LateWebhookRatio signs a webhook LateWebhookAge in the past (default
	// 6 min), as the provider does when it retries a webhook minutes after
	// the first attempt with the original signature. Retries keep that
	// signature.
	LateWebhookRatio float64
	LateWebhookAge   time.Duration

	// UnknownEventRatio follows call_started or transcript_updated with a
	// webhook of an event callcat does not act on: transfer_started or
	// future_event, carrying the ongoing call without its transcript.
	UnknownEventRatio float64

	// WebhookFaultEvents limits the webhook faults (duplicate, reorder, late,
	// unknown fields, unknown events) to webhooks of these events. Empty means
	// every event.
	WebhookFaultEvents []string
}

// FaultCounts counts the faults injected since New.
type FaultCounts struct {
	Delayed        int64 // API responses delayed by Latency
	TailDelayed    int64 // of those, delayed by the long tail
	RateLimited    int64
	ServerErrors   int64
	Resets         int64
	Truncated      int64
	SlowBodies     int64
	Oversized      int64
	UnknownFields  int64 // API responses and webhooks with unknown fields
	Rewrites       int64 // live snapshots rewritten shorter
	Duplicates     int64 // duplicate webhook deliveries queued
	Reordered      int64 // webhooks sent after the call's next one
	LateWebhooks   int64 // webhooks signed LateWebhookAge in the past
	UnknownEvents  int64 // webhooks of unknown events queued
	WebhookFaulted int64 // webhooks queued with at least one fault
}

func (f *Faults) validate() error {
	ratios := []struct {
		name  string
		value float64
	}{
		{"LatencyTailRatio", f.LatencyTailRatio},
		{"RateLimitRatio", f.RateLimitRatio},
		{"RetryAfterDateRatio", f.RetryAfterDateRatio},
		{"ServerErrorRatio", f.ServerErrorRatio},
		{"ResetRatio", f.ResetRatio},
		{"TruncateRatio", f.TruncateRatio},
		{"SlowBodyRatio", f.SlowBodyRatio},
		{"OversizeRatio", f.OversizeRatio},
		{"UnknownFieldRatio", f.UnknownFieldRatio},
		{"TranscriptRewriteRatio", f.TranscriptRewriteRatio},
		{"DuplicateWebhookRatio", f.DuplicateWebhookRatio},
		{"ReorderWebhookRatio", f.ReorderWebhookRatio},
		{"LateWebhookRatio", f.LateWebhookRatio},
		{"UnknownEventRatio", f.UnknownEventRatio},
	}
	for _, r := range ratios {
		if !(r.value >= 0 && r.value <= 1) {
			return fmt.Errorf("sim: Faults.%s %v must be between 0 and 1", r.name, r.value)
		}
	}
	if sum := f.responseRatioSum(); sum > 1+1e-9 {
		return fmt.Errorf("sim: the response fault ratios (rate limit, server error, reset, truncate, slow body, oversize) add up to %v, more than 1", sum)
	}

	switch {
	case f.Latency < 0, f.RetryAfter < 0, f.SlowBodyDuration < 0, f.LateWebhookAge < 0:
		return errors.New("sim: fault durations must not be negative")
	case f.LatencyTailFactor < 0 || math.IsNaN(f.LatencyTailFactor) || math.IsInf(f.LatencyTailFactor, 0):
		return fmt.Errorf("sim: Faults.LatencyTailFactor %v must be a positive number", f.LatencyTailFactor)
	case f.OversizeBytes < 0:
		return errors.New("sim: Faults.OversizeBytes must not be negative")
	}
	return nil
}

func (f *Faults) responseRatioSum() float64 {
	return f.RateLimitRatio + f.ServerErrorRatio + f.ResetRatio + f.TruncateRatio + f.SlowBodyRatio + f.OversizeRatio
}

func (f *Faults) setDefaults() {
	f.WebhookFaultEvents = slices.Clone(f.WebhookFaultEvents)
	if f.LatencyTailFactor == 0 {
		f.LatencyTailFactor = DefaultLatencyTailFactor
	}
	if f.RetryAfter == 0 {
		f.RetryAfter = DefaultRetryAfter
	}
	if f.SlowBodyDuration == 0 {
		f.SlowBodyDuration = DefaultSlowBodyDuration
	}
	if f.OversizeBytes == 0 {
		f.OversizeBytes = DefaultOversizeBytes
	}
	if f.LateWebhookAge == 0 {
		f.LateWebhookAge = DefaultLateWebhookAge
	}
}

// apiEnabled reports whether any fault touches API responses.
func (f *Faults) apiEnabled() bool {
	return f.Latency > 0 || f.responseRatioSum() > 0 || f.UnknownFieldRatio > 0
}

// webhookEnabled reports whether any fault touches webhooks.
func (f *Faults) webhookEnabled() bool {
	return f.DuplicateWebhookRatio > 0 || f.ReorderWebhookRatio > 0 || f.LateWebhookRatio > 0 ||
		f.UnknownFieldRatio > 0 || f.UnknownEventRatio > 0 || f.TranscriptRewriteRatio > 0
}

// faultState draws faults from one generator and counts them.
type faultState struct {
	cfg Faults

	mu     sync.Mutex // guards rng and counts
	rng    *rand.Rand
	counts FaultCounts
}

func newFaultState(cfg Faults, seed int64) *faultState {
	return &faultState{cfg: cfg, rng: rand.New(rand.NewPCG(uint64(seed), faultStream))}
}

// hit draws one fault of ratio and counts it in *counter when it hits. A
// zero ratio draws nothing, so unused faults leave the sequence of the others
// unchanged.
func (fs *faultState) hit(ratio float64, counter *int64) bool {
	if ratio <= 0 {
		return false
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.rng.Float64() >= ratio {
		return false
	}
	*counter++
	return true
}

func (fs *faultState) snapshot() FaultCounts {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.counts
}

// responseFault is the fault chosen for one API response.
type responseFault uint8

const (
	responseNormal responseFault = iota
	responseRateLimit
	responseServerError
	responseReset
	responseTruncate
	responseSlow
	responseOversize
)

// apiDecision is what the faults do to one API request.
type apiDecision struct {
	fault          responseFault
	delay          time.Duration
	unknownFields  bool
	retryAfterDate bool    // responseRateLimit: an HTTP-date instead of seconds
	status         int     // responseServerError
	cut            float64 // responseReset, responseTruncate: share of the body sent, in (0, 1)
}

var serverErrorStatuses = []int{500, 502, 503, 504}

// decideAPI draws the faults of one API request.
func (fs *faultState) decideAPI() apiDecision {
	f := &fs.cfg
	var d apiDecision

	fs.mu.Lock()
	defer fs.mu.Unlock()

	if f.Latency > 0 {
		d.delay = f.Latency
		fs.counts.Delayed++
		if f.LatencyTailRatio > 0 && fs.rng.Float64() < f.LatencyTailRatio {
			d.delay = time.Duration(float64(f.Latency) * f.LatencyTailFactor)
			fs.counts.TailDelayed++
		}
	}

	if f.responseRatioSum() > 0 {
		u := fs.rng.Float64()
		choices := []struct {
			ratio   float64
			fault   responseFault
			counter *int64
		}{
			{f.RateLimitRatio, responseRateLimit, &fs.counts.RateLimited},
			{f.ServerErrorRatio, responseServerError, &fs.counts.ServerErrors},
			{f.ResetRatio, responseReset, &fs.counts.Resets},
			{f.TruncateRatio, responseTruncate, &fs.counts.Truncated},
			{f.SlowBodyRatio, responseSlow, &fs.counts.SlowBodies},
			{f.OversizeRatio, responseOversize, &fs.counts.Oversized},
		}
		for _, c := range choices {
			if u < c.ratio {
				d.fault = c.fault
				*c.counter++
				break
			}
			u -= c.ratio
		}
	}

	switch d.fault {
	case responseRateLimit:
		d.retryAfterDate = f.RetryAfterDateRatio > 0 && fs.rng.Float64() < f.RetryAfterDateRatio
	case responseServerError:
		d.status = serverErrorStatuses[fs.rng.IntN(len(serverErrorStatuses))]
	case responseReset, responseTruncate:
		d.cut = 0.1 + 0.8*fs.rng.Float64()
	}

	if f.UnknownFieldRatio > 0 && fs.rng.Float64() < f.UnknownFieldRatio {
		d.unknownFields = true
		fs.counts.UnknownFields++
	}
	return d
}

// Webhook fault flags, decided when a webhook is queued.
const (
	flagDuplicate uint8 = 1 << iota
	flagHold
	flagLate
	flagUnknownFields
	flagRewrite
)

// webhookFlags draws the faults of a webhook about to be queued, and whether
// an unknown event should follow it (jobNone when not).
func (fs *faultState) webhookFlags(job webhookJob) (flags uint8, extra jobKind) {
	f := &fs.cfg
	event := job.event()
	if len(f.WebhookFaultEvents) > 0 && !slices.Contains(f.WebhookFaultEvents, event) {
		return 0, jobNone
	}

	fs.mu.Lock()
	defer fs.mu.Unlock()
	draw := func(ratio float64, flag uint8, counter *int64) {
		if ratio > 0 && fs.rng.Float64() < ratio {
			flags |= flag
			*counter++
		}
	}

	draw(f.DuplicateWebhookRatio, flagDuplicate, &fs.counts.Duplicates)
	if job.kind != jobCallAnalyzed && f.ReorderWebhookRatio > 0 && fs.rng.Float64() < f.ReorderWebhookRatio {
		flags |= flagHold // counted in Reordered when the swap happens
	}
	draw(f.LateWebhookRatio, flagLate, &fs.counts.LateWebhooks)
	draw(f.UnknownFieldRatio, flagUnknownFields, &fs.counts.UnknownFields)
	if job.kind == jobTranscriptUpdated {
		draw(f.TranscriptRewriteRatio, flagRewrite, &fs.counts.Rewrites)
	}
	if flags != 0 {
		fs.counts.WebhookFaulted++
	}

	extra = jobNone
	if (job.kind == jobCallStarted || job.kind == jobTranscriptUpdated) &&
		f.UnknownEventRatio > 0 && fs.rng.Float64() < f.UnknownEventRatio {
		extra = jobTransferStarted
		if fs.rng.IntN(2) == 1 {
			extra = jobFutureEvent
		}
		fs.counts.UnknownEvents++
	}
	return flags, extra
}

func (fs *faultState) countReordered() {
	fs.mu.Lock()
	fs.counts.Reordered++
	fs.mu.Unlock()
}

// rewriteLive draws whether a live get-call snapshot is rewritten.
func (fs *faultState) rewriteLive() bool {
	return fs.hit(fs.cfg.TranscriptRewriteRatio, &fs.counts.Rewrites)
}

// rewriteLast returns snap with the last word of its last utterance cut to
// half its letters, or dropped when it has only one, as a speech recogniser
// revising its guess does. Word timings stay. snap is returned unchanged
// when the last utterance is a single one-letter word. snap itself, which
// shares its utterances with the script, is not modified.
func rewriteLast(snap snapshot) snapshot {
	n := len(snap.utterances)
	if n == 0 {
		return snap
	}
	orig := snap.utterances[n-1]
	words := slices.Clone(orig.Words)
	last := &words[len(words)-1]
	core := []rune(strings.TrimSpace(last.Word))
	switch {
	case len(core) >= 2:
		lead := last.Word[:len(last.Word)-len(strings.TrimLeft(last.Word, " "))]
		last.Word = lead + string(core[:len(core)/2])
	case len(words) >= 2:
		words = words[:len(words)-1]
		words[len(words)-1].Word = strings.TrimRight(words[len(words)-1].Word, " ")
	default:
		return snap
	}

	u := *orig
	u.Words = words
	var b strings.Builder
	for _, w := range words {
		b.WriteString(w.Word)
	}
	u.Content = b.String()

	out := snapshot{utterances: slices.Clone(snap.utterances), items: slices.Clone(snap.items)}
	out.utterances[n-1] = &u
	for i, it := range out.items {
		if it == any(orig) {
			out.items[i] = &u
		}
	}
	out.text = transcriptText(out.utterances)
	return out
}
