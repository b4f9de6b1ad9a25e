package main

import (
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parseServiceFlags parses args and env like serve does and resolves them.
func parseServiceFlags(t *testing.T, args []string, env map[string]string) (*serviceFlags, error) {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f serviceFlags
	f.register(fs, "data")
	if err := parseFlags(fs, args, func(k string) string { return env[k] }); err != nil {
		return nil, err
	}
	return &f, f.resolve()
}

func TestSecurityFlags(t *testing.T) {
	dir := t.TempDir()
	tokensFile := filepath.Join(dir, "tokens")
	os.WriteFile(tokensFile, []byte("# dashboards\napitok-file-0000000001\n\n  apitok-file-0000000002  \n"), 0o600)
	adminFile := filepath.Join(dir, "admin")
	os.WriteFile(adminFile, []byte("# admin\nadmintok-file-000000001\n"), 0o600)

	f, err := parseServiceFlags(t, []string{
		"--api-tokens", "apitok-flag-000000001, apitok-flag-000000002",
		"--api-tokens-file", tokensFile,
		"--admin-token-file", adminFile,
		"--cors-origins", "https://ops.example.com,https://b.example.com",
		"--webhook-allow-cidrs", "203.0.113.0/24, 198.51.100.7, ::ffff:192.0.2.1",
		"--trusted-proxies", "10.0.0.0/8",
		"--pprof", "--public-metrics",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sec := f.cfg.Security

	wantTokens := []string{"apitok-flag-000000001", "apitok-flag-000000002", "apitok-file-0000000001", "apitok-file-0000000002"}
	if diff := cmp.Diff(wantTokens, sec.APITokens); diff != "" {
		t.Fatalf("API tokens (-want +got):\n%s", diff)
	}
	if sec.AdminToken != "admintok-file-000000001" {
		t.Fatalf("admin token=%q, want the file's", sec.AdminToken)
	}
	if diff := cmp.Diff([]string{"https://ops.example.com", "https://b.example.com"}, sec.CORSOrigins); diff != "" {
		t.Fatalf("CORS origins (-want +got):\n%s", diff)
	}
	wantAllow := []netip.Prefix{
		netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("198.51.100.7/32"),
		netip.MustParsePrefix("192.0.2.1/32"),
	}
	if diff := cmp.Diff(wantAllow, sec.WebhookAllowCIDRs, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Fatalf("webhook allowlist (-want +got):\n%s", diff)
	}
	if len(sec.TrustedProxies) != 1 || sec.TrustedProxies[0] != netip.MustParsePrefix("10.0.0.0/8") {
		t.Fatalf("trusted proxies=%v, want 10.0.0.0/8", sec.TrustedProxies)
	}
	if !sec.Pprof || !sec.PublicMetrics {
		t.Fatalf("pprof=%v public metrics=%v, want both", sec.Pprof, sec.PublicMetrics)
	}
	if sec.LogPhoneNumbers {
		t.Fatalf("phone numbers logged in full by default, want masked")
	}
	if f.cfg.DisableDashboard {
		t.Fatalf("dashboard disabled by default")
	}
}

func TestSecurityFlagsFromEnvironment(t *testing.T) {
	f, err := parseServiceFlags(t, nil, map[string]string{
		"CALLCAT_API_TOKENS":         "apitok-env-0000000001,apitok-env-0000000002",
		"CALLCAT_ADMIN_TOKEN":        "admintok-env-000000001",
		"CALLCAT_MASK_PHONE_NUMBERS": "false",
		"CALLCAT_DASHBOARD":          "false",
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"apitok-env-0000000001", "apitok-env-0000000002"}, f.cfg.Security.APITokens); diff != "" {
		t.Fatalf("API tokens (-want +got):\n%s", diff)
	}
	if f.cfg.Security.AdminToken != "admintok-env-000000001" {
		t.Fatalf("admin token=%q, want CALLCAT_ADMIN_TOKEN", f.cfg.Security.AdminToken)
	}
	if !f.cfg.Security.LogPhoneNumbers {
		t.Fatalf("CALLCAT_MASK_PHONE_NUMBERS=false did not unmask numbers")
	}
	if !f.cfg.DisableDashboard {
		t.Fatalf("CALLCAT_DASHBOARD=false did not disable the dashboard")
	}
}

func TestSecurityFlagsInvalid(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("# nothing here\n\n"), 0o600)
	two := filepath.Join(dir, "two")
	os.WriteFile(two, []byte("admintok-a-0000000001\nadmintok-b-0000000002\n"), 0o600)

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"BothAdminFlags", []string{"--admin-token", "admintok-x-0000000001", "--admin-token-file", two}, "not both"},
		{"AdminFileWithTwo", []string{"--admin-token-file", two}, "contains 2 tokens"},
		{"EmptyTokensFile", []string{"--api-tokens-file", empty}, "contains no token"},
		{"MissingTokensFile", []string{"--api-tokens-file", filepath.Join(dir, "absent")}, "read --api-tokens-file"},
		{"BadCIDR", []string{"--webhook-allow-cidrs", "203.0.113.0/33"}, `invalid --webhook-allow-cidrs entry "203.0.113.0/33"`},
		{"BadProxy", []string{"--trusted-proxies", "proxy.example.com"}, "invalid --trusted-proxies entry"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServiceFlags(t, tc.args, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err=%v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "admintok-") {
				t.Fatalf("error %q repeats a token", err)
			}
		})
	}
}

func TestDashboardURL(t *testing.T) {
	cases := map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080/",
		"[::]:8080":      "http://localhost:8080/",
		"0.0.0.0:9000":   "http://localhost:9000/",
		"[::1]:8080":     "http://[::1]:8080/",
	}
	for addr, want := range cases {
		if got := dashboardURL(addr); got != want {
			t.Errorf("dashboardURL(%q)=%q, want %q", addr, got, want)
		}
	}
}
