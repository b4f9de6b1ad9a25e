package sim

import (
	"bytes"
	"cmp"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// maxRequestBody bounds API request bodies, in bytes.
const maxRequestBody = 1 << 20

// List-calls page sizes, as the provider documents them.
const (
	defaultListLimit = 50
	maxListLimit     = 1000
)

// e164 matches an E.164 phone number: a plus sign and up to 15 digits.
var e164 = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)

// routes serves the provider API. Config.Faults apply to authorised
// requests only, so a request with a wrong key still gets 401.
func (s *Sim) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /v2/get-call/{call_id}", s.requireKey(s.withFaults(s.handleGetCall())))
	mux.Handle("POST /v2/create-phone-call", s.requireKey(s.withFaults(s.handleCreatePhoneCall())))
	mux.Handle("POST /v2/stop-call/{call_id}", s.requireKey(s.withFaults(s.handleStopCall())))
	mux.Handle("POST /v3/list-calls", s.requireKey(s.withFaults(s.handleListCalls())))
	if s.cfg.DebugRoutes {
		s.addDebugRoutes(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// requireKey responds 401 unless the request carries the API key as a bearer
// token.
func (s *Sim) requireKey(next http.Handler) http.Handler {
	want := []byte("Bearer " + s.cfg.APIKey)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			writeError(w, http.StatusUnauthorized, "API key is missing or invalid")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Sim) handleGetCall() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := s.now()
		s.mu.Lock()
		s.stats.GetCallRequests++
		c, ok := s.calls[r.PathValue("call_id")]
		var st callState
		if ok {
			st = c.state()
		}
		s.mu.Unlock()

		if !ok {
			writeError(w, http.StatusUnprocessableEntity, "no call with this id exists for this API key")
			return
		}
		v := s.currentView(c, st, c.simTime(now, s.cfg.Speed))
		if v.transcript && st.status == statusOngoing {
			v.rewrite = s.faults.rewriteLive()
		}
		writeJSON(w, http.StatusOK, s.callObject(c, st, v))
	})
}

// createPhoneCallRequest is the part of the create-phone-call body the
// simulator uses; other fields are accepted and ignored.
type createPhoneCallRequest struct {
	FromNumber           string          `json:"from_number"`
	ToNumber             string          `json:"to_number"`
	OverrideAgentID      *string         `json:"override_agent_id"`
	OverrideAgentVersion json.RawMessage `json:"override_agent_version"`
	Metadata             json.RawMessage `json:"metadata"`
	DynamicVariables     json.RawMessage `json:"retell_llm_dynamic_variables"`
}

func (s *Sim) handleCreatePhoneCall() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req createPhoneCallRequest
		if err := decodeBody(w, r, &req); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		opts, err := req.options()
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}

		now := s.now()
		s.mu.Lock()
		if s.live >= s.cfg.MaxLiveCalls {
			s.mu.Unlock()
			writeError(w, http.StatusTooManyRequests, "concurrency limit reached, try again after a call ends")
			return
		}
		c := s.startLocked(now, opts)
		st := c.state()
		s.mu.Unlock()

		writeJSON(w, http.StatusCreated, s.callObject(c, st, view{status: statusRegistered}))
	})
}

// options validates the request and turns it into start options.
func (req *createPhoneCallRequest) options() (*startOptions, error) {
	switch {
	case req.FromNumber == "":
		return nil, errors.New("from_number is required")
	case !e164.MatchString(req.FromNumber):
		return nil, fmt.Errorf("from_number %q is not an E.164 phone number such as +15550100001", req.FromNumber)
	case req.ToNumber == "":
		return nil, errors.New("to_number is required")
	case !e164.MatchString(req.ToNumber):
		return nil, fmt.Errorf("to_number %q is not an E.164 phone number such as +15550100001", req.ToNumber)
	}

	opts := &startOptions{outbound: true, from: req.FromNumber, to: req.ToNumber, requestPayload: true}
	if req.OverrideAgentID != nil {
		if *req.OverrideAgentID == "" {
			return nil, errors.New("override_agent_id must not be empty")
		}
		opts.agentID = *req.OverrideAgentID
	}
	if v := req.OverrideAgentVersion; len(v) > 0 && v[0] != '"' && string(v) != "null" {
		// A version tag (a string) keeps the scenario's version.
		if err := json.Unmarshal(v, &opts.agentVersion); err != nil || opts.agentVersion < 0 {
			return nil, fmt.Errorf("override_agent_version %s is neither a version number nor a tag", v)
		}
	}

	if len(req.Metadata) > 0 && string(req.Metadata) != "null" {
		opts.metadata = compactJSON(req.Metadata)
	}
	if len(req.DynamicVariables) > 0 && string(req.DynamicVariables) != "null" {
		var vars map[string]string
		if err := json.Unmarshal(req.DynamicVariables, &vars); err != nil {
			return nil, errors.New("retell_llm_dynamic_variables must be an object of string values")
		}
		opts.dynamicVariables = compactJSON(req.DynamicVariables)
	}
	return opts, nil
}

func (s *Sim) handleStopCall() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := s.now()
		s.mu.Lock()
		c, ok := s.calls[r.PathValue("call_id")]
		stopped := ok && s.stopLocked(c, now)
		s.mu.Unlock()

		switch {
		case !ok:
			writeError(w, http.StatusUnprocessableEntity, "no call with this id exists for this API key")
		case !stopped:
			// NOTE: the provider lists 422 among stop-call's errors but does not
			// document the response for a call that already ended. 422 is a guess.
			writeError(w, http.StatusUnprocessableEntity, "the call has already ended")
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

// listCallsRequest is the body of POST /v3/list-calls.
type listCallsRequest struct {
	FilterCriteria map[string]json.RawMessage `json:"filter_criteria"`
	SortOrder      string                     `json:"sort_order"`
	Limit          *int                       `json:"limit"`
	Skip           *int                       `json:"skip"`
	PaginationKey  string                     `json:"pagination_key"`
	IncludeTotal   bool                       `json:"include_total"`
}

// enumFilter is a filter of type enum: the field's value must be one of Value.
type enumFilter struct {
	Type  string   `json:"type"`
	Op    string   `json:"op"`
	Value []string `json:"value"`
}

// listQuery is a validated list-calls request.
type listQuery struct {
	ascending bool
	limit     int
	skip      int
	after     *cursor
	enums     map[string][]string // call_status, call_type, direction
	agentIDs  []string
	total     bool
}

// cursor is a position in the listing: the sort key and start order of the
// last item of a page. Both are fixed when a call starts, so pages stay
// consistent while calls progress.
type cursor struct {
	key int64
	seq int64
}

// listEntry is a call as the listing orders and filters it.
type listEntry struct {
	c   *call
	st  callState
	key int64
}

func (s *Sim) handleListCalls() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req listCallsRequest
		if err := decodeBody(w, r, &req); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		q, err := req.query()
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}

		now := s.now()
		s.mu.Lock()
		entries := make([]listEntry, 0, len(s.calls))
		for _, c := range s.calls {
			e := listEntry{c: c, st: c.state(), key: c.listKey()}
			if q.match(e) {
				entries = append(entries, e)
			}
		}
		s.mu.Unlock()

		writeJSON(w, http.StatusOK, s.listPage(q, entries, now))
	})
}

// listKey orders calls: start_timestamp, or the creation time for a call that
// never connects. It is known when the call starts and never changes.
func (c *call) listKey() int64 {
	if c.sc.notConnected {
		return c.createdMS
	}
	return c.startMS()
}

func (s *Sim) listPage(q *listQuery, entries []listEntry, now time.Time) *listCallsJSON {
	slices.SortFunc(entries, func(a, b listEntry) int {
		order := cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.c.seq, b.c.seq))
		if q.ascending {
			return order
		}
		return -order
	})

	start := 0
	if q.after != nil {
		start = len(entries)
		for i, e := range entries {
			if q.afterCursor(e) {
				start = i
				break
			}
		}
	}
	start = min(start+q.skip, len(entries))
	end := min(start+q.limit, len(entries))

	page := &listCallsJSON{Items: make([]*callJSON, 0, end-start), HasMore: end < len(entries)}
	for _, e := range entries[start:end] {
		v := s.currentView(e.c, e.st, e.c.simTime(now, s.cfg.Speed))
		v.transcript = false // list items never carry transcripts
		page.Items = append(page.Items, s.callObject(e.c, e.st, v))
	}
	if page.HasMore && end > start {
		last := entries[end-1]
		page.PaginationKey = encodeCursor(cursor{key: last.key, seq: last.c.seq})
	}
	if q.total {
		n := len(entries)
		page.Total = &n
	}
	return page
}

// afterCursor reports whether e comes after the query's cursor in its order.
func (q *listQuery) afterCursor(e listEntry) bool {
	order := cmp.Or(cmp.Compare(e.key, q.after.key), cmp.Compare(e.c.seq, q.after.seq))
	if q.ascending {
		return order > 0
	}
	return order < 0
}

func (req *listCallsRequest) query() (*listQuery, error) {
	q := &listQuery{limit: defaultListLimit, enums: map[string][]string{}}

	switch req.SortOrder {
	case "", "descending":
	case "ascending":
		q.ascending = true
	default:
		return nil, fmt.Errorf("sort_order %q must be ascending or descending", req.SortOrder)
	}
	if req.Limit != nil {
		if *req.Limit < 1 || *req.Limit > maxListLimit {
			return nil, fmt.Errorf("limit %d must be between 1 and %d", *req.Limit, maxListLimit)
		}
		q.limit = *req.Limit
	}
	if req.Skip != nil {
		if *req.Skip < 0 {
			return nil, fmt.Errorf("skip %d must not be negative", *req.Skip)
		}
		if req.PaginationKey != "" {
			return nil, errors.New("use either skip or pagination_key, not both")
		}
		q.skip = *req.Skip
	}
	if req.PaginationKey != "" {
		c, err := decodeCursor(req.PaginationKey)
		if err != nil {
			return nil, err
		}
		q.after = &c
	}
	q.total = req.IncludeTotal

	for field, raw := range req.FilterCriteria {
		if err := q.addFilter(field, raw); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// enumValues lists the values an enum filter accepts per field. As with the
// provider, registered cannot be filtered on.
var enumValues = map[string][]string{
	"call_status": {statusNotConnected, statusOngoing, statusEnded, statusError},
	"call_type":   {"phone_call", "web_call"},
	"direction":   {directionInbound, directionOutbound},
}

func (q *listQuery) addFilter(field string, raw json.RawMessage) error {
	if field == "agent" {
		var agents []struct {
			AgentID string `json:"agent_id"`
		}
		if err := json.Unmarshal(raw, &agents); err != nil {
			return errors.New("filter_criteria.agent must be a list of {\"agent_id\": …}")
		}
		for _, a := range agents {
			q.agentIDs = append(q.agentIDs, a.AgentID)
		}
		return nil
	}

	allowed, ok := enumValues[field]
	if !ok {
		// NOTE: the provider accepts many more filter fields. The simulator
		// rejects them so that a caller never gets unfiltered results.
		return fmt.Errorf("filter_criteria.%s is not supported by the simulator: use agent, call_status, call_type or direction", field)
	}
	var f enumFilter
	if err := json.Unmarshal(raw, &f); err != nil || f.Type != "enum" || f.Op != "in" {
		return fmt.Errorf("filter_criteria.%s must be {\"type\":\"enum\",\"op\":\"in\",\"value\":[…]}", field)
	}
	for _, v := range f.Value {
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("filter_criteria.%s value %q must be one of %s", field, v, strings.Join(allowed, ", "))
		}
	}
	q.enums[field] = f.Value
	return nil
}

func (q *listQuery) match(e listEntry) bool {
	if values, ok := q.enums["call_status"]; ok && !slices.Contains(values, e.st.status) {
		return false
	}
	if values, ok := q.enums["call_type"]; ok && !slices.Contains(values, "phone_call") {
		return false
	}
	if values, ok := q.enums["direction"]; ok && !slices.Contains(values, e.c.sc.direction) {
		return false
	}
	if len(q.agentIDs) > 0 && !slices.Contains(q.agentIDs, e.c.sc.agentID) {
		return false
	}
	return true
}

// encodeCursor returns an opaque pagination key: "pk_" and 32 hex digits.
func encodeCursor(c cursor) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(c.key))
	binary.BigEndian.PutUint64(b[8:], uint64(c.seq))
	return "pk_" + hex.EncodeToString(b[:])
}

func decodeCursor(key string) (cursor, error) {
	raw, err := hex.DecodeString(strings.TrimPrefix(key, "pk_"))
	if err != nil || len(raw) != 16 || !strings.HasPrefix(key, "pk_") {
		return cursor{}, fmt.Errorf("pagination_key %q is invalid: pass the key of the previous page unchanged", key)
	}
	return cursor{
		key: int64(binary.BigEndian.Uint64(raw[:8])),
		seq: int64(binary.BigEndian.Uint64(raw[8:])),
	}, nil
}

// decodeBody reads a JSON request body of at most maxRequestBody bytes. An
// empty body decodes as {}.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		return fmt.Errorf("reading request body failed: %w", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("request body is not valid JSON for this endpoint: %w", err)
	}
	return nil
}

func compactJSON(raw json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw // unreachable: raw was decoded as valid JSON
	}
	return buf.Bytes()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := encodeJSON(v)
	if err != nil {
		status = http.StatusInternalServerError
		body, _ = encodeJSON(errorJSON{Status: "error", Message: "encoding the response failed"})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError writes the provider's error body with status.
func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, errorJSON{Status: "error", Message: message})
}
