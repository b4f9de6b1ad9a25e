package httpapi_test

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/callcat/callcat/internal/httpapi"
)

const allowedOrigin = "https://ops.example.com"

func preflight(t *testing.T, url, origin string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodOptions, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	return do(t, req)
}

func getFrom(t *testing.T, url, origin, token string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

func TestCORSOff(t *testing.T) {
	ts := startServer(t, withTokens)

	resp := getFrom(t, ts.URL+"/v1/calls", allowedOrigin, apiToken)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status=%d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("Access-Control-Allow-Origin=%q, want none while CORS is off", got)
	}
	pf := preflight(t, ts.URL+"/v1/calls", allowedOrigin)
	if got := pf.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("preflight Access-Control-Allow-Origin=%q, want none", got)
	}
	if pf.StatusCode == http.StatusNoContent || pf.StatusCode == http.StatusOK {
		t.Fatalf("preflight status=%d, want a failure while CORS is off", pf.StatusCode)
	}
}

func TestCORSListedOrigins(t *testing.T) {
	ts := startServer(t, func(cfg *httpapi.Config) {
		withTokens(cfg)
		// Written in another case and with a trailing slash; the server
		// compares the normalized form.
		cfg.Security.CORSOrigins = []string{"HTTPS://Ops.Example.com/", "http://127.0.0.1:9999"}
	})

	t.Run("AllowedGet", func(t *testing.T) {
		resp := getFrom(t, ts.URL+"/v1/calls", allowedOrigin, apiToken)
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != allowedOrigin {
			t.Fatalf("Access-Control-Allow-Origin=%q, want %q", got, allowedOrigin)
		}
		if got := resp.Header.Values("Vary"); !contains(got, "Origin") {
			t.Fatalf("Vary=%q, want Origin", got)
		}
		if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != "" {
			t.Fatalf("Access-Control-Allow-Credentials=%q, want none", got)
		}
	})
	t.Run("AllowedPreflight", func(t *testing.T) {
		resp := preflight(t, ts.URL+"/v1/calls", allowedOrigin)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status=%d, want 204", resp.StatusCode)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != allowedOrigin {
			t.Fatalf("Access-Control-Allow-Origin=%q, want %q", got, allowedOrigin)
		}
		if got := resp.Header.Get("Access-Control-Allow-Headers"); !strings.Contains(got, "Authorization") {
			t.Fatalf("Access-Control-Allow-Headers=%q, want Authorization", got)
		}
		if got := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "POST") {
			t.Fatalf("Access-Control-Allow-Methods=%q, want POST", got)
		}
	})
	t.Run("OtherOrigin", func(t *testing.T) {
		resp := getFrom(t, ts.URL+"/v1/calls", "https://evil.example.com", apiToken)
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("Access-Control-Allow-Origin=%q, want none", got)
		}
		pf := preflight(t, ts.URL+"/v1/calls", "https://evil.example.com")
		if got := pf.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("preflight Access-Control-Allow-Origin=%q, want none", got)
		}
	})
	t.Run("NotOnWebhook", func(t *testing.T) {
		pf := preflight(t, ts.URL+"/webhooks/retell", allowedOrigin)
		if got := pf.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("webhook preflight Access-Control-Allow-Origin=%q, want none", got)
		}
	})
	t.Run("NeverStar", func(t *testing.T) {
		for _, origin := range []string{allowedOrigin, "http://127.0.0.1:9999", "null", "*"} {
			resp := getFrom(t, ts.URL+"/v1/calls", origin, apiToken)
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got == "*" {
				t.Fatalf("origin %q: Access-Control-Allow-Origin=*", origin)
			}
		}
	})
}

func contains(values []string, want string) bool {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			if strings.TrimSpace(part) == want {
				return true
			}
		}
	}
	return false
}

func TestSecurityHeaders(t *testing.T) {
	ts := startServer(t, withTokens)

	cases := []struct {
		name, path, token, csp string
	}{
		{"Dashboard", "/", "", "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"},
		{"Script", "/assets/app.js", "", "default-src 'self'"},
		{"API", "/v1/calls", apiToken, "default-src 'none'; frame-ancestors 'none'"},
		{"APIUnauthorized", "/v1/calls", "", "default-src 'none'; frame-ancestors 'none'"},
		{"NotFound", "/nowhere", "", "default-src 'none'; frame-ancestors 'none'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(t, ts.URL+tc.path, tc.token)
			if got := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(got, tc.csp) {
				t.Fatalf("Content-Security-Policy=%q, want %q", got, tc.csp)
			}
			if got := resp.Header.Get("Content-Security-Policy"); strings.Contains(got, "unsafe-") {
				t.Fatalf("Content-Security-Policy=%q allows unsafe sources", got)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Fatalf("X-Content-Type-Options=%q, want nosniff", got)
			}
			if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
				t.Fatalf("X-Frame-Options=%q, want DENY", got)
			}
			if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
				t.Fatalf("Referrer-Policy=%q, want no-referrer", got)
			}
		})
	}
}

func TestDashboardFiles(t *testing.T) {
	ts := startServer(t, nil)

	cases := []struct {
		path, contentType string
	}{
		{"/", "text/html; charset=utf-8"},
		{"/assets/app.js", "text/javascript; charset=utf-8"},
		{"/assets/app.css", "text/css; charset=utf-8"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			resp := get(t, ts.URL+tc.path, "")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status=%d, want 200", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.contentType {
				t.Fatalf("Content-Type=%q, want %q", got, tc.contentType)
			}
			etag := resp.Header.Get("ETag")
			if etag == "" {
				t.Fatalf("no ETag")
			}
			req, _ := http.NewRequest(http.MethodGet, ts.URL+tc.path, nil)
			req.Header.Set("If-None-Match", etag)
			if got := do(t, req).StatusCode; got != http.StatusNotModified {
				t.Fatalf("revalidation status=%d, want 304", got)
			}
		})
	}

	t.Run("UnknownAsset", func(t *testing.T) {
		if got := get(t, ts.URL+"/assets/nope.js", "").StatusCode; got != http.StatusNotFound {
			t.Fatalf("status=%d, want 404", got)
		}
	})
	t.Run("NoCatchAll", func(t *testing.T) {
		if got := get(t, ts.URL+"/index.html", "").StatusCode; got != http.StatusNotFound {
			t.Fatalf("status=%d, want 404", got)
		}
	})
	t.Run("Disabled", func(t *testing.T) {
		off := startServer(t, func(cfg *httpapi.Config) { cfg.Assets = nil })
		if got := get(t, off.URL+"/", "").StatusCode; got != http.StatusNotFound {
			t.Fatalf("status=%d, want 404 without assets", got)
		}
	})
}

// TestDashboardNoInlineCode checks the page against its own policy: the CSP
// forbids inline scripts, inline styles and event handler attributes, so
// the files must not need them.
func TestDashboardNoInlineCode(t *testing.T) {
	html, err := os.ReadFile("../../web/index.html")
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile("../../web/assets/app.js")
	if err != nil {
		t.Fatal(err)
	}

	htmlChecks := []struct {
		name string
		re   *regexp.Regexp
	}{
		{"InlineScript", regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]`)},
		{"StyleElement", regexp.MustCompile(`(?i)<style`)},
		{"StyleAttribute", regexp.MustCompile(`(?i)\sstyle=`)},
		{"HandlerAttribute", regexp.MustCompile(`(?i)\son[a-z]+=`)},
		{"JavascriptURL", regexp.MustCompile(`(?i)javascript:`)},
	}
	for _, c := range htmlChecks {
		if loc := c.re.FindIndex(html); loc != nil {
			t.Errorf("index.html: %s at %q", c.name, html[loc[0]:min(loc[1]+20, len(html))])
		}
	}
	scripts := regexp.MustCompile(`(?i)<script[^>]*>`).FindAll(html, -1)
	if len(scripts) == 0 {
		t.Errorf("index.html loads no script")
	}
	for _, tag := range scripts {
		if !strings.Contains(string(tag), `src="/assets/`) {
			t.Errorf("index.html: script %q is not one of the dashboard's files", tag)
		}
	}

	jsChecks := []struct {
		name string
		re   *regexp.Regexp
	}{
		{"InnerHTML", regexp.MustCompile(`\.(inner|outer)HTML\b`)},
		{"StyleAttribute", regexp.MustCompile(`setAttribute\(\s*['"]style`)},
		{"Eval", regexp.MustCompile(`\beval\(|new Function\(`)},
		{"ForeignURL", regexp.MustCompile(`https?://(?:[^'"]*)`)},
	}
	for _, c := range jsChecks {
		for _, loc := range c.re.FindAllIndex(js, -1) {
			match := string(js[loc[0]:loc[1]])
			if c.name == "ForeignURL" && match == "http://www.w3.org/2000/svg" {
				continue // the SVG namespace name, never fetched
			}
			t.Errorf("app.js: %s: %q", c.name, match)
		}
	}
}
