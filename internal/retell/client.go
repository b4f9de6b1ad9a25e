package retell

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/ratelog"
)

// Defaults for the zero values of ClientConfig.
const (
	DefaultMaxInFlight       = 16
	DefaultRequestsPerSecond = 50
	DefaultRequestTimeout    = 10 * time.Second
	DefaultMaxResponseBytes  = 8 << 20
)

// Endpoint names, as passed to ClientConfig.Observe and shown in errors. They
// form a fixed set, so they are safe as metric label values.
const (
	EndpointGetCall         = "get_call"
	EndpointCreatePhoneCall = "create_phone_call"
	EndpointStopCall        = "stop_call"
	EndpointListCalls       = "list_calls"
)

const (
	version   = "dev"
	userAgent = "callcat/" + version

	dialTimeout         = 5 * time.Second
	tlsHandshakeTimeout = 5 * time.Second
	idleConnTimeout     = 90 * time.Second
	tcpKeepAlive        = 30 * time.Second

	// maxDrainBytes is how much unread body is discarded before closing it.
	// Past it the transport drops the connection instead of reusing it.
	maxDrainBytes = 64 << 10

	// maxErrorBodyBytes caps the read of a non-2xx body, and
	// maxErrorMessageBytes the message kept from it.
	maxErrorBodyBytes    = 4 << 10
	maxErrorMessageBytes = 512

	// maxPooledBufferBytes keeps a rare huge response from pinning its buffer
	// in the pool. A long call's get-call body is about 150 KB.
	maxPooledBufferBytes = 1 << 20
)

// ErrResponseTooLarge means a response body exceeded
// ClientConfig.MaxResponseBytes. It is not retryable.
var ErrResponseTooLarge = errors.New("response body too large")

// ClientConfig configures NewClient. Zero values select the defaults.
type ClientConfig struct {
	// BaseURL is the provider's API root, such as https://api.retellai.com.
	// Required. It must be an http or https URL without user info, query or
	// fragment. A path is kept as a prefix of every endpoint path.
	BaseURL string

	// APIKey is sent as "Authorization: Bearer <key>". Required. The client
	// never logs it and removes it from provider error messages.
	APIKey string

	// MaxInFlight bounds concurrent requests. The transport keeps as many
	// idle connections and opens at most as many connections to the host.
	// Default DefaultMaxInFlight.
	MaxInFlight int

	// RequestsPerSecond is the rate shared by all requests of the client,
	// with bursts of up to Burst requests. +Inf disables the limit. Defaults
	// DefaultRequestsPerSecond and MaxInFlight.
	RequestsPerSecond float64
	Burst             int

	// RequestTimeout bounds one request from sending it to reading its body,
	// not the wait for a free slot or a rate token. Default
	// DefaultRequestTimeout.
	RequestTimeout time.Duration

	// MaxResponseBytes caps a response body. A larger body fails with
	// ErrResponseTooLarge. Default DefaultMaxResponseBytes.
	MaxResponseBytes int64

	// Observe, when set, is called once for every request sent, from the
	// calling goroutine, so it must be safe for concurrent use. endpoint is
	// one of the Endpoint constants. statusCode is 0 when no response
	// arrived. elapsed runs from sending the request until its body is read
	// and decoded. Requests that never got a slot or a rate token are not
	// observed.
	Observe func(endpoint string, statusCode int, err error, elapsed time.Duration)

	// Header holds extra headers sent with every request. Tests use it to
	// name the replica that polls; nil sends none.
	Header http.Header

	// Logger receives debug records of failed requests, and rate-limited
	// records when a request waits for a slot or a rate token or a response
	// exceeds MaxResponseBytes. Default: discard.
	Logger *slog.Logger

	// Registerer, when set, receives the gauge
	// callcat_provider_requests_in_flight, the counters of requests that
	// waited for a slot or a rate token and of responses over the size
	// limit, and gauges of the three configured bounds.
	Registerer prometheus.Registerer
}

// Client calls the provider's REST API over one shared, pooled http.Client.
// It is safe for concurrent use.
type Client struct {
	http      *http.Client
	transport *http.Transport

	// inFlight is a semaphore with MaxInFlight slots.
	inFlight chan struct{}
	limiter  *rate.Limiter

	baseURL          string // without a trailing slash
	apiKey           string
	authorization    string
	header           http.Header
	requestTimeout   time.Duration
	maxResponseBytes int64
	observe          func(endpoint string, statusCode int, err error, elapsed time.Duration)
	logger           *slog.Logger
	limited          *ratelog.Limiter
	metrics          *clientMetrics
}

// NewClient validates cfg, applies the defaults and builds the client with its
// own transport. Errors never contain the API key.
func NewClient(cfg ClientConfig) (*Client, error) {
	baseURL, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.APIKey == "" {
		return nil, errors.New("retell: APIKey missing")
	}

	if cfg.MaxInFlight < 0 {
		return nil, fmt.Errorf("retell: invalid MaxInFlight %d: must not be negative", cfg.MaxInFlight)
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if math.IsNaN(cfg.RequestsPerSecond) || cfg.RequestsPerSecond < 0 {
		return nil, fmt.Errorf("retell: invalid RequestsPerSecond %v: must not be negative", cfg.RequestsPerSecond)
	}
	if cfg.RequestsPerSecond == 0 {
		cfg.RequestsPerSecond = DefaultRequestsPerSecond
	}
	if cfg.Burst < 0 {
		return nil, fmt.Errorf("retell: invalid Burst %d: must not be negative", cfg.Burst)
	}
	if cfg.Burst == 0 {
		cfg.Burst = cfg.MaxInFlight
	}
	if cfg.RequestTimeout < 0 {
		return nil, fmt.Errorf("retell: invalid RequestTimeout %v: must not be negative", cfg.RequestTimeout)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.MaxResponseBytes < 0 {
		return nil, fmt.Errorf("retell: invalid MaxResponseBytes %d: must not be negative", cfg.MaxResponseBytes)
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	metrics, err := newClientMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	metrics.maxInFlight.Set(float64(cfg.MaxInFlight))
	metrics.maxRatePerSec.Set(cfg.RequestsPerSecond)
	metrics.maxResponseLen.Set(float64(cfg.MaxResponseBytes))

	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: tcpKeepAlive}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: cfg.RequestTimeout,
		IdleConnTimeout:       idleConnTimeout,
		// Go's default of 2 idle connections per host would close and
		// reopen connections under steady polling.
		MaxIdleConns:        cfg.MaxInFlight,
		MaxIdleConnsPerHost: cfg.MaxInFlight,
		MaxConnsPerHost:     cfg.MaxInFlight,
		// A custom DialContext turns HTTP/2 off unless forced. Over HTTPS one
		// multiplexed connection serves all polls.
		ForceAttemptHTTP2: true,
	}

	httpClient := &http.Client{
		Transport: transport,
		// The API does not redirect. Following one would resend the key
		// and turn a POST into a GET, so a 3xx becomes an APIError.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}

	return &Client{
		http:             httpClient,
		transport:        transport,
		inFlight:         make(chan struct{}, cfg.MaxInFlight),
		limiter:          rate.NewLimiter(rate.Limit(cfg.RequestsPerSecond), cfg.Burst),
		baseURL:          baseURL,
		apiKey:           cfg.APIKey,
		authorization:    "Bearer " + cfg.APIKey,
		header:           cfg.Header.Clone(),
		requestTimeout:   cfg.RequestTimeout,
		maxResponseBytes: cfg.MaxResponseBytes,
		observe:          cfg.Observe,
		logger:           logger,
		limited:          ratelog.New(logger, 0),
		metrics:          metrics,
	}, nil
}

// Close closes the idle connections of the client's transport. Requests in
// flight finish normally. The client stays usable and opens new connections
// when needed.
func (c *Client) Close() {
	c.transport.CloseIdleConnections()
}

// GetCall fetches one call: GET /v2/get-call/{call_id}. Expect an APIError
// with status 422 or 404 for a call id the API key does not own.
func (c *Client) GetCall(ctx context.Context, callID string) (*Call, error) {
	if callID == "" {
		return nil, fmt.Errorf("retell %s: call id missing: %w", EndpointGetCall, callcat.ErrInvalid)
	}

	var call *Call
	err := c.do(ctx, request{
		endpoint: EndpointGetCall,
		method:   http.MethodGet,
		path:     "/v2/get-call/" + url.PathEscape(callID),
		callID:   callID,
	}, func(body []byte) error {
		var err error
		call, err = DecodeCall(body)
		return err
	})
	if err != nil {
		return nil, err
	}
	return call, nil
}

// CreatePhoneCallRequest is the body of POST /v2/create-phone-call.
type CreatePhoneCallRequest struct {
	// FromNumber must be a number the account owns, ToNumber the callee.
	// Both are E.164 and required.
	FromNumber string `json:"from_number"`
	ToNumber   string `json:"to_number"`

	// OverrideAgentID replaces the agent bound to FromNumber for this call.
	OverrideAgentID string `json:"override_agent_id,omitempty"`

	// Metadata is stored with the call and echoed in its payloads.
	Metadata json.RawMessage `json:"metadata,omitempty"`

	// RetellLLMDynamicVariables fills the agent prompt's {{name}} placeholders.
	RetellLLMDynamicVariables map[string]string `json:"retell_llm_dynamic_variables,omitempty"`
}

// CreatePhoneCall places an outbound call: POST /v2/create-phone-call. The
// provider responds 201 with the call in status registered.
func (c *Client) CreatePhoneCall(ctx context.Context, req CreatePhoneCallRequest) (*Call, error) {
	if req.FromNumber == "" || req.ToNumber == "" {
		return nil, fmt.Errorf("retell %s: from_number and to_number are required: %w", EndpointCreatePhoneCall, callcat.ErrInvalid)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("retell %s: encode request: %w: %w", EndpointCreatePhoneCall, callcat.ErrInvalid, err)
	}

	var call *Call
	err = c.do(ctx, request{
		endpoint: EndpointCreatePhoneCall,
		method:   http.MethodPost,
		path:     "/v2/create-phone-call",
		body:     body,
	}, func(body []byte) error {
		var err error
		call, err = DecodeCall(body)
		return err
	})
	if err != nil {
		return nil, err
	}
	return call, nil
}

// StopCall ends a live call: POST /v2/stop-call/{call_id}. The provider
// responds 204, and the call then ends with a call_ended webhook.
func (c *Client) StopCall(ctx context.Context, callID string) error {
	if callID == "" {
		return fmt.Errorf("retell %s: call id missing: %w", EndpointStopCall, callcat.ErrInvalid)
	}
	return c.do(ctx, request{
		endpoint: EndpointStopCall,
		method:   http.MethodPost,
		path:     "/v2/stop-call/" + url.PathEscape(callID),
		callID:   callID,
	}, nil)
}

// ListCallsRequest is the body of POST /v3/list-calls. Zero fields are left
// out, so the provider applies its defaults.
type ListCallsRequest struct {
	// FilterCriteria is the provider's filter_criteria object, passed as is,
	// for example {"call_status":{"type":"enum","op":"in","value":["ongoing"]}}.
	FilterCriteria json.RawMessage `json:"filter_criteria,omitempty"`

	// SortOrder is "ascending" or "descending" by start_timestamp
	// (provider default descending).
	SortOrder string `json:"sort_order,omitempty"`

	// Limit is the page size (provider default 50, maximum 1000).
	Limit int `json:"limit,omitempty"`

	// PaginationKey is the previous page's ListCallsResponse.PaginationKey.
	PaginationKey string `json:"pagination_key,omitempty"`
}

// ListCallsResponse is one page of POST /v3/list-calls. Its items carry no
// transcript fields, so their Utterances always report present false.
type ListCallsResponse struct {
	Items         []Call
	HasMore       bool
	PaginationKey string
}

// ListCalls returns one page of calls: POST /v3/list-calls.
func (c *Client) ListCalls(ctx context.Context, req ListCallsRequest) (*ListCallsResponse, error) {
	if req.Limit < 0 {
		return nil, fmt.Errorf("retell %s: invalid limit %d: %w", EndpointListCalls, req.Limit, callcat.ErrInvalid)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("retell %s: encode request: %w: %w", EndpointListCalls, callcat.ErrInvalid, err)
	}

	var page *ListCallsResponse
	err = c.do(ctx, request{
		endpoint: EndpointListCalls,
		method:   http.MethodPost,
		path:     "/v3/list-calls",
		body:     body,
	}, func(body []byte) error {
		var err error
		page, err = decodeListCalls(body)
		return err
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

func decodeListCalls(body []byte) (*ListCallsResponse, error) {
	if firstByte(body) != '{' {
		return nil, fmt.Errorf("decode list: %w: body is %s, not a JSON object", ErrMalformedBody, describeJSON(body))
	}
	var wire struct {
		Items         []callWire `json:"items"`
		HasMore       bool       `json:"has_more"`
		PaginationKey string     `json:"pagination_key"`
	}
	if err := decodeLenient(body, &wire); err != nil {
		return nil, fmt.Errorf("decode list: %w: %v", ErrMalformedBody, err)
	}

	page := &ListCallsResponse{
		Items:         make([]Call, len(wire.Items)),
		HasMore:       wire.HasMore,
		PaginationKey: wire.PaginationKey,
	}
	for i := range wire.Items {
		wire.Items[i].copyTo(&page.Items[i])
	}
	return page, nil
}

// request describes one provider call for do.
type request struct {
	endpoint string
	method   string
	path     string
	body     []byte // nil: no body
	callID   string // for logs; "" when the request has none
}

// do sends r and passes the 2xx response body to decode (nil: the body is
// ignored). The body slice is only valid during decode.
func (c *Client) do(ctx context.Context, r request, decode func(body []byte) error) error {
	// Take a slot before a rate token, so that callers queued on the slots
	// do not use up tokens they cannot spend yet.
	if err := c.acquireSlot(ctx, r.endpoint); err != nil {
		return err
	}
	defer c.releaseSlot()

	if err := c.waitForToken(ctx, r.endpoint); err != nil {
		return err
	}

	start := time.Now()
	status, err := c.exchange(ctx, r, decode)
	elapsed := time.Since(start)

	if c.observe != nil {
		c.observe(r.endpoint, status, err, elapsed)
	}
	if err != nil {
		c.logger.LogAttrs(ctx, slog.LevelDebug, "provider request failed",
			slog.String("endpoint", r.endpoint),
			slog.String("call_id", r.callID),
			slog.Int("status", status),
			slog.Duration("elapsed", elapsed),
			slog.Any("err", err))
	}
	return err
}

// acquireSlot takes one of the MaxInFlight slots, waiting while all are
// taken. Every wait is counted, and logged at most once per
// ratelog.DefaultInterval.
func (c *Client) acquireSlot(ctx context.Context, endpoint string) error {
	select {
	case c.inFlight <- struct{}{}:
	default:
		c.metrics.slotWaits.Inc()
		c.limited.Log(ctx, slog.LevelInfo, "provider_slots", "provider requests wait for a free in-flight slot",
			"endpoint", endpoint, "max_in_flight", cap(c.inFlight))
		select {
		case c.inFlight <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("retell %s: wait for a request slot: %w", endpoint, ctx.Err())
		}
	}
	c.metrics.inFlight.Inc()
	return nil
}

func (c *Client) releaseSlot() {
	c.metrics.inFlight.Dec()
	<-c.inFlight
}

// waitForToken waits for a token of the rate limiter. It fails at once when
// the wait would outlast ctx's deadline, as rate.Limiter.Wait does, and
// counts and logs the requests it delays.
func (c *Client) waitForToken(ctx context.Context, endpoint string) error {
	res := c.limiter.Reserve()
	if !res.OK() {
		return fmt.Errorf("retell %s: the rate limiter has no burst to grant a token", endpoint)
	}
	delay := res.Delay()
	if delay == 0 {
		return nil
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < delay {
		res.Cancel()
		return fmt.Errorf("retell %s: no rate token before the context deadline: %w", endpoint, context.DeadlineExceeded)
	}

	c.metrics.rateLimited.Inc()
	c.limited.Log(ctx, slog.LevelInfo, "provider_rate", "provider requests delayed by the rate limit",
		"endpoint", endpoint, "requests_per_second", float64(c.limiter.Limit()), "delay", delay)
	start := time.Now()
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
		c.metrics.rateLimitWait.Add(time.Since(start).Seconds())
		return nil
	case <-ctx.Done():
		res.Cancel()
		c.metrics.rateLimitWait.Add(time.Since(start).Seconds())
		return fmt.Errorf("retell %s: wait for the rate limiter: %w", endpoint, ctx.Err())
	}
}

// exchange performs one HTTP request under the per-request timeout. It
// returns the response status (0 when none arrived).
func (c *Client) exchange(ctx context.Context, r request, decode func(body []byte) error) (int, error) {
	reqCtx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()

	req, err := c.newRequest(reqCtx, r.method, r.path, r.body)
	if err != nil {
		return 0, fmt.Errorf("retell %s: build request: %w", r.endpoint, err)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return 0, c.wrapTransportError(ctx, reqCtx, r.endpoint, err)
	}
	defer drainAndClose(resp.Body)

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, c.newAPIError(r.endpoint, resp)
	}
	if decode == nil {
		return resp.StatusCode, nil
	}

	buf, err := c.readBody(resp)
	if err != nil {
		if errors.Is(err, ErrResponseTooLarge) {
			c.metrics.tooLarge.Inc()
			c.limited.Log(ctx, slog.LevelWarn, "provider_too_large", "provider response exceeds the size limit, so the request failed",
				"endpoint", r.endpoint, "call_id", r.callID, "max_response_bytes", c.maxResponseBytes)
		}
		return resp.StatusCode, c.wrapTransportError(ctx, reqCtx, r.endpoint, err)
	}
	defer putBuffer(buf)

	if err := decode(buf.Bytes()); err != nil {
		return resp.StatusCode, fmt.Errorf("retell %s: %w", r.endpoint, err)
	}
	return resp.StatusCode, nil
}

// newRequest builds a request with the headers every endpoint needs.
func (c *Client) newRequest(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, reader)
	if err != nil {
		return nil, err
	}

	req.Header.Set("Authorization", c.authorization)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	for name, values := range c.header {
		req.Header[name] = values
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// wrapTransportError adds the endpoint to a failed exchange. It names the
// timeout when the per-request timeout, not the caller's context, ended it.
func (c *Client) wrapTransportError(ctx, reqCtx context.Context, endpoint string, err error) error {
	if ctx.Err() == nil && errors.Is(reqCtx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("retell %s: request timed out after %v: %w", endpoint, c.requestTimeout, err)
	}
	return fmt.Errorf("retell %s: %w", endpoint, err)
}

// readBody reads a 2xx body through the size cap into a pooled buffer. The
// caller returns the buffer with putBuffer.
func (c *Client) readBody(resp *http.Response) (*bytes.Buffer, error) {
	if resp.ContentLength > c.maxResponseBytes {
		return nil, fmt.Errorf("%w: Content-Length %d exceeds the limit of %d bytes",
			ErrResponseTooLarge, resp.ContentLength, c.maxResponseBytes)
	}

	buf := getBuffer()
	if resp.ContentLength > 0 {
		// ReadFrom grows the buffer unless bytes.MinRead bytes are free
		// before each read, including the last read, which returns EOF.
		buf.Grow(int(resp.ContentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, c.maxResponseBytes+1)); err != nil {
		putBuffer(buf)
		return nil, fmt.Errorf("read response body: %w", err)
	}
	if int64(buf.Len()) > c.maxResponseBytes {
		putBuffer(buf)
		return nil, fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, c.maxResponseBytes)
	}
	return buf, nil
}

// drainAndClose discards up to maxDrainBytes of what is left of body and
// closes it. A body read to EOF lets the transport reuse the connection.
func drainAndClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, maxDrainBytes)
	_ = body.Close()
}

var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer {
	return bufferPool.Get().(*bytes.Buffer)
}

func putBuffer(buf *bytes.Buffer) {
	if buf.Cap() > maxPooledBufferBytes {
		return
	}
	buf.Reset()
	bufferPool.Put(buf)
}

func parseBaseURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("retell: BaseURL missing")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The url.Error would repeat the whole value, which may hold
		// credentials. Keep only the reason.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return "", fmt.Errorf("retell: invalid BaseURL: %w", err)
	}
	// The messages name only the scheme and host, because user info and the
	// query may hold a key.
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("retell: invalid BaseURL scheme %q: must be http or https", u.Scheme)
	case u.Host == "":
		return "", errors.New("retell: invalid BaseURL: host missing")
	case u.User != nil:
		return "", fmt.Errorf("retell: invalid BaseURL for host %s: user info is not allowed, set APIKey instead", u.Host)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "", fmt.Errorf("retell: invalid BaseURL for host %s: query and fragment are not allowed", u.Host)
	}
	return strings.TrimRight(u.String(), "/"), nil
}
