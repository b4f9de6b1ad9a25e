package retell

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// APIError is a non-2xx response from the provider.
type APIError struct {
	// Endpoint is one of the Endpoint constants.
	Endpoint   string
	StatusCode int

	// Message is the provider's error message, from a body of the form
	// {"status":"error","message":"..."}, or else the start of the body as
	// text. At most 512 bytes, with the API key removed. Do not parse it: the
	// provider's wording is not stable.
	Message string

	// RetryAfter is the delay the response asked for (see RetryAfter), or 0.
	RetryAfter time.Duration
}

// Error returns "retell <endpoint>: status <code> <text>" and the message.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "retell %s: status %d", e.Endpoint, e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		b.WriteString(" ")
		b.WriteString(text)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %v)", e.RetryAfter)
	}
	return b.String()
}

// newAPIError reads the start of a non-2xx body and builds the error. A read
// failure only shortens the message: the status is the error.
func (c *Client) newAPIError(endpoint string, resp *http.Response) *APIError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	message := errorMessage(body)
	if c.apiKey != "" {
		message = strings.ReplaceAll(message, c.apiKey, "[redacted]")
	}
	return &APIError{
		Endpoint:   endpoint,
		StatusCode: resp.StatusCode,
		Message:    message,
		RetryAfter: RetryAfter(resp.Header, time.Now()),
	}
}

// errorMessage extracts the message of an error body, capped at
// maxErrorMessageBytes on a UTF-8 boundary.
func errorMessage(body []byte) string {
	var parsed struct {
		Message string `json:"message"`
	}
	message := ""
	if err := json.Unmarshal(body, &parsed); err == nil && parsed.Message != "" {
		message = parsed.Message
	} else {
		message = string(body)
	}

	message = strings.TrimSpace(strings.ToValidUTF8(message, "\uFFFD"))
	if len(message) > maxErrorMessageBytes {
		cut := maxErrorMessageBytes
		for cut > 0 && !utf8.RuneStart(message[cut]) {
			cut--
		}
		message = message[:cut]
	}
	return message
}

// maxRetryAfterSeconds keeps a parsed delay within time.Duration's range.
const maxRetryAfterSeconds = float64(math.MaxInt64 / int64(time.Second))

// RetryAfter returns the delay a response requests before a retry. It reads
// retry-after-ms (milliseconds, as the provider's SDK does) first, then
// Retry-After as seconds or as an HTTP-date relative to now. It returns 0
// when the headers are absent or invalid, the value is negative or too large
// for a time.Duration, or the date is not after now.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		ms, err := strconv.ParseFloat(v, 64)
		if err == nil && ms >= 0 && ms/1000 < maxRetryAfterSeconds {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}

	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if seconds, err := strconv.ParseFloat(v, 64); err == nil {
		if seconds >= 0 && seconds < maxRetryAfterSeconds {
			return time.Duration(seconds * float64(time.Second))
		}
		return 0
	}
	if at, err := http.ParseTime(v); err == nil {
		if d := at.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// IsRetryable reports whether a Client error may succeed when the same
// request is sent again. True: status 408, 409, 429 and 5xx, network errors,
// timeouts (the per-request timeout and a deadline of the caller's context
// alike), and 2xx bodies that were cut short, are not valid JSON or lack a
// call_id. False: nil, other statuses, a canceled context,
// ErrResponseTooLarge, invalid input and anything else.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}

	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return isRetryableStatus(apiErr.StatusCode)
	}

	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, ErrResponseTooLarge):
		return false
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrMalformedBody),
		errors.Is(err, ErrMissingCallID),
		errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}

	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	// http.Client.Do wraps every failure to exchange a request in *url.Error:
	// refused or reset connections, a server closing before its response, TLS
	// handshake failures.
	var urlErr *url.Error
	return errors.As(err, &urlErr)
}

func isRetryableStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusConflict, code == http.StatusTooManyRequests:
		return true
	case code >= 500 && code <= 599:
		return true
	default:
		return false
	}
}
