package retell_test

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// fixtureDir is the repository's provider test data, relative to this package.
const fixtureDir = "../../testdata/retell"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// readFixture returns the bytes of a file under fixtureDir.
func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, filepath.FromSlash(name)))
	if err != nil {
		tb.Fatalf("read fixture: %v", err)
	}
	return data
}
