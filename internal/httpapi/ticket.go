package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// StreamTicketTTL is how long a stream ticket opens streams after it was
// issued. An open stream outlives its ticket; a reconnect after the TTL
// needs a new one.
const StreamTicketTTL = 60 * time.Second

// maxTicketRequestBytes bounds the body of POST /v1/stream-tickets.
const maxTicketRequestBytes = 4 << 10

// Stream ticket verification errors. They are safe to show to the client.
var (
	errTicketMalformed = errors.New("malformed")
	errTicketExpired   = errors.New("expired")
	errTicketMismatch  = errors.New("not valid for this stream")
)

// ticketSigner issues and checks stream tickets: "<expiry>.<mac>", where
// expiry is in Unix seconds and mac is the base64url HMAC-SHA256 of the
// expiry and the scope under a key drawn at start. The scope is the path of
// the one stream the ticket opens, and the server derives it from the
// request, so a ticket carries no scope and cannot be moved to another
// stream. Tickets hold no server-side state: one may be used any number of
// times until it expires, which lets EventSource reconnect with it.
//
// NOTE: the key lives in one process only, so with several replicas behind a
// load balancer a ticket opens streams only on the replica that issued it.
type ticketSigner struct {
	key [32]byte
	now func() time.Time
}

// issue returns a ticket for scope and its expiry.
func (ts *ticketSigner) issue(scope string) (string, time.Time) {
	expires := ts.now().Add(StreamTicketTTL).Truncate(time.Second)
	exp := strconv.FormatInt(expires.Unix(), 10)
	return exp + "." + base64.RawURLEncoding.EncodeToString(ts.mac(exp, scope)), expires
}

// verify checks ticket against scope at the current time.
func (ts *ticketSigner) verify(ticket, scope string) error {
	exp, sig, ok := strings.Cut(ticket, ".")
	if !ok || exp == "" || strings.ContainsAny(exp, "+-") {
		return errTicketMalformed
	}
	expires, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return errTicketMalformed
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return errTicketMalformed
	}
	if !hmac.Equal(got, ts.mac(exp, scope)) {
		return errTicketMismatch
	}
	if ts.now().Unix() >= expires {
		return errTicketExpired
	}
	return nil
}

func (ts *ticketSigner) mac(exp, scope string) []byte {
	m := hmac.New(sha256.New, ts.key[:])
	io.WriteString(m, "callcat stream ticket\n")
	io.WriteString(m, exp)
	io.WriteString(m, "\n")
	io.WriteString(m, scope)
	return m.Sum(nil)
}

// lifecycleStreamPath is the path, and so the ticket scope, of the
// lifecycle stream.
const lifecycleStreamPath = "/v1/stream"

// callStreamScope and lifecycleStreamScope return the ticket scope of a
// request to a stream: its path, with the call id as the mux decoded it.
func callStreamScope(r *http.Request) string {
	return "/v1/calls/" + r.PathValue("id") + "/stream"
}

func lifecycleStreamScope(*http.Request) string {
	return lifecycleStreamPath
}

type ticketRequest struct {
	// CallID selects the call's stream; "" selects the lifecycle stream.
	CallID string `json:"call_id"`
}

type ticketResponse struct {
	Ticket    string    `json:"ticket"`
	ExpiresAt time.Time `json:"expires_at"`
	Path      string    `json:"path"`
}

// handleStreamTicket serves POST /v1/stream-tickets: a ticket that opens one
// SSE stream as ?ticket= for StreamTicketTTL. The JSON body {"call_id": id}
// selects that call's stream; an empty body selects GET /v1/stream.
func (s *server) handleStreamTicket() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req ticketRequest
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTicketRequestBytes))
		if err != nil {
			s.writeError(w, http.StatusBadRequest, "reading the request body failed or it exceeds "+formatBytes(maxTicketRequestBytes))
			return
		}
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				s.writeError(w, http.StatusBadRequest, `invalid request body: send {"call_id": "<id>"} or nothing`)
				return
			}
		}

		// The scope holds the id as the mux decodes it from the path, and
		// the response holds the path as a client must send it.
		scope, path := lifecycleStreamPath, lifecycleStreamPath
		if req.CallID != "" {
			if strings.ContainsAny(req.CallID, "/?#") {
				s.writeError(w, http.StatusBadRequest, "invalid call_id "+strconv.Quote(req.CallID))
				return
			}
			scope = "/v1/calls/" + req.CallID + "/stream"
			path = "/v1/calls/" + url.PathEscape(req.CallID) + "/stream"
		}
		ticket, expires := s.tickets.issue(scope)
		w.Header().Set("Cache-Control", "no-store")
		s.writeJSON(w, http.StatusCreated, ticketResponse{Ticket: ticket, ExpiresAt: expires.UTC(), Path: path})
	})
}
