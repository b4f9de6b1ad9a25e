package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// stopDelay is the simulated time in seconds from a stop-call request to the
// end of the call.
const stopDelay = 0.8

// script is everything about a call that is decided when it starts: parties,
// content, word timings and the post-call figures. It is immutable, so
// payloads are built from it without holding Sim.mu.
type script struct {
	scenario     *scenario
	agentID      string
	agentVersion int
	direction    string
	from, to     string
	twilioSID    string

	metadata         json.RawMessage // nil when the call has none
	dynamicVariables json.RawMessage
	collected        json.RawMessage
	summary          string
	customAnalysis   json.RawMessage
	positive         bool // user sentiment of a completed call

	// notConnected calls give up after ring with notConnectedReason.
	notConnected       bool
	notConnectedReason string

	// ring is the simulated time in seconds from creation to connecting (or
	// to giving up). Every offset below counts from the connect.
	ring float64

	items       []item
	turnChanges []float64 // offsets at which the speaker changes: transcript_updated moments
	replies     []reply   // agent replies to the user, for latency and token usage

	naturalEnd    float64 // offset of the end unless stop-call ends the call earlier
	naturalReason string
	cutShort      bool // the caller hangs up before the script finishes
}

// item is one entry of transcript_with_tool_calls.
type item struct {
	at         float64        // offset since connect from which the item is visible
	utterance  *utteranceJSON // nil for tool calls and node transitions
	value      any            // the payload value of this item
	utterances int            // spoken utterances among items up to and including this one
}

// reply is one agent response to the user, with the figures the provider
// reports about it.
type reply struct {
	at         float64 // offset at which the agent starts speaking
	e2eMS      int
	llmMS      int
	ttsMS      int
	tokenCount int
}

// startOptions holds the fields of a create-phone-call request. The zero value
// lets the seed decide everything.
type startOptions struct {
	outbound         bool
	from, to         string
	agentID          string
	agentVersion     int
	requestPayload   bool // metadata and dynamicVariables come from the request, even when nil
	metadata         json.RawMessage
	dynamicVariables json.RawMessage
}

// agentNumbers are the simulated account's own numbers.
var agentNumbers = []string{"+15550100001", "+15550100002", "+15550100003", "+15550100004"}

// newScript decides a call's content. Everything is drawn from a generator
// seeded with (seed, seq), so the same seed and start order give the same call.
func newScript(cfg *Config, seq int64, opts *startOptions) *script {
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(seq)))
	sc := &script{}

	sc.notConnected = rng.Float64() < cfg.NotConnectedRatio
	outbound := opts.outbound || sc.notConnected
	sc.scenario = pickScenario(rng, outbound)
	sc.direction = sc.scenario.direction
	sc.agentID = agentID(sc.scenario.key)
	sc.agentVersion = sc.scenario.agentVersion

	first := firstNames[rng.IntN(len(firstNames))]
	name := first + " " + lastNames[rng.IntN(len(lastNames))]
	digits := fmt.Sprintf("%06d", rng.IntN(1_000_000))
	code := fmt.Sprintf("%s-%04d", sc.scenario.codePrefix, rng.IntN(10_000))
	fill := strings.NewReplacer(
		"{first}", first,
		"{name}", name,
		"{n}", digits,
		"{spoken}", spaced(digits),
		"{code}", code,
	)

	ownNumber := agentNumbers[rng.IntN(len(agentNumbers))]
	customer := fmt.Sprintf("+155501%05d", 10_000+rng.IntN(90_000))
	if sc.direction == directionOutbound {
		sc.from, sc.to = ownNumber, customer
	} else {
		sc.from, sc.to = customer, ownNumber
	}
	sc.twilioSID = "CA" + hexString(rng, 32)

	sc.metadata = json.RawMessage(fmt.Sprintf(`{"callcat_ref":"cc_%06d","campaign":%q}`, seq%1_000_000, sc.scenario.campaign))
	sc.dynamicVariables = json.RawMessage(fill.Replace(sc.scenario.dynamicVariables))
	sc.collected = json.RawMessage(fill.Replace(sc.scenario.collected))
	sc.summary = fill.Replace(sc.scenario.summary)
	sc.customAnalysis = json.RawMessage(fill.Replace(sc.scenario.customAnalysis))
	sc.positive = rng.Float64() < 0.8

	sc.applyOptions(opts)

	if sc.notConnected {
		if rng.Float64() < 0.7 {
			sc.notConnectedReason, sc.ring = reasonDialNoAnswer, between(rng, 20, 30)
		} else {
			sc.notConnectedReason, sc.ring = reasonDialBusy, between(rng, 2, 5)
		}
		return sc
	}
	if sc.direction == directionOutbound {
		sc.ring = between(rng, 2, 6)
	} else {
		sc.ring = between(rng, 0.5, 1.5)
	}

	length := cfg.CallLength.Seconds() * between(rng, 0.8, 1.2)
	sc.build(rng, fill, length)
	return sc
}

func (sc *script) applyOptions(opts *startOptions) {
	if opts.from != "" {
		sc.from = opts.from
	}
	if opts.to != "" {
		sc.to = opts.to
	}
	if opts.agentID != "" {
		sc.agentID = opts.agentID
	}
	if opts.agentVersion > 0 {
		sc.agentVersion = opts.agentVersion
	}
	if opts.requestPayload {
		sc.metadata = opts.metadata
		sc.dynamicVariables = opts.dynamicVariables
	}
}

func pickScenario(rng *rand.Rand, outbound bool) *scenario {
	if !outbound {
		return scenarios[rng.IntN(len(scenarios))]
	}
	var candidates []*scenario
	for _, s := range scenarios {
		if s.direction == directionOutbound {
			candidates = append(candidates, s)
		}
	}
	return candidates[rng.IntN(len(candidates))]
}

// build lays out the conversation: the opening, body steps in order, extra
// steps at random, then the closing, choosing how many steps fit in length
// simulated seconds.
func (sc *script) build(rng *rand.Rand, fill *strings.Replacer, length float64) {
	b := &builder{rng: rng, fill: fill, sc: sc}
	flow := rng.Float64() < 0.35 // conversation-flow agents report node transitions
	node := nodeRef{id: fmt.Sprintf("start-node-%d", 1_700_000_000_000+rng.Int64N(100_000_000_000)), name: "Greeting"}
	enter := func(name string) {
		if !flow || name == node.name {
			return
		}
		next := nodeRef{id: fmt.Sprintf("node-%d", 1_700_000_000_000+rng.Int64N(100_000_000_000)), name: name}
		b.nodeTransition(node, next)
		node = next
	}

	closing := sc.scenario.closing
	if rng.Float64() < 0.3 {
		// The caller hangs up after saying goodbye, before the agent's last line.
		closing = closing[:len(closing)-1]
	}
	reserve := estimate(closing)

	// A step is played when its middle fits before the closing, so the
	// call ends within about half a step of length.
	b.play(sc.scenario.opening)
	steps := 0
	fits := func(st step) bool { return b.t+estimate(st.turns)/2 <= length-reserve }
	for _, st := range sc.scenario.body {
		if !fits(st) {
			break
		}
		enter(st.node)
		b.play(st.turns)
		steps++
	}
	last := -1
	for steps > 0 {
		i := rng.IntN(len(sc.scenario.extra))
		if i == last {
			i = (i + 1) % len(sc.scenario.extra)
		}
		st := sc.scenario.extra[i]
		if !fits(st) {
			break
		}
		last = i
		enter(st.node)
		b.play(st.turns)
		steps++
	}
	enter("Wrap up")
	b.play(closing)

	sc.naturalEnd = b.t + between(rng, 0.6, 1.6)
	sc.naturalReason = reasonAgentHangup
	if b.lastRole == roleUser {
		sc.naturalReason = reasonUserHangup
	}
	if steps == 0 && sc.naturalEnd > 1.25*length {
		// Not even the opening and the closing fit in the length asked for,
		// so the caller hangs up in the middle of the conversation.
		sc.naturalEnd = max(length, 0.5)
		sc.naturalReason = reasonUserHangup
		sc.cutShort = true
	}
}

// estimate returns the rough simulated duration of turns in seconds.
func estimate(turns []turn) float64 {
	total := 0.0
	for _, t := range turns {
		if t.role == "" {
			total += 1.5
			continue
		}
		total += 1.0 + 0.33*float64(len(strings.Fields(t.text)))
	}
	return total
}

type nodeRef struct{ id, name string }

// builder appends items to a script and keeps the simulated clock of the
// conversation.
type builder struct {
	rng       *rand.Rand
	fill      *strings.Replacer
	sc        *script
	t         float64 // end of the latest item, in seconds since connect
	lastRole  string  // role of the latest utterance
	afterTool bool    // a tool result came after the latest utterance
	responses int     // agent utterances so far: the next response_id
	tokens    int     // LLM prompt size of the latest reply
}

func (b *builder) play(turns []turn) {
	for _, t := range turns {
		if t.role == "" {
			b.toolCall(t)
			continue
		}
		b.speak(t.role, b.fill.Replace(t.text))
	}
}

// speak appends one utterance with word timings. Pauses between turns follow
// what the provider's payloads show: the agent replies to the user after about
// a second (the end-to-end latency it reports), and the user replies faster.
func (b *builder) speak(role, text string) {
	var gap float64
	switch {
	case b.lastRole == "":
		gap = between(b.rng, 0.4, 0.8)
	case b.afterTool:
		gap = between(b.rng, 0.3, 0.7)
	case role == roleAgent && b.lastRole == roleUser:
		gap = between(b.rng, 0.7, 1.5)
	case role == roleUser:
		gap = between(b.rng, 0.35, 0.95)
	default:
		gap = between(b.rng, 0.25, 0.55)
	}
	start := b.t + gap

	if b.lastRole != "" && role != b.lastRole {
		b.sc.turnChanges = append(b.sc.turnChanges, roundTo(start, 4))
	}
	if role == roleAgent && b.lastRole == roleUser {
		b.addReply(start, gap)
	}

	words := timeWords(b.rng, role, text, start)
	u := &utteranceJSON{Role: role, Content: text, Words: words}
	if role == roleAgent {
		u.Metadata = &responseMetaJSON{ResponseID: b.responses}
		b.responses++
	}
	b.append(item{at: words[0].End, utterance: u, value: u})
	b.t = words[len(words)-1].End
	b.lastRole = role
	b.afterTool = false
}

func (b *builder) addReply(start, gap float64) {
	e2e := int(gap * 1000)
	llm := int(float64(e2e) * between(b.rng, 0.35, 0.55))
	if b.tokens == 0 {
		b.tokens = 1500 + b.rng.IntN(800)
	}
	b.tokens += 40 + b.rng.IntN(120)
	b.sc.replies = append(b.sc.replies, reply{
		at:         start,
		e2eMS:      e2e,
		llmMS:      llm,
		ttsMS:      180 + b.rng.IntN(140),
		tokenCount: b.tokens,
	})
}

// toolCall appends an invocation and its result after the latest utterance.
func (b *builder) toolCall(t turn) {
	id := hexString(b.rng, 16)
	invokedAt := b.t + between(b.rng, 0.15, 0.4)
	b.append(item{at: invokedAt, value: &toolInvocationJSON{
		Role:       roleToolCallInvocation,
		ToolCallID: id,
		Name:       t.tool,
		Arguments:  b.fill.Replace(t.args),
	}})
	answeredAt := invokedAt + between(b.rng, 0.4, 1.2)
	b.append(item{at: answeredAt, value: &toolResultJSON{
		Role:       roleToolCallResult,
		ToolCallID: id,
		Successful: true,
		Content:    b.fill.Replace(t.result),
	}})
	b.t = answeredAt
	b.afterTool = true
}

func (b *builder) nodeTransition(from, to nodeRef) {
	b.t += 0.02
	b.append(item{at: b.t, value: &nodeTransitionJSON{
		Role:           roleNodeTransition,
		FormerNodeID:   from.id,
		FormerNodeName: from.name,
		NewNodeID:      to.id,
		NewNodeName:    to.name,
		TransitionType: "normal",
	}})
}

func (b *builder) append(it item) {
	it.utterances = 0
	if n := len(b.sc.items); n > 0 {
		it.utterances = b.sc.items[n-1].utterances
	}
	if it.utterance != nil {
		it.utterances++
	}
	b.sc.items = append(b.sc.items, it)
}

// timeWords splits text into timed words the way the provider sends them:
// each word keeps its trailing space and the last has none, so the words
// concatenate to text. Agent speech (synthesised per sentence) instead moves
// the space before a word that starts a new sentence. Agent times carry four
// decimals and user times three, as in the provider's payloads.
func timeWords(rng *rand.Rand, role, text string, start float64) []wordJSON {
	tokens := strings.Fields(text)
	words := make([]wordJSON, len(tokens))
	decimals := 3
	perRune, base := 0.05, 0.16
	if role == roleAgent {
		decimals = 4
		perRune, base = 0.045, 0.14
	}

	t := start
	leading := false
	for i, tok := range tokens {
		last := i == len(tokens)-1
		sentenceEnd := strings.ContainsAny(tok[len(tok)-1:], ".?!")

		w := tok
		if leading {
			w = " " + w
		}
		leading = false
		switch {
		case last:
		case role == roleAgent && sentenceEnd:
			leading = true
		default:
			w += " "
		}

		d := (base + perRune*float64(utf8.RuneCountInString(tok))) * between(rng, 0.85, 1.15)
		words[i] = wordJSON{Word: w, Start: roundTo(t, decimals), End: roundTo(t+d, decimals)}

		gap := between(rng, 0.004, 0.04)
		if sentenceEnd {
			gap = between(rng, 0.15, 0.3)
		} else if role == roleUser && rng.Float64() < 0.15 {
			gap = between(rng, 0.1, 0.3) // a short hesitation
		}
		t += d + gap
	}
	return words
}

// snapshot is the transcript as the provider would report it at one moment.
type snapshot struct {
	items      []any
	utterances []*utteranceJSON
	text       string
}

// snapshot returns the transcript at offset at (simulated seconds since
// connect). An utterance being spoken shows the words finished so far, and
// later snapshots replace it, at the same index, with the longer text.
func (sc *script) snapshot(at float64) snapshot {
	n := sort.Search(len(sc.items), func(i int) bool { return sc.items[i].at > at })
	snap := snapshot{items: make([]any, n)}
	if n > 0 {
		snap.utterances = make([]*utteranceJSON, 0, sc.items[n-1].utterances)
	} else {
		snap.utterances = []*utteranceJSON{}
	}

	for i := range n {
		it := sc.items[i]
		value := it.value
		if u := it.utterance; u != nil {
			if i == n-1 && u.Words[len(u.Words)-1].End > at {
				u = partial(u, at)
				value = u
			}
			snap.utterances = append(snap.utterances, u)
		}
		snap.items[i] = value
	}
	snap.text = transcriptText(snap.utterances)
	return snap
}

// partial returns u cut to the words that ended by at, without the trailing
// space of the last one, as a live transcript shows a sentence in progress.
func partial(u *utteranceJSON, at float64) *utteranceJSON {
	k := sort.Search(len(u.Words), func(i int) bool { return u.Words[i].End > at })
	words := slices.Clone(u.Words[:k])
	words[k-1].Word = strings.TrimRight(words[k-1].Word, " ")

	var b strings.Builder
	for _, w := range words {
		b.WriteString(w.Word)
	}
	cut := *u
	cut.Content = b.String()
	cut.Words = words
	return &cut
}

// utterancesAt returns how many utterances are visible at offset at.
func (sc *script) utterancesAt(at float64) int {
	n := sort.Search(len(sc.items), func(i int) bool { return sc.items[i].at > at })
	if n == 0 {
		return 0
	}
	return sc.items[n-1].utterances
}

// endInfo holds the fields a call gains when it ends.
type endInfo struct {
	endMS      int64
	durationMS int64
	latency    *latencyJSON
	tokenUsage *tokenUsageJSON
	cost       *callCostJSON
}

// Per-second prices in cents of the products a simulated call uses.
var products = []productCostJSON{
	{Product: "elevenlabs_tts", UnitPrice: 0.1166667},
	{Product: "gpt_4_1", UnitPrice: 0.0333333},
	{Product: "retell_platform", UnitPrice: 0.0833333},
	{Product: "retell_telephony", UnitPrice: 0.025},
}

// connectedEnd computes the end fields of a call that connected at startMS and
// ended at offset end (seconds since connect). Only the agent replies spoken
// before the end count towards latency and token usage.
func (sc *script) connectedEnd(startMS int64, end float64) *endInfo {
	duration := int64(math.Round(end * 1000))
	info := &endInfo{endMS: startMS + duration, durationMS: duration}

	var e2e, llm, tts, tokens []int
	for _, r := range sc.replies {
		if r.at > end {
			break
		}
		e2e = append(e2e, r.e2eMS)
		llm = append(llm, r.llmMS)
		tts = append(tts, r.ttsMS)
		tokens = append(tokens, r.tokenCount)
	}
	if len(e2e) > 0 {
		info.latency = &latencyJSON{E2E: latencyStat(e2e), LLM: latencyStat(llm), TTS: latencyStat(tts)}
		sum := 0
		for _, v := range tokens {
			sum += v
		}
		info.tokenUsage = &tokenUsageJSON{
			Values:      tokens,
			Average:     roundTo(float64(sum)/float64(len(tokens)), 4),
			NumRequests: len(tokens),
		}
	}

	seconds := int((duration + 999) / 1000)
	cost := &callCostJSON{TotalDurationSeconds: seconds}
	for _, p := range products {
		p.Cost = roundTo(p.UnitPrice*float64(seconds), 4)
		cost.ProductCosts = append(cost.ProductCosts, p)
		cost.TotalDurationUnitPrice += p.UnitPrice
		cost.CombinedCost += p.Cost
	}
	cost.TotalDurationUnitPrice = roundTo(cost.TotalDurationUnitPrice, 7)
	cost.CombinedCost = roundTo(cost.CombinedCost, 4)
	info.cost = cost
	return info
}

// latencyStat summarises values with nearest-rank percentiles.
func latencyStat(values []int) *latencyStatJSON {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	rank := func(q float64) int {
		i := int(math.Ceil(q*float64(len(sorted)))) - 1
		return sorted[max(i, 0)]
	}
	return &latencyStatJSON{
		P50:    rank(0.5),
		P90:    rank(0.9),
		P95:    rank(0.95),
		P99:    rank(0.99),
		Max:    sorted[len(sorted)-1],
		Min:    sorted[0],
		Num:    len(values),
		Values: values,
	}
}

// analysis returns the post-call analysis of a call that ended as st describes.
func (sc *script) analysis(st callState) *analysisJSON {
	a := &analysisJSON{UserSentiment: "Neutral", CustomAnalysisData: json.RawMessage(`{}`)}
	switch {
	case !st.connected && st.reason == reasonDialBusy:
		a.CallSummary, a.UserSentiment = "The line was busy.", "Unknown"
	case !st.connected && st.reason == reasonManualStopped:
		a.CallSummary, a.UserSentiment = "The call was stopped before anyone answered.", "Unknown"
	case !st.connected:
		a.CallSummary, a.UserSentiment = "The call was not answered.", "Unknown"
	case st.reason == reasonManualStopped:
		a.CallSummary = "The call was stopped before the conversation finished."
	case sc.cutShort:
		a.CallSummary = "The caller hung up before the conversation finished."
	default:
		a.CallSummary = sc.summary
		a.CallSuccessful = true
		a.CustomAnalysisData = sc.customAnalysis
		if sc.positive {
			a.UserSentiment = "Positive"
		}
	}
	return a
}

// agentID derives a stable agent id ("agent_" and 26 hex digits) from a
// scenario key, so every call of one scenario has the same agent.
func agentID(key string) string {
	sum := sha256.Sum256([]byte("callcat-sim/" + key))
	return "agent_" + hex.EncodeToString(sum[:])[:26]
}

func hexString(rng *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[rng.IntN(16)]
	}
	return string(b)
}

// spaced returns s with a space between characters, as a caller spells a
// number out.
func spaced(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func between(rng *rand.Rand, lo, hi float64) float64 {
	return lo + (hi-lo)*rng.Float64()
}

func roundTo(x float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(x*p) / p
}
