package httpapi_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/httpapi"
	"github.com/callcat/callcat/internal/retell"
)

func TestWebhookAllowlist(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	cases := []struct {
		name    string
		trusted []netip.Prefix
		xff     []string // X-Forwarded-For header lines
		want    int
	}{
		{"PeerNotAllowed", nil, nil, http.StatusForbidden},
		{"ForwardedFromUntrustedPeer", nil, []string{"203.0.113.7"}, http.StatusForbidden},
		{"ForwardedByTrustedProxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, []string{"203.0.113.7"}, http.StatusNoContent},
		{"SpoofedLeftOfClient", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, []string{"203.0.113.7, 198.51.100.9"}, http.StatusForbidden},
		{"RightMostUntrusted", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"198.51.100.9, 203.0.113.7, 127.0.0.5"}, http.StatusNoContent},
		{"SeveralHeaderLines", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"198.51.100.9", "203.0.113.7"}, http.StatusNoContent},
		{"WithPort", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, []string{"203.0.113.7:5555"}, http.StatusNoContent},
		{"Unparsable", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, []string{"203.0.113.7, not-an-ip"}, http.StatusForbidden},
		{"OnlyProxies", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"127.0.0.9"}, http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, func(cfg *httpapi.Config) {
				cfg.Security.WebhookAllowCIDRs = allow
				cfg.Security.TrustedProxies = tc.trusted
			})
			body := readFixture(t, "outbound/webhook_1_call_started.json")
			header := http.Header{}
			for _, v := range tc.xff {
				header.Add("X-Forwarded-For", v)
			}
			got := postWebhook(t, ts.URL, body, retell.Sign(body, webhookKey, time.Now()), header)
			if got != tc.want {
				t.Fatalf("status=%d, want %d", got, tc.want)
			}
		})
	}

	t.Run("SignatureStillChecked", func(t *testing.T) {
		ts := startServer(t, func(cfg *httpapi.Config) {
			cfg.Security.WebhookAllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		})
		body := readFixture(t, "outbound/webhook_1_call_started.json")
		if got := postWebhook(t, ts.URL, body, retell.Sign(body, "key_wrong", time.Now()), nil); got != http.StatusUnauthorized {
			t.Fatalf("status=%d, want 401 from an allowed address with a bad signature", got)
		}
	})
	t.Run("OffByDefault", func(t *testing.T) {
		ts := startServer(t, nil)
		header := http.Header{"X-Forwarded-For": {"198.51.100.9"}}
		body := readFixture(t, "outbound/webhook_1_call_started.json")
		if got := postWebhook(t, ts.URL, body, retell.Sign(body, webhookKey, time.Now()), header); got != http.StatusNoContent {
			t.Fatalf("status=%d, want 204 without an allowlist", got)
		}
	})
}

func TestMaskPhone(t *testing.T) {
	cases := []struct {
		in, want string
	}{
		{"", ""},
		{"+15550142310", "+1555•••2310"},
		{"15550142310", "1555•••2310"},
		{"+447700900123", "+4477•••0123"},
		{"+4930123456", "•••56"},
		{"12345", "•••45"},
		{"1234", "•••"},
		{"+", "•••"},
		{"+1555014231é", "+1555•••231é"},
	}
	for _, tc := range cases {
		if got := httpapi.MaskPhone(tc.in); got != tc.want {
			t.Errorf("MaskPhone(%q)=%q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPhoneNumbersInLogs(t *testing.T) {
	cases := []struct {
		name     string
		show     bool
		want     string
		wantNone string
	}{
		{"MaskedByDefault", false, "from_number=+1555•••0001", "+15550100001"},
		{"Shown", true, "from_number=+15550100001", "•••"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, func(cfg *httpapi.Config) { cfg.Security.LogPhoneNumbers = tc.show })
			if code := postFixture(t, ts.URL, "outbound/webhook_1_call_started.json"); code != http.StatusNoContent {
				t.Fatalf("status=%d", code)
			}
			logs := ts.Logs.String()
			if !strings.Contains(logs, tc.want) {
				t.Fatalf("logs lack %q:\n%s", tc.want, logs)
			}
			if strings.Contains(logs, tc.wantNone) {
				t.Fatalf("logs contain %q:\n%s", tc.wantNone, logs)
			}
		})
	}
}
