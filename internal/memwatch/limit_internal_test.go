package memwatch

import (
	"log/slog"
	"os"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

func TestConfigureMemoryLimitFromCgroup(t *testing.T) {
	prevLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prevLimit) })
	for _, key := range []string{"GOMEMLIMIT", "AUTOMEMLIMIT"} {
		t.Setenv(key, "")
		os.Unsetenv(key)
	}
	readCgroupLimit = memlimit.Limit(1 << 30)
	t.Cleanup(func() { readCgroupLimit = memlimit.FromCgroup })

	limit, source := ConfigureMemoryLimit(slog.New(slog.DiscardHandler), 0)
	ratio := DefaultMemoryLimitRatio
	want := int64(float64(1<<30) * ratio) // 966367641, rounded down
	if source != LimitSourceCgroup {
		t.Fatalf("source=%q, want %q", source, LimitSourceCgroup)
	}
	if limit != want {
		t.Fatalf("limit=%d, want %d", limit, want)
	}
	if got := debug.SetMemoryLimit(-1); got != want {
		t.Fatalf("limit in force=%d, want %d", got, want)
	}
}

func TestConfigureMemoryLimitNoCgroup(t *testing.T) {
	prevLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prevLimit) })
	for _, key := range []string{"GOMEMLIMIT", "AUTOMEMLIMIT"} {
		t.Setenv(key, "")
		os.Unsetenv(key)
	}
	readCgroupLimit = func() (uint64, error) { return 0, memlimit.ErrNoCgroup }
	t.Cleanup(func() { readCgroupLimit = memlimit.FromCgroup })

	if _, source := ConfigureMemoryLimit(slog.New(slog.DiscardHandler), 0); source != LimitSourceNone {
		t.Fatalf("source=%q, want %q", source, LimitSourceNone)
	}
	if got := debug.SetMemoryLimit(-1); got != prevLimit {
		t.Fatalf("limit in force=%d, want unchanged %d", got, prevLimit)
	}
}
