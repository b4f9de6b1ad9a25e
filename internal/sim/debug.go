package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// ReplicaHeader is the request header whose value the request log keeps, so
// a test can tell which client or replica sent each request.
const ReplicaHeader = "X-Callcat-Replica"

// DefaultDebugDeliveryLog is the DeliveryLog that Config.DebugRoutes sets
// when DeliveryLog is zero.
const DefaultDebugDeliveryLog = 100_000

const (
	// maxReplicaBytes bounds the header value kept per logged request.
	maxReplicaBytes = 64

	// maxRateWindow bounds the arrival times kept for the per-second count.
	// A busier second counts as this many requests.
	maxRateWindow = 1 << 16
)

// Request is one API request about a call (get-call or stop-call), as the
// request log keeps it.
type Request struct {
	At      time.Time // arrival, on Config.Now
	Replica string    // the ReplicaHeader value, "" when absent
	Status  int       // status answered; for a reset, the status sent before it
	Fault   string    // the response fault injected, "" for none
}

// RateLimited is one 429 response and what the client did next.
type RateLimited struct {
	CallID  string
	At      time.Time // arrival of the request answered 429
	RetryAt time.Time // the earliest time Retry-After allowed the next request
	NextAt  time.Time // arrival of the call's next request; zero while none came
}

// debugState holds the request statistics. Its fields are guarded by Sim.mu.
type debugState struct {
	window       fifo[time.Time] // arrivals within the last second
	maxPerSecond int
	rateLimited  fifo[*RateLimited]
	delivered    fifo[[sha256.Size]byte]
}

// callLog is the request log of one call. It is guarded by Sim.mu.
type callLog struct {
	requests []Request // a ring of Config.RequestLog entries once full
	next     int       // position of the oldest entry once the ring is full
	limited  *RateLimited
}

// faultNames names the response faults in the request log.
var faultNames = [...]string{
	responseNormal:      "",
	responseRateLimit:   "rate_limit",
	responseServerError: "server_error",
	responseReset:       "reset",
	responseTruncate:    "truncate",
	responseSlow:        "slow_body",
	responseOversize:    "oversize",
}

// noteRequest counts an API request arriving at arrived and, when it is
// about a call that was last answered 429, records it as that call's next
// request.
func (s *Sim) noteRequest(arrived time.Time, callID string) {
	s.mu.Lock()
	defer s.mu.Unlock()

	d := &s.debug
	d.window.push(arrived)
	for d.window.len() > 0 {
		oldest := d.window.items[d.window.head]
		if arrived.Sub(oldest) < time.Second && d.window.len() <= maxRateWindow {
			break
		}
		d.window.pop()
	}
	d.maxPerSecond = max(d.maxPerSecond, d.window.len())

	if callID == "" {
		return
	}
	if c, ok := s.calls[callID]; ok && c.log != nil && c.log.limited != nil {
		c.log.limited.NextAt = arrived
		c.log.limited = nil
	}
}

// noteAnswered records an answered request in its call's log and keeps a
// 429 for the check of the call's next request.
func (s *Sim) noteAnswered(callID string, r *http.Request, arrived time.Time, status int, fault responseFault, retryAt time.Time) {
	limited := status == http.StatusTooManyRequests && !retryAt.IsZero()
	if callID == "" || (s.cfg.RequestLog == 0 && !limited) {
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.calls[callID]
	if !ok {
		return
	}
	if c.log == nil {
		c.log = &callLog{}
	}

	if n := s.cfg.RequestLog; n > 0 {
		replica := r.Header.Get(ReplicaHeader)
		if len(replica) > maxReplicaBytes {
			replica = replica[:maxReplicaBytes]
		}
		entry := Request{At: arrived, Replica: replica, Status: status, Fault: faultNames[fault]}
		if len(c.log.requests) < n {
			c.log.requests = append(c.log.requests, entry)
		} else {
			c.log.requests[c.log.next] = entry
			c.log.next = (c.log.next + 1) % n
		}
	}

	if limited {
		rl := &RateLimited{CallID: callID, At: arrived, RetryAt: retryAt}
		c.log.limited = rl
		s.debug.rateLimited.push(rl)
		if s.debug.rateLimited.len() > s.cfg.RateLimitLog {
			s.debug.rateLimited.pop()
		}
	}
}

// recordDeliveredLocked keeps the digest of a webhook body that got a 2xx
// response. The caller holds s.mu.
func (s *Sim) recordDeliveredLocked(body []byte) {
	if s.cfg.DeliveryLog == 0 {
		return
	}
	s.debug.delivered.push(sha256.Sum256(body))
	if s.debug.delivered.len() > s.cfg.DeliveryLog {
		s.debug.delivered.pop()
	}
}

// MaxRequestsPerSecond returns the largest number of authorised API requests
// that arrived within any one-second window since New.
func (s *Sim) MaxRequestsPerSecond() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.debug.maxPerSecond
}

// Requests returns the request log of a call, oldest first: up to
// Config.RequestLog of its latest get-call and stop-call requests. It
// returns nil for a call the Sim no longer holds or when the log is off.
func (s *Sim) Requests(callID string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.calls[callID]
	if !ok || c.log == nil {
		return nil
	}
	reqs := c.log.requests
	out := make([]Request, 0, len(reqs))
	out = append(out, reqs[c.log.next:]...)
	return append(out, reqs[:c.log.next]...)
}

// RateLimited returns the latest 429 responses about calls (at most
// Config.RateLimitLog), oldest first, each with the arrival of that call's
// next request.
func (s *Sim) RateLimited() []RateLimited {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &s.debug.rateLimited
	out := make([]RateLimited, 0, q.len())
	for _, rl := range q.items[q.head:] {
		out = append(out, *rl)
	}
	return out
}

// Delivered returns the hex SHA-256 digests of the latest webhook bodies
// that got a 2xx response, oldest first: up to Config.DeliveryLog of them. A
// duplicate delivery appears twice.
func (s *Sim) Delivered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &s.debug.delivered
	out := make([]string, 0, q.len())
	for _, d := range q.items[q.head:] {
		out = append(out, hex.EncodeToString(d[:]))
	}
	return out
}

// addDebugRoutes registers the simulator-only debugging routes under /_sim/.
// The real provider has nothing like them: they exist so that a test running
// the simulator in another process can read what it did.
//
//	GET /_sim/calls      every call held, as a JSON array of CallInfo
//	GET /_sim/delivered  {"digests": Delivered()}
//	GET /_sim/stats      Stats as JSON
func (s *Sim) addDebugRoutes(mux *http.ServeMux) {
	mux.Handle("GET /_sim/calls", s.requireKey(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Calls())
	})))
	mux.Handle("GET /_sim/delivered", s.requireKey(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Digests []string `json:"digests"`
		}{s.Delivered()})
	})))
	mux.Handle("GET /_sim/stats", s.requireKey(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})))
}
