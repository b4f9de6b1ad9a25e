package httpapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/callcat/callcat/internal/httpapi"
	"github.com/callcat/callcat/internal/openapi"
)

// documentedPath turns a ServeMux pattern into the OpenAPI operation it must
// have: "GET /v1/calls/{id}" stays, "{name...}" becomes "{name}", "/{$}"
// becomes "/", and a pattern without a method is documented as GET.
func documentedPath(pattern string) string {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "GET", pattern
	}
	path = strings.ReplaceAll(path, "...}", "}")
	path = strings.TrimSuffix(path, "{$}")
	return method + " " + path
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	spec, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range httpapi.Routes() {
		want = append(want, documentedPath(p))
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, spec.Operations()); diff != "" {
		t.Fatalf("operations (-routes +documented):\n%s", diff)
	}
}

// TestOpenAPIServed checks that both document routes are public and serve
// the parsed document.
func TestOpenAPIServed(t *testing.T) {
	srv := startServer(t, withTokens)
	for _, tc := range []struct{ path, contentType string }{
		{"/openapi.json", "application/json"},
		{"/openapi.yaml", "application/yaml"},
	} {
		resp := get(t, srv.URL+tc.path, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status=%d, want 200", tc.path, resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Type"); got != tc.contentType {
			t.Fatalf("%s: content type=%q, want %q", tc.path, got, tc.contentType)
		}
		var doc struct {
			OpenAPI string `json:"openapi"`
		}
		if err := json.Unmarshal([]byte(resp.Body), &doc); err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if doc.OpenAPI != "3.1.0" {
			t.Fatalf("%s: openapi=%q, want 3.1.0", tc.path, doc.OpenAPI)
		}
	}
}
