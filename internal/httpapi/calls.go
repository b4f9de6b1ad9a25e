package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/export"
)

// callView is the JSON shape of a call in list and detail responses.
// Unknown values are null rather than absent, so clients see every field.
type callView struct {
	CallID              string          `json:"call_id"`
	Status              callcat.Status  `json:"status"`
	CallType            *string         `json:"call_type"`
	Direction           *string         `json:"direction"`
	FromNumber          *string         `json:"from_number"`
	ToNumber            *string         `json:"to_number"`
	AgentID             *string         `json:"agent_id"`
	StartTimestamp      *int64          `json:"start_timestamp"`
	EndTimestamp        *int64          `json:"end_timestamp"`
	DurationMS          *int64          `json:"duration_ms"`
	DisconnectionReason *string         `json:"disconnection_reason"`
	UtteranceCount      int             `json:"utterance_count"`
	Metadata            json.RawMessage `json:"metadata,omitempty"`
	CallAnalysis        json.RawMessage `json:"call_analysis,omitempty"`
}

func newCallView(c *callcat.Call, detail bool) callView {
	v := callView{
		CallID:              c.ID,
		Status:              c.Status,
		CallType:            nullable(c.Type),
		Direction:           nullable(c.Direction),
		FromNumber:          nullable(c.FromNumber),
		ToNumber:            nullable(c.ToNumber),
		AgentID:             nullable(c.AgentID),
		StartTimestamp:      c.StartTimestamp,
		EndTimestamp:        c.EndTimestamp,
		DurationMS:          c.DurationMS,
		DisconnectionReason: nullable(c.DisconnectionReason),
		UtteranceCount:      c.UtteranceCount,
	}
	if detail {
		v.Metadata = jsonOrNull(c.Metadata)
		v.CallAnalysis = jsonOrNull(c.Analysis)
	}
	return v
}

// newSummaryView returns the call as lists and the lifecycle stream carry
// it: the detail fields without the metadata, and call_analysis once it is
// stored, so a dashboard can show each call's outcome without reading the
// call itself.
func newSummaryView(c *callcat.Call) callView {
	v := newCallView(c, false)
	if len(c.Analysis) > 0 {
		v.CallAnalysis = c.Analysis
	}
	return v
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func jsonOrNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	return raw
}

type listCallsResponse struct {
	Calls      []callView `json:"calls"`
	NextCursor string     `json:"next_cursor"`
}

// handleListCalls serves GET /v1/calls?status=live|ended|all&limit=N&cursor=C
// with the optional filters of parseFieldFilters.
// Items carry call_analysis once it is stored, but never the metadata.
func (s *server) handleListCalls() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()

		f := callcat.CallFilter{Status: callcat.FilterAll, Cursor: q.Get("cursor")}
		switch status := q.Get("status"); status {
		case "", "all":
		case "live":
			f.Status = callcat.FilterLive
		case "ended":
			f.Status = callcat.FilterEnded
		default:
			s.writeError(w, http.StatusBadRequest, "invalid status "+strconv.Quote(status)+": use live, ended or all")
			return
		}

		if raw := q.Get("limit"); raw != "" {
			n, err := strconv.Atoi(raw)
			if err != nil || n < 1 || n > callcat.MaxPageSize {
				s.writeError(w, http.StatusBadRequest, "invalid limit "+strconv.Quote(raw)+": use 1 to "+strconv.Itoa(callcat.MaxPageSize))
				return
			}
			f.Limit = n
		}

		if err := parseFieldFilters(q, &f); err != nil {
			s.writeError(w, http.StatusBadRequest, err.Error())
			return
		}

		page, err := s.cfg.Store.Calls(r.Context(), f)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}

		resp := listCallsResponse{Calls: make([]callView, 0, len(page.Calls)), NextCursor: page.NextCursor}
		for i := range page.Calls {
			resp.Calls = append(resp.Calls, newSummaryView(&page.Calls[i]))
		}
		s.writeJSON(w, http.StatusOK, resp)
	})
}

// handleGetCall serves GET /v1/calls/{id}.
func (s *server) handleGetCall() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call, err := s.cfg.Store.Call(r.Context(), r.PathValue("id"))
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		s.writeJSON(w, http.StatusOK, newCallView(&call, true))
	})
}

type transcriptResponse struct {
	CallID     string              `json:"call_id"`
	Status     callcat.Status      `json:"status"`
	Utterances []callcat.Utterance `json:"utterances"`
}

// handleTranscript serves GET /v1/calls/{id}/transcript?format=json|text|vtt|srt.
// The text form equals the provider's own transcript string of an ended call.
// The subtitle forms leave out utterances without word timings.
func (s *server) handleTranscript() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		format := r.URL.Query().Get("format")
		switch format {
		case "", "json", "text", "vtt", "srt":
		default:
			s.writeError(w, http.StatusBadRequest, "invalid format "+strconv.Quote(format)+": use json, text, vtt or srt")
			return
		}

		id := r.PathValue("id")
		call, err := s.cfg.Store.Call(r.Context(), id)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		utterances, err := s.cfg.Store.Transcript(r.Context(), id)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}

		var text, contentType string
		switch format {
		case "text":
			text, contentType = callcat.TranscriptText(utterances), "text/plain; charset=utf-8"
		case "vtt":
			cues, _ := export.Cues(utterances)
			text, contentType = export.WebVTT(cues), "text/vtt; charset=utf-8"
		case "srt":
			cues, _ := export.Cues(utterances)
			text, contentType = export.SRT(cues), "application/x-subrip"
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(http.StatusOK)
			if _, err := w.Write([]byte(text)); err != nil {
				s.logger.Debug("write transcript failed", "call_id", id, "err", err)
			}
			return
		}

		for i := range utterances {
			if utterances[i].Words == nil {
				utterances[i].Words = []callcat.Word{}
			}
		}
		if utterances == nil {
			utterances = []callcat.Utterance{}
		}
		s.writeJSON(w, http.StatusOK, transcriptResponse{CallID: id, Status: call.Status, Utterances: utterances})
	})
}

func (s *server) handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// handleReadyz fails while the store is unreachable or the provider rejects
// the API key.
func (s *server) handleReadyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.cfg.Store.Ping(r.Context()); err != nil {
			s.limited.Log(r.Context(), slog.LevelError, "readyz_store", "readiness check: store unreachable", "err", err)
			s.writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "store unreachable"})
			return
		}
		if err := s.cfg.Tracker.Ready(); err != nil {
			s.writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
		s.writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

// formatBytes renders a byte count for messages, e.g. "16 MiB".
func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	default:
		return strconv.FormatInt(n, 10) + " bytes"
	}
}
