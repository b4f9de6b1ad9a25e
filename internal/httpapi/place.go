package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
)

// Limits of POST /v1/calls.
const (
	// maxPlaceBodyBytes caps the request body; metadata takes most of it.
	maxPlaceBodyBytes = 64 << 10

	// MaxMetadataBytes caps the metadata object of a placed call.
	MaxMetadataBytes = 50 << 10

	// maxDynamicVariables caps the number of dynamic variables.
	maxDynamicVariables = 100

	// IdempotencyTTL is how long an Idempotency-Key is remembered.
	IdempotencyTTL = 24 * time.Hour

	// idempotencyWait bounds how long a retry waits for the first request
	// with its key; idempotencyPoll is how often it looks again.
	idempotencyWait = 10 * time.Second
	idempotencyPoll = 50 * time.Millisecond
)

var (
	e164Pattern           = regexp.MustCompile(`^\+[1-9]\d{1,14}$`)
	idempotencyKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
)

// placeCallRequest is the body of POST /v1/calls.
type placeCallRequest struct {
	FromNumber       string            `json:"from_number"`
	ToNumber         string            `json:"to_number"`
	AgentID          *string           `json:"agent_id"`
	Metadata         json.RawMessage   `json:"metadata"`
	DynamicVariables map[string]string `json:"dynamic_variables"`
}

// decodePlaceCall reads and validates the body, and returns the provider
// request and the hash that identifies the body for Idempotency-Key. The
// error message names the offending field.
func decodePlaceCall(w http.ResponseWriter, r *http.Request) (retell.CreatePhoneCallRequest, string, error) {
	var req placeCallRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPlaceBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return retell.CreatePhoneCallRequest{}, "", fmt.Errorf("request body exceeds %s", formatBytes(maxPlaceBodyBytes))
		}
		return retell.CreatePhoneCallRequest{}, "", fmt.Errorf("invalid JSON body: %v", err)
	}
	if dec.More() {
		return retell.CreatePhoneCallRequest{}, "", errors.New("invalid JSON body: more than one value")
	}

	switch {
	case req.FromNumber == "":
		return retell.CreatePhoneCallRequest{}, "", errors.New("from_number is required")
	case !e164Pattern.MatchString(req.FromNumber):
		return retell.CreatePhoneCallRequest{}, "", fmt.Errorf("from_number %q is not an E.164 number such as +15550100001", req.FromNumber)
	case req.ToNumber == "":
		return retell.CreatePhoneCallRequest{}, "", errors.New("to_number is required")
	case !e164Pattern.MatchString(req.ToNumber):
		return retell.CreatePhoneCallRequest{}, "", fmt.Errorf("to_number %q is not an E.164 number such as +15550100001", req.ToNumber)
	case req.AgentID != nil && *req.AgentID == "":
		return retell.CreatePhoneCallRequest{}, "", errors.New("agent_id must not be empty when given")
	case len(req.DynamicVariables) > maxDynamicVariables:
		return retell.CreatePhoneCallRequest{}, "", fmt.Errorf("dynamic_variables has %d entries, more than %d", len(req.DynamicVariables), maxDynamicVariables)
	}

	out := retell.CreatePhoneCallRequest{
		FromNumber:                req.FromNumber,
		ToNumber:                  req.ToNumber,
		RetellLLMDynamicVariables: req.DynamicVariables,
	}
	if req.AgentID != nil {
		out.OverrideAgentID = *req.AgentID
	}
	if len(req.Metadata) > 0 && !bytes.Equal(req.Metadata, []byte("null")) {
		if req.Metadata[0] != '{' {
			return retell.CreatePhoneCallRequest{}, "", errors.New("metadata must be a JSON object")
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, req.Metadata); err != nil {
			return retell.CreatePhoneCallRequest{}, "", fmt.Errorf("metadata: %v", err)
		}
		if compact.Len() > MaxMetadataBytes {
			return retell.CreatePhoneCallRequest{}, "", fmt.Errorf("metadata is %d bytes, more than %s", compact.Len(), formatBytes(MaxMetadataBytes))
		}
		out.Metadata = compact.Bytes()
	}

	hash, err := requestHash(out)
	if err != nil {
		return retell.CreatePhoneCallRequest{}, "", err
	}
	return out, hash, nil
}

// requestHash returns the hex SHA-256 of the request in a canonical form:
// object keys sorted at every depth and numbers as written, so that the same
// request sent with another key order or spacing has the same hash.
func requestHash(req retell.CreatePhoneCallRequest) (string, error) {
	var metadata any
	if len(req.Metadata) > 0 {
		dec := json.NewDecoder(bytes.NewReader(req.Metadata))
		dec.UseNumber()
		if err := dec.Decode(&metadata); err != nil {
			return "", fmt.Errorf("metadata: %v", err)
		}
	}
	canonical, err := json.Marshal(struct {
		From     string            `json:"from"`
		To       string            `json:"to"`
		Agent    string            `json:"agent"`
		Metadata any               `json:"metadata"`
		Vars     map[string]string `json:"vars"`
	}{req.FromNumber, req.ToNumber, req.OverrideAgentID, metadata, req.RetellLLMDynamicVariables})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:]), nil
}

// handlePlaceCall serves POST /v1/calls: it places an outbound call through
// the provider, stores it as registered and starts tracking it at once.
func (s *server) handlePlaceCall() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Provider == nil {
			s.writeError(w, http.StatusServiceUnavailable, "placing calls is not configured")
			return
		}
		key := r.Header.Get("Idempotency-Key")
		if _, set := r.Header["Idempotency-Key"]; set {
			if !idempotencyKeyPattern.MatchString(key) {
				s.writeError(w, http.StatusBadRequest, "Idempotency-Key must be 1 to 255 characters of A-Z, a-z, 0-9, _ and -")
				return
			}
			if s.cfg.Idempotency == nil {
				s.writeError(w, http.StatusBadRequest, "Idempotency-Key is not supported by this store")
				return
			}
		}

		req, hash, err := decodePlaceCall(w, r)
		if err != nil {
			s.writeError(w, http.StatusBadRequest, err.Error())
			return
		}

		if key == "" {
			status, body, retry := s.placeCall(r.Context(), req)
			writeRaw(w, status, body, retry, s.logger)
			return
		}

		rec, claimed, err := s.claimIdempotency(r.Context(), key, hash)
		switch {
		case errors.Is(err, errInProgress):
			s.writeError(w, http.StatusConflict, "a request with this Idempotency-Key is still in progress; retry later")
			return
		case err != nil:
			s.writeStoreError(w, r, err)
			return
		case !claimed && rec.RequestHash != hash:
			s.writeError(w, http.StatusConflict, "Idempotency-Key was already used with a different request body")
			return
		case !claimed:
			w.Header().Set("Idempotent-Replayed", "true")
			writeRaw(w, rec.Status, rec.Body, "", s.logger)
			return
		}

		// The provider request and the record's update run even when the
		// client goes away, so that a retry finds the call placed once.
		ctx := context.WithoutCancel(r.Context())
		status, body, retry := s.placeCall(ctx, req)
		if status == http.StatusCreated {
			err = s.cfg.Idempotency.CompleteIdempotency(ctx, key, status, body)
		} else {
			// Failures are not remembered: a retry tries again.
			// NOTE: a network error after the provider placed the call makes
			// such a retry place a second call; the provider takes no key.
			err = s.cfg.Idempotency.ReleaseIdempotency(ctx, key)
		}
		if err != nil {
			s.logger.Error("store idempotency record failed", "idempotency_key", key, "status", status, "err", err)
		}
		writeRaw(w, status, body, retry, s.logger)
	})
}

var errInProgress = errors.New("idempotency key in progress")

// claimIdempotency claims key, or waits up to idempotencyWait while the
// first request with it is in flight. It returns errInProgress when that
// request did not finish in time.
//
// NOTE: a process that stops between claim and completion leaves the record
// in flight, and the key then answers 409 until IdempotencyTTL passes.
func (s *server) claimIdempotency(ctx context.Context, key, hash string) (callcat.IdempotencyRecord, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, idempotencyWait)
	defer cancel()
	ticker := time.NewTicker(idempotencyPoll)
	defer ticker.Stop()
	for {
		rec, claimed, err := s.cfg.Idempotency.ClaimIdempotency(ctx, key, hash, s.cfg.Now(), IdempotencyTTL)
		if err != nil {
			if ctx.Err() != nil {
				return rec, false, errInProgress
			}
			return rec, false, err
		}
		if claimed || rec.Status != 0 || rec.RequestHash != hash {
			return rec, claimed, nil
		}
		select {
		case <-ctx.Done():
			return rec, false, errInProgress
		case <-ticker.C:
		}
	}
}

// placeCall places the call, stores it and starts tracking it. It returns
// the response status and JSON body, which the idempotency record keeps,
// and the Retry-After value of a 503.
func (s *server) placeCall(ctx context.Context, req retell.CreatePhoneCallRequest) (int, []byte, string) {
	created, err := s.cfg.Provider.CreatePhoneCall(ctx, req)
	if err != nil {
		status, body := s.providerError(err, "create phone call")
		return status, body, retryAfterSeconds(err)
	}

	fields := created.Fields()
	if fields.Status == "" {
		fields.Status = callcat.StatusRegistered
	}
	call := callcat.Call{
		ID: fields.ID, Status: fields.Status, Type: fields.Type, Direction: fields.Direction,
		FromNumber: fields.FromNumber, ToNumber: fields.ToNumber, AgentID: fields.AgentID,
		StartTimestamp: fields.StartTimestamp, EndTimestamp: fields.EndTimestamp, DurationMS: fields.DurationMS,
		DisconnectionReason: fields.DisconnectionReason, Metadata: fields.Metadata, Analysis: fields.Analysis,
	}
	res, err := s.cfg.Tracker.Apply(ctx, callcat.Update{Fields: fields})
	if err != nil {
		// The call is placed whatever the store says; polling stores it.
		s.logger.Error("store placed call failed", "call_id", fields.ID, "err", err)
	} else {
		call = res.Call
	}
	if err := s.cfg.Tracker.Track(fields.ID); err != nil {
		s.logger.Warn("track placed call failed", "call_id", fields.ID, "err", err)
	}
	s.logger.Info("call placed", "call_id", fields.ID)

	body, err := json.Marshal(newCallView(&call, true))
	if err != nil {
		return http.StatusInternalServerError, errorJSON("internal error"), ""
	}
	return http.StatusCreated, body, ""
}

// providerError maps a provider failure to a status and a JSON error body.
// The provider's message has its API key removed by the client.
func (s *server) providerError(err error, what string) (int, []byte) {
	var apiErr *retell.APIError
	switch {
	case errors.As(err, &apiErr):
		msg := what + ": provider answered " + strconv.Itoa(apiErr.StatusCode)
		if apiErr.Message != "" {
			msg += ": " + apiErr.Message
		}
		switch code := apiErr.StatusCode; {
		case code == http.StatusUnauthorized || code == http.StatusForbidden:
			return http.StatusBadGateway, errorJSON("provider rejected callcat's API key")
		case code == http.StatusTooManyRequests:
			return http.StatusServiceUnavailable, errorJSON(msg)
		case code == http.StatusBadRequest || code == http.StatusNotFound || code == http.StatusConflict || code == http.StatusUnprocessableEntity:
			return http.StatusUnprocessableEntity, errorJSON(msg)
		default:
			return http.StatusBadGateway, errorJSON(msg)
		}
	case errors.Is(err, callcat.ErrInvalid):
		return http.StatusBadRequest, errorJSON(err.Error())
	default:
		s.logger.Warn("provider request failed", "what", what, "err", err)
		return http.StatusBadGateway, errorJSON(what + ": provider unreachable")
	}
}

// retryAfterSeconds returns the Retry-After value for err: the provider's
// own hint rounded up to whole seconds, or DefaultRetryHint.
func retryAfterSeconds(err error) string {
	d := DefaultRetryHint
	var apiErr *retell.APIError
	if errors.As(err, &apiErr) && apiErr.RetryAfter > 0 {
		d = apiErr.RetryAfter
	}
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

func errorJSON(msg string) []byte {
	body, _ := json.Marshal(errorBody{Error: msg})
	return body
}

// writeRaw writes a JSON response body made before, with Retry-After on a
// 503.
func writeRaw(w http.ResponseWriter, status int, body []byte, retryAfter string, logger *slog.Logger) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusServiceUnavailable && retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	if _, err := w.Write(append(body, '\n')); err != nil {
		logger.Debug("write response failed", "err", err)
	}
}

// handleStopCall serves POST /v1/calls/{id}/stop. A live call is stopped
// through the provider and answered 202 with its current view: it ends when
// the provider's call_ended arrives. A call that already ended is answered
// 204 without asking the provider.
func (s *server) handleStopCall() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		call, err := s.cfg.Store.Call(r.Context(), id)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		if call.Status.Terminal() {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if s.cfg.Provider == nil {
			s.writeError(w, http.StatusServiceUnavailable, "stopping calls is not configured")
			return
		}
		if err := s.cfg.Provider.StopCall(r.Context(), id); err != nil {
			if errors.Is(err, context.Canceled) {
				return
			}
			status, body := s.providerError(err, "stop call")
			writeRaw(w, status, body, retryAfterSeconds(err), s.logger)
			return
		}
		s.logger.Info("call stop requested", "call_id", id)
		s.writeJSON(w, http.StatusAccepted, newCallView(&call, true))
	})
}
