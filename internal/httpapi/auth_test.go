package httpapi_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/httpapi"
	"github.com/callcat/callcat/internal/store/sqlite"
	"github.com/callcat/callcat/internal/stream"
	"github.com/callcat/callcat/internal/tracker"
)

// route is one request of the access table.
type route struct {
	method, path string
}

// authRoutes lists a request for every route. The call of the outbound
// fixtures has ended, so its stream replays and ends by itself.
var (
	apiRoutes = []route{
		{"GET", "/v1/calls"},
		{"GET", "/v1/calls/" + outboundCallID},
		{"GET", "/v1/calls/" + outboundCallID + "/transcript"},
		{"GET", "/v1/calls/" + outboundCallID + "/stream"},
		{"GET", "/v1/stream"},
		{"POST", "/v1/stream-tickets"},
		{"GET", "/v1/health"},
	}
	adminRoutes = []route{
		{"GET", "/metrics"},
		{"GET", "/debug/memory"},
		{"GET", "/debug/pprof/"},
		{"GET", "/debug/pprof/goroutine?debug=1"},
	}
	publicRoutes = []route{
		{"GET", "/healthz"},
		{"GET", "/readyz"},
		{"GET", "/"},
		{"GET", "/assets/app.js"},
		{"GET", "/assets/app.css"},
	}
)

// Credentials of the access table.
var credentials = []struct {
	name, token string
}{
	{"NoToken", ""},
	{"WrongToken", wrongToken},
	{"APIToken", apiToken},
	{"SecondAPIToken", apiToken2},
	{"AdminToken", adminToken},
}

// endedCall stores the outbound fixture call from start to end.
func endedCall(t *testing.T, ts *testServer) {
	t.Helper()
	for _, name := range []string{"outbound/webhook_1_call_started.json", "outbound/webhook_6_call_ended.json"} {
		if code := postFixture(t, ts.URL, name); code != http.StatusNoContent {
			t.Fatalf("post %s: status %d", name, code)
		}
	}
}

// statusOf sends one request and returns its status. Streams that stay open
// are cut once the header arrived.
func statusOf(t *testing.T, baseURL string, r route, token string) (int, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, baseURL+r.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// okStatus is the status of each route when access is granted.
func okStatus(r route) int {
	if r.method == "POST" {
		return http.StatusCreated
	}
	return http.StatusOK
}

func TestAccessWithTokens(t *testing.T) {
	ts := startServer(t, func(cfg *httpapi.Config) {
		withTokens(cfg)
		cfg.Security.Pprof = true
	})
	endedCall(t, ts)

	for _, cred := range credentials {
		isAPI := cred.token == apiToken || cred.token == apiToken2
		isAdmin := cred.token == adminToken
		for _, r := range apiRoutes {
			want := http.StatusUnauthorized
			if isAPI {
				want = okStatus(r)
			}
			t.Run(cred.name+r.method+r.path, func(t *testing.T) {
				got, header := statusOf(t, ts.URL, r, cred.token)
				if got != want {
					t.Fatalf("status=%d, want %d", got, want)
				}
				if want == http.StatusUnauthorized && !strings.HasPrefix(header.Get("WWW-Authenticate"), `Bearer realm="callcat"`) {
					t.Fatalf("WWW-Authenticate=%q, want a Bearer challenge", header.Get("WWW-Authenticate"))
				}
			})
		}
		for _, r := range adminRoutes {
			want := http.StatusUnauthorized
			if isAdmin {
				want = http.StatusOK
			}
			t.Run(cred.name+r.method+r.path, func(t *testing.T) {
				if got, _ := statusOf(t, ts.URL, r, cred.token); got != want {
					t.Fatalf("status=%d, want %d", got, want)
				}
			})
		}
		for _, r := range publicRoutes {
			t.Run(cred.name+r.method+r.path, func(t *testing.T) {
				if got, _ := statusOf(t, ts.URL, r, cred.token); got != http.StatusOK {
					t.Fatalf("status=%d, want 200", got)
				}
			})
		}
		t.Run(cred.name+"UnsignedWebhook", func(t *testing.T) {
			body := readFixture(t, "outbound/webhook_1_call_started.json")
			header := http.Header{}
			if cred.token != "" {
				header.Set("Authorization", "Bearer "+cred.token)
			}
			if got := postWebhook(t, ts.URL, body, "", header); got != http.StatusUnauthorized {
				t.Fatalf("status=%d, want 401: a token never replaces the signature", got)
			}
		})
	}
}

func TestAccessWithoutTokens(t *testing.T) {
	ts := startServer(t, nil)
	endedCall(t, ts)

	all := append(append(append([]route{}, apiRoutes...), adminRoutes[:2]...), publicRoutes...)
	for _, cred := range credentials {
		for _, r := range all {
			t.Run(cred.name+r.method+r.path, func(t *testing.T) {
				if got, _ := statusOf(t, ts.URL, r, cred.token); got != okStatus(r) {
					t.Fatalf("status=%d, want %d: without tokens every route is open", got, okStatus(r))
				}
			})
		}
	}

	if !strings.Contains(ts.Logs.String(), "API is unauthenticated") {
		t.Fatalf("start log does not say the API is unauthenticated:\n%s", ts.Logs.String())
	}
}

func TestAccessAdminDisabled(t *testing.T) {
	ts := startServer(t, func(cfg *httpapi.Config) {
		cfg.Security.APITokens = []string{apiToken}
	})
	for _, cred := range credentials {
		for _, r := range adminRoutes[:2] {
			t.Run(cred.name+r.path, func(t *testing.T) {
				if got, _ := statusOf(t, ts.URL, r, cred.token); got != http.StatusForbidden {
					t.Fatalf("status=%d, want 403 without an admin token configured", got)
				}
			})
		}
	}
	t.Run("PprofNotServed", func(t *testing.T) {
		if got, _ := statusOf(t, ts.URL, route{"GET", "/debug/pprof/"}, apiToken); got != http.StatusNotFound {
			t.Fatalf("status=%d, want 404 without --pprof", got)
		}
	})
}

func TestAccessPublicMetrics(t *testing.T) {
	ts := startServer(t, func(cfg *httpapi.Config) {
		withTokens(cfg)
		cfg.Security.PublicMetrics = true
	})
	for _, cred := range credentials {
		t.Run(cred.name, func(t *testing.T) {
			if got, _ := statusOf(t, ts.URL, route{"GET", "/metrics"}, cred.token); got != http.StatusOK {
				t.Fatalf("/metrics status=%d, want 200 with --public-metrics", got)
			}
			want := http.StatusUnauthorized
			if cred.token == adminToken {
				want = http.StatusOK
			}
			if got, _ := statusOf(t, ts.URL, route{"GET", "/debug/memory"}, cred.token); got != want {
				t.Fatalf("/debug/memory status=%d, want %d", got, want)
			}
		})
	}
}

func TestAccessChallenge(t *testing.T) {
	ts := startServer(t, withTokens)

	cases := []struct {
		name, header, want string
	}{
		{"Missing", "", `Bearer realm="callcat"`},
		{"Wrong", "Bearer " + wrongToken, `Bearer realm="callcat", error="invalid_token"`},
		{"OtherScheme", "Basic " + apiToken, `Bearer realm="callcat", error="invalid_token"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/calls", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp := do(t, req)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status=%d, want 401", resp.StatusCode)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.want {
				t.Fatalf("WWW-Authenticate=%q, want %q", got, tc.want)
			}
		})
	}

	t.Run("SchemeCaseInsensitive", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/calls", nil)
		req.Header.Set("Authorization", "bearer "+apiToken)
		if resp := do(t, req); resp.StatusCode != http.StatusOK {
			t.Fatalf("status=%d, want 200", resp.StatusCode)
		}
	})
	t.Run("AdminRealm", func(t *testing.T) {
		resp := get(t, ts.URL+"/debug/memory", apiToken)
		if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer realm="callcat-admin"`) {
			t.Fatalf("WWW-Authenticate=%q, want the admin realm", got)
		}
	})
}

func TestSecurityValidation(t *testing.T) {
	cases := []struct {
		name string
		sec  httpapi.Security
		want string
	}{
		{"ShortToken", httpapi.Security{APITokens: []string{"Zq9xK"}}, "invalid API token 1 of 1"},
		{"TokenWithSpace", httpapi.Security{APITokens: []string{apiToken, "has space in the middle"}}, "invalid API token 2 of 2"},
		{"ShortAdminToken", httpapi.Security{AdminToken: "Zq9xK"}, "invalid admin token"},
		{"AdminEqualsAPI", httpapi.Security{APITokens: []string{apiToken}, AdminToken: apiToken}, "equals an API token"},
		{"PprofWithoutAdmin", httpapi.Security{APITokens: []string{apiToken}, Pprof: true}, "pprof needs an admin token"},
		{"StarOrigin", httpapi.Security{CORSOrigins: []string{"*"}}, `invalid CORS origin "*"`},
		{"OriginWithPath", httpapi.Security{CORSOrigins: []string{"https://ops.example.com/app"}}, "invalid CORS origin"},
		{"OriginWithoutScheme", httpapi.Security{CORSOrigins: []string{"ops.example.com"}}, "invalid CORS origin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := newServerError(t, tc.sec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err=%v, want one containing %q", err, tc.want)
			}
			for _, tok := range append(tc.sec.APITokens, tc.sec.AdminToken) {
				if tok != "" && strings.Contains(err.Error(), tok) {
					t.Fatalf("error %q repeats a token", err)
				}
			}
		})
	}
}

// newServerError returns the error of NewServer with sec and real
// dependencies.
func newServerError(t *testing.T, sec httpapi.Security) error {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "callcat.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hub, err := stream.NewHub(stream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	tr, err := tracker.New(db, hub, nil, tracker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = httpapi.NewServer(httpapi.Config{Store: db, Tracker: tr, Hub: hub, WebhookKey: webhookKey, Security: sec})
	return err
}
