package app_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/app"
	"github.com/callcat/callcat/internal/retell"
)

func TestWebhookBadInput(t *testing.T) {
	const limit = 64 << 10
	svc := startService(t, app.Config{RetellBaseURL: "http://127.0.0.1:1", MaxWebhookBytes: limit})

	valid := readFixture(t, "outbound/webhook_1_call_started.json")
	now := time.Now()
	sign := func(body []byte) string { return retell.Sign(body, fixtureKey, now) }
	tampered := bytes.Replace(valid, []byte(`"call_status":"ongoing"`), []byte(`"call_status":"ended"`), 1)
	if bytes.Equal(tampered, valid) {
		t.Fatalf("tampering changed nothing; fixture changed?")
	}
	oversized := append([]byte(`{"event":"call_started","call":{"call_id":"call_big","pad":"`), bytes.Repeat([]byte("x"), limit)...)
	oversized = append(oversized, `"}}`...)

	cases := []struct {
		name   string
		method string
		path   string
		body   []byte
		header string // X-Retell-Signature; "-" sends none
		want   int
	}{
		{"NoSignature", "POST", "/webhooks/retell", valid, "-", http.StatusUnauthorized},
		{"TamperedBody", "POST", "/webhooks/retell", tampered, sign(valid), http.StatusUnauthorized},
		{"WrongKey", "POST", "/webhooks/retell", valid, retell.Sign(valid, "key_wrong", now), http.StatusUnauthorized},
		{"SixMinutesOld", "POST", "/webhooks/retell", valid, retell.Sign(valid, fixtureKey, now.Add(-6*time.Minute)), http.StatusUnauthorized},
		{"SixMinutesAhead", "POST", "/webhooks/retell", valid, retell.Sign(valid, fixtureKey, now.Add(6*time.Minute)), http.StatusUnauthorized},
		{"MalformedHeader", "POST", "/webhooks/retell", valid, "sha256=" + sign(valid), http.StatusUnauthorized},
		{"DigestOnly", "POST", "/webhooks/retell", valid, strings.SplitN(sign(valid), ",d=", 2)[1], http.StatusUnauthorized},
		{"InvalidJSON", "POST", "/webhooks/retell", []byte(`{"event":"call_started","call":`), sign([]byte(`{"event":"call_started","call":`)), http.StatusBadRequest},
		{"NoCallID", "POST", "/webhooks/retell", []byte(`{"event":"call_started","call":{"agent_id":"a"}}`), sign([]byte(`{"event":"call_started","call":{"agent_id":"a"}}`)), http.StatusBadRequest},
		{"EmptyCallID", "POST", "/webhooks/retell", []byte(`{"event":"call_started","call":{"call_id":""}}`), sign([]byte(`{"event":"call_started","call":{"call_id":""}}`)), http.StatusBadRequest},
		{"NotAnObject", "POST", "/webhooks/retell", []byte(`[1,2]`), sign([]byte(`[1,2]`)), http.StatusBadRequest},
		{"OverLimit", "POST", "/webhooks/retell", oversized, sign(oversized), http.StatusRequestEntityTooLarge},
		{"WrongMethod", "GET", "/webhooks/retell", nil, "-", http.StatusMethodNotAllowed},
		{"UnknownRoute", "POST", "/webhooks/other", valid, sign(valid), http.StatusNotFound},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, svc.URL()+tc.path, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "-" {
				req.Header.Set(retell.SignatureHeader, tc.header)
			}
			if got := doStatus(t, req); got != tc.want {
				t.Fatalf("status=%d, want %d", got, tc.want)
			}
		})
	}

	// Nothing was stored by any of them.
	var list struct {
		Calls []callJSON `json:"calls"`
	}
	getJSON(t, svc.URL()+"/v1/calls?status=all", &list)
	if len(list.Calls) != 0 {
		t.Fatalf("calls stored after bad input: %d, want 0", len(list.Calls))
	}
	if svc.Tracker.Tracked() != 0 {
		t.Fatalf("tracked calls=%d, want 0", svc.Tracker.Tracked())
	}

	// The valid body, correctly signed, is accepted afterwards.
	if code := postWebhook(t, svc.URL(), valid, fixtureKey); code != http.StatusNoContent {
		t.Fatalf("valid webhook: status %d, want 204", code)
	}
}

func TestAPIBadInput(t *testing.T) {
	svc := startService(t, app.Config{RetellBaseURL: "http://127.0.0.1:1"})

	cases := []struct {
		name   string
		method string
		path   string
		header map[string]string
		want   int
	}{
		{"UnknownCall", "GET", "/v1/calls/call_missing", nil, http.StatusNotFound},
		{"UnknownCallTranscript", "GET", "/v1/calls/call_missing/transcript", nil, http.StatusNotFound},
		{"UnknownCallStream", "GET", "/v1/calls/call_missing/stream", nil, http.StatusNotFound},
		{"BadStatusFilter", "GET", "/v1/calls?status=sleeping", nil, http.StatusBadRequest},
		{"BadLimit", "GET", "/v1/calls?limit=0", nil, http.StatusBadRequest},
		{"LimitTooLarge", "GET", "/v1/calls?limit=100000", nil, http.StatusBadRequest},
		{"BadCursor", "GET", "/v1/calls?cursor=%25%25%25", nil, http.StatusBadRequest},
		{"BadFormat", "GET", "/v1/calls/call_missing/transcript?format=pdf", nil, http.StatusBadRequest},
		{"BadLastEventID", "GET", "/v1/calls/call_missing/stream", map[string]string{"Last-Event-ID": "abc"}, http.StatusBadRequest},
		{"NegativeAfter", "GET", "/v1/calls/call_missing/stream?after=-1", nil, http.StatusBadRequest},
		{"WrongMethod", "DELETE", "/v1/calls", nil, http.StatusMethodNotAllowed},
		{"UnknownRoute", "GET", "/v2/calls", nil, http.StatusNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, svc.URL()+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			if got := doStatus(t, req); got != tc.want {
				t.Fatalf("status=%d, want %d", got, tc.want)
			}
		})
	}
}

func TestServeRefusesPublicAddress(t *testing.T) {
	err := app.Serve(t.Context(), app.Config{
		Addr:         "0.0.0.0:0",
		DataDir:      t.TempDir(),
		RetellAPIKey: fixtureKey,
	}, nil)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err=%v, want a refusal naming loopback", err)
	}
}

func TestServeRequiresAPIKey(t *testing.T) {
	err := app.Serve(t.Context(), app.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()}, nil)
	if err == nil || !strings.Contains(err.Error(), "RETELL_API_KEY") {
		t.Fatalf("err=%v, want an error naming RETELL_API_KEY", err)
	}
}
