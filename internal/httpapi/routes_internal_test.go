package httpapi

import (
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRoutesComplete checks that with every option on, addRoutes registers
// exactly Routes(), so the list the OpenAPI test reads cannot drift.
func TestRoutesComplete(t *testing.T) {
	s := &server{
		cfg: Config{
			Metrics:  http.NotFoundHandler(),
			Memory:   http.NotFoundHandler(),
			Security: Security{Pprof: true},
		},
		assets: &assetSet{},
	}
	s.addRoutes(http.NewServeMux())

	got := slices.Sorted(slices.Values(s.registered))
	want := slices.Sorted(slices.Values(Routes()))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("registered routes (-Routes +registered):\n%s", diff)
	}
}
