package sim

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Provider values the payloads use.
const (
	roleAgent              = "agent"
	roleUser               = "user"
	roleToolCallInvocation = "tool_call_invocation"
	roleToolCallResult     = "tool_call_result"
	roleNodeTransition     = "node_transition"

	directionInbound  = "inbound"
	directionOutbound = "outbound"

	statusRegistered   = "registered"
	statusOngoing      = "ongoing"
	statusEnded        = "ended"
	statusNotConnected = "not_connected"
	statusError        = "error"

	reasonAgentHangup   = "agent_hangup"
	reasonUserHangup    = "user_hangup"
	reasonManualStopped = "manual_stopped"
	reasonDialNoAnswer  = "dial_no_answer"
	reasonDialBusy      = "dial_busy"

	eventCallStarted       = "call_started"
	eventTranscriptUpdated = "transcript_updated"
	eventCallEnded         = "call_ended"
	eventCallAnalyzed      = "call_analyzed"
)

// callJSON is the provider's call object. Field order and presence follow the
// provider's payloads: omitzero drops what a given moment of the call does not
// carry, while an empty but non-nil transcript list is still sent.
type callJSON struct {
	CallID                    string           `json:"call_id"`
	CallType                  string           `json:"call_type"`
	AgentID                   string           `json:"agent_id"`
	AgentVersion              int              `json:"agent_version"`
	AgentName                 string           `json:"agent_name"`
	CallStatus                string           `json:"call_status"`
	Direction                 string           `json:"direction"`
	FromNumber                string           `json:"from_number"`
	ToNumber                  string           `json:"to_number"`
	Metadata                  json.RawMessage  `json:"metadata,omitzero"`
	DynamicVariables          json.RawMessage  `json:"retell_llm_dynamic_variables,omitzero"`
	DataStorageSetting        string           `json:"data_storage_setting"`
	OptInSignedURL            bool             `json:"opt_in_signed_url"`
	StartTimestamp            int64            `json:"start_timestamp,omitzero"`
	TelephonyIdentifier       *telephonyJSON   `json:"telephony_identifier,omitzero"`
	EndTimestamp              int64            `json:"end_timestamp,omitzero"`
	DurationMS                int64            `json:"duration_ms,omitzero"`
	DisconnectionReason       string           `json:"disconnection_reason,omitzero"`
	Transcript                *string          `json:"transcript,omitzero"`
	TranscriptObject          []*utteranceJSON `json:"transcript_object,omitzero"`
	TranscriptWithToolCalls   []any            `json:"transcript_with_tool_calls,omitzero"`
	CollectedDynamicVariables json.RawMessage  `json:"collected_dynamic_variables,omitzero"`
	RecordingURL              string           `json:"recording_url,omitzero"`
	RecordingMultiChannelURL  string           `json:"recording_multi_channel_url,omitzero"`
	PublicLogURL              string           `json:"public_log_url,omitzero"`
	Latency                   *latencyJSON     `json:"latency,omitzero"`
	LLMTokenUsage             *tokenUsageJSON  `json:"llm_token_usage,omitzero"`
	CallCost                  *callCostJSON    `json:"call_cost,omitzero"`
	CallAnalysis              *analysisJSON    `json:"call_analysis,omitzero"`
}

type telephonyJSON struct {
	TwilioCallSID string `json:"twilio_call_sid"`
}

// utteranceJSON is a spoken item of transcript_object and
// transcript_with_tool_calls. Concatenating the words gives the content.
type utteranceJSON struct {
	Role     string            `json:"role"`
	Content  string            `json:"content"`
	Words    []wordJSON        `json:"words"`
	Metadata *responseMetaJSON `json:"metadata,omitzero"`
}

// wordJSON times one word in seconds from the start of the call audio.
type wordJSON struct {
	Word  string  `json:"word"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// responseMetaJSON is the metadata the provider puts on agent utterances.
type responseMetaJSON struct {
	ResponseID int `json:"response_id"`
}

type toolInvocationJSON struct {
	Role       string `json:"role"`
	ToolCallID string `json:"tool_call_id"`
	Name       string `json:"name"`
	Arguments  string `json:"arguments"` // stringified JSON, as the provider sends it
}

type toolResultJSON struct {
	Role       string `json:"role"`
	ToolCallID string `json:"tool_call_id"`
	Successful bool   `json:"successful"`
	Content    string `json:"content"`
}

type nodeTransitionJSON struct {
	Role           string `json:"role"`
	FormerNodeID   string `json:"former_node_id"`
	FormerNodeName string `json:"former_node_name"`
	NewNodeID      string `json:"new_node_id"`
	NewNodeName    string `json:"new_node_name"`
	TransitionType string `json:"transition_type"`
}

// latencyJSON holds per-component latency in milliseconds.
type latencyJSON struct {
	E2E *latencyStatJSON `json:"e2e,omitzero"`
	LLM *latencyStatJSON `json:"llm,omitzero"`
	TTS *latencyStatJSON `json:"tts,omitzero"`
}

type latencyStatJSON struct {
	P50    int   `json:"p50"`
	P90    int   `json:"p90"`
	P95    int   `json:"p95"`
	P99    int   `json:"p99"`
	Max    int   `json:"max"`
	Min    int   `json:"min"`
	Num    int   `json:"num"`
	Values []int `json:"values"`
}

type tokenUsageJSON struct {
	Values      []int   `json:"values"`
	Average     float64 `json:"average"`
	NumRequests int     `json:"num_requests"`
}

// callCostJSON gives the call's cost in cents.
type callCostJSON struct {
	ProductCosts           []productCostJSON `json:"product_costs"`
	TotalDurationSeconds   int               `json:"total_duration_seconds"`
	TotalDurationUnitPrice float64           `json:"total_duration_unit_price"`
	CombinedCost           float64           `json:"combined_cost"`
}

type productCostJSON struct {
	Product   string  `json:"product"`
	UnitPrice float64 `json:"unit_price"` // cents per second
	Cost      float64 `json:"cost"`
}

type analysisJSON struct {
	CallSummary        string          `json:"call_summary"`
	InVoicemail        bool            `json:"in_voicemail"`
	UserSentiment      string          `json:"user_sentiment"`
	CallSuccessful     bool            `json:"call_successful"`
	CustomAnalysisData json.RawMessage `json:"custom_analysis_data"`
}

type webhookJSON struct {
	Event string    `json:"event"`
	Call  *callJSON `json:"call"`
}

type errorJSON struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type listCallsJSON struct {
	Items         []*callJSON `json:"items"`
	HasMore       bool        `json:"has_more"`
	PaginationKey string      `json:"pagination_key,omitzero"`
	Total         *int        `json:"total,omitzero"`
}

// encodeJSON marshals v the way the provider serialises: compact, with <, >
// and & left as they are, and no trailing newline.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// view selects which parts of the call object a payload carries. Each
// payload kind of the provider is one combination.
type view struct {
	status     string
	connected  bool    // start_timestamp and telephony_identifier
	transcript bool    // transcript, transcript_object, transcript_with_tool_calls
	at         float64 // transcript offset in simulated seconds since connect
	ended      bool    // end_timestamp, duration_ms, disconnection_reason
	postCall   bool    // recordings, logs, latency, token usage, cost, collected variables
	analysis   bool
	rewrite    bool // shorten the last utterance's last word (Faults.TranscriptRewriteRatio)
}

// callObject builds the call object of c as view v selects it. st is a copy
// of c's mutable state taken under Sim.mu; the script is immutable.
func (s *Sim) callObject(c *call, st callState, v view) *callJSON {
	sc := c.sc
	obj := &callJSON{
		CallID:             c.id,
		CallType:           "phone_call",
		AgentID:            sc.agentID,
		AgentVersion:       sc.agentVersion,
		AgentName:          sc.scenario.agentName,
		CallStatus:         v.status,
		Direction:          sc.direction,
		FromNumber:         sc.from,
		ToNumber:           sc.to,
		Metadata:           sc.metadata,
		DynamicVariables:   sc.dynamicVariables,
		DataStorageSetting: "everything",
		OptInSignedURL:     false,
	}

	if v.connected {
		obj.StartTimestamp = c.startMS()
		obj.TelephonyIdentifier = &telephonyJSON{TwilioCallSID: sc.twilioSID}
	}
	if v.ended && st.end != nil {
		obj.EndTimestamp = st.end.endMS
		if v.connected {
			obj.DurationMS = st.end.durationMS
		}
		obj.DisconnectionReason = st.reason
	}
	if v.transcript {
		snap := sc.snapshot(v.at)
		if v.rewrite {
			snap = rewriteLast(snap)
		}
		obj.Transcript = &snap.text
		obj.TranscriptObject = snap.utterances
		obj.TranscriptWithToolCalls = snap.items
	}
	if v.postCall && st.end != nil {
		obj.CollectedDynamicVariables = sc.collected
		obj.RecordingURL = "https://recordings.example.com/" + c.id + "/recording.wav"
		obj.RecordingMultiChannelURL = "https://recordings.example.com/" + c.id + "/recording_multichannel.wav"
		obj.PublicLogURL = "https://logs.example.com/" + c.id + "/public.log"
		obj.Latency = st.end.latency
		obj.LLMTokenUsage = st.end.tokenUsage
		obj.CallCost = st.end.cost
	}
	if v.analysis {
		obj.CallAnalysis = sc.analysis(st)
	}
	return obj
}

// currentView returns the view get-call shows for a call in state st at
// simulated time simT (seconds since the call was created).
func (s *Sim) currentView(c *call, st callState, simT float64) view {
	switch st.status {
	case statusRegistered:
		return view{status: statusRegistered}
	case statusOngoing:
		v := view{status: statusOngoing, connected: true}
		if s.cfg.LiveTranscript {
			v.transcript = true
			v.at = min(simT, st.endAt) - c.sc.ring
		}
		return v
	default:
		if !st.connected {
			return view{status: st.status, ended: true, analysis: st.analyzed}
		}
		return view{
			status:     st.status,
			connected:  true,
			transcript: true,
			at:         st.endAt - c.sc.ring,
			ended:      true,
			postCall:   true,
			analysis:   st.analyzed,
		}
	}
}

// transcriptText formats utterances as the provider's transcript string:
// one "Agent: …" or "User: …" line per utterance, each ending in a newline.
func transcriptText(utterances []*utteranceJSON) string {
	var b strings.Builder
	for _, u := range utterances {
		switch u.Role {
		case roleAgent:
			b.WriteString("Agent: ")
		case roleUser:
			b.WriteString("User: ")
		default:
			b.WriteString(u.Role + ": ")
		}
		b.WriteString(u.Content)
		b.WriteByte('\n')
	}
	return b.String()
}
