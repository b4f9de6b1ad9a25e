package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/httpapi"
)

// ticketJSON is the body of POST /v1/stream-tickets.
type ticketJSON struct {
	Ticket    string    `json:"ticket"`
	ExpiresAt time.Time `json:"expires_at"`
	Path      string    `json:"path"`
}

// issueTicket requests a ticket for callID's stream ("" for the lifecycle
// stream) with the API token.
func issueTicket(t *testing.T, baseURL, callID string) ticketJSON {
	t.Helper()
	body := ""
	if callID != "" {
		body = `{"call_id":` + strconvQuote(callID) + `}`
	}
	req, err := http.NewRequest(http.MethodPost, baseURL+"/v1/stream-tickets", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp := do(t, req)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("issue ticket: status %d, body %s", resp.StatusCode, resp.Body)
	}
	var tk ticketJSON
	if err := json.Unmarshal([]byte(resp.Body), &tk); err != nil {
		t.Fatalf("decode ticket: %v", err)
	}
	return tk
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// streamStatus opens path?ticket=ticket without a token and returns the
// status and the error message.
func streamStatus(t *testing.T, baseURL, path, ticket string) (int, string) {
	t.Helper()
	resp, err := http.Get(baseURL + path + "?ticket=" + url.QueryEscape(ticket))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	var body struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error
}

func TestTicketOpensItsStream(t *testing.T) {
	ts := startServer(t, withTokens)
	endedCall(t, ts)

	callTicket := issueTicket(t, ts.URL, outboundCallID)
	if want := "/v1/calls/" + outboundCallID + "/stream"; callTicket.Path != want {
		t.Fatalf("path=%q, want %q", callTicket.Path, want)
	}
	if d := time.Until(callTicket.ExpiresAt); d <= 0 || d > httpapi.StreamTicketTTL {
		t.Fatalf("expires_at=%v is %v away, want within (0, %v]", callTicket.ExpiresAt, d, httpapi.StreamTicketTTL)
	}
	if got, msg := streamStatus(t, ts.URL, callTicket.Path, callTicket.Ticket); got != http.StatusOK {
		t.Fatalf("call stream with its ticket: status %d (%s), want 200", got, msg)
	}

	lifecycle := issueTicket(t, ts.URL, "")
	if lifecycle.Path != "/v1/stream" {
		t.Fatalf("path=%q, want /v1/stream", lifecycle.Path)
	}
	ctxResp, err := http.Get(ts.URL + "/v1/stream?ticket=" + url.QueryEscape(lifecycle.Ticket))
	if err != nil {
		t.Fatal(err)
	}
	ctxResp.Body.Close()
	if ctxResp.StatusCode != http.StatusOK {
		t.Fatalf("lifecycle stream with its ticket: status %d, want 200", ctxResp.StatusCode)
	}

	// A ticket may be used again until it expires, so EventSource can
	// reconnect with the same URL.
	if got, _ := streamStatus(t, ts.URL, callTicket.Path, callTicket.Ticket); got != http.StatusOK {
		t.Fatalf("second use: status %d, want 200", got)
	}
}

func TestTicketRejected(t *testing.T) {
	var offset atomic.Int64 // added to the server's clock, in nanoseconds
	ts := startServer(t, func(cfg *httpapi.Config) {
		withTokens(cfg)
		cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	endedCall(t, ts)
	callPath := "/v1/calls/" + outboundCallID + "/stream"
	good := issueTicket(t, ts.URL, outboundCallID)
	lifecycle := issueTicket(t, ts.URL, "")
	other := issueTicket(t, ts.URL, "call_someone_else")

	exp, mac, _ := strings.Cut(good.Ticket, ".")
	flipped := []byte(mac)
	if flipped[0] == 'A' {
		flipped[0] = 'B'
	} else {
		flipped[0] = 'A'
	}

	cases := []struct {
		name, path, ticket, want string
	}{
		{"LifecycleTicketOnCallStream", callPath, lifecycle.Ticket, "not valid for this stream"},
		{"CallTicketOnLifecycleStream", "/v1/stream", good.Ticket, "not valid for this stream"},
		{"OtherCallTicket", callPath, other.Ticket, "not valid for this stream"},
		{"TamperedMAC", callPath, exp + "." + string(flipped), "not valid for this stream"},
		{"LaterExpiry", callPath, "9" + exp + "." + mac, "not valid for this stream"},
		{"NoMAC", callPath, exp, "malformed"},
		{"BadBase64", callPath, exp + ".!!!", "malformed"},
		{"NegativeExpiry", callPath, "-" + exp + "." + mac, "malformed"},
		{"Garbage", callPath, "garbage", "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := streamStatus(t, ts.URL, tc.path, tc.ticket)
			if got != http.StatusUnauthorized {
				t.Fatalf("status=%d, want 401", got)
			}
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("error=%q, want it to contain %q", msg, tc.want)
			}
		})
	}

	t.Run("NotAcceptedOutsideStreams", func(t *testing.T) {
		for _, path := range []string{"/v1/calls", "/v1/calls/" + outboundCallID, "/v1/health", "/debug/memory", "/metrics"} {
			if got, _ := streamStatus(t, ts.URL, path, good.Ticket); got != http.StatusUnauthorized {
				t.Fatalf("%s with a ticket: status %d, want 401", path, got)
			}
		}
	})

	t.Run("IssueNeedsToken", func(t *testing.T) {
		resp, err := http.Post(ts.URL+"/v1/stream-tickets?ticket="+url.QueryEscape(lifecycle.Ticket), "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status=%d, want 401: a ticket must not mint tickets", resp.StatusCode)
		}
	})

	t.Run("Expired", func(t *testing.T) {
		if got, _ := streamStatus(t, ts.URL, callPath, good.Ticket); got != http.StatusOK {
			t.Fatalf("before expiry: status %d, want 200", got)
		}
		offset.Store(int64(httpapi.StreamTicketTTL + time.Second))
		got, msg := streamStatus(t, ts.URL, callPath, good.Ticket)
		if got != http.StatusUnauthorized {
			t.Fatalf("after expiry: status %d, want 401", got)
		}
		if !strings.Contains(msg, "expired") {
			t.Fatalf("error=%q, want it to say expired", msg)
		}
	})

	t.Run("NotLogged", func(t *testing.T) {
		logs := ts.Logs.String()
		for _, tk := range []string{good.Ticket, lifecycle.Ticket, other.Ticket, mac} {
			if strings.Contains(logs, tk) {
				t.Fatalf("logs contain a ticket")
			}
		}
	})
}

func TestTicketRequestValidation(t *testing.T) {
	ts := startServer(t, withTokens)
	cases := []struct {
		name, body string
		want       int
	}{
		{"Empty", "", http.StatusCreated},
		{"EmptyObject", "{}", http.StatusCreated},
		{"CallID", `{"call_id":"call_1"}`, http.StatusCreated},
		{"NotJSON", "call_1", http.StatusBadRequest},
		{"SlashInID", `{"call_id":"a/b"}`, http.StatusBadRequest},
		{"TooLarge", `{"call_id":"` + strings.Repeat("x", 8<<10) + `"}`, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/stream-tickets", strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+apiToken)
			if got := do(t, req).StatusCode; got != tc.want {
				t.Fatalf("status=%d, want %d", got, tc.want)
			}
		})
	}
}
