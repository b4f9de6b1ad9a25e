package memwatch_test

import (
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/callcat/callcat/internal/memwatch"
)

// unsetenv removes key for the test and restores it afterwards.
func unsetenv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "") // registers the restore
	os.Unsetenv(key)
}

// keepMemoryLimit restores the Go memory limit after the test.
func keepMemoryLimit(t *testing.T) {
	t.Helper()
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
}

func TestConfigureMemoryLimitEnv(t *testing.T) {
	keepMemoryLimit(t)
	t.Setenv("GOMEMLIMIT", "1GiB")
	logger, logs := newLogger()

	limit, source := memwatch.ConfigureMemoryLimit(logger, 0)
	if source != memwatch.LimitSourceGOMEMLIMIT {
		t.Fatalf("source=%q, want %q", source, memwatch.LimitSourceGOMEMLIMIT)
	}
	// The runtime reads GOMEMLIMIT only at start, so the limit in force is
	// whatever this test binary started with.
	if want := debug.SetMemoryLimit(-1); limit != want {
		t.Fatalf("limit=%d, want %d", limit, want)
	}
	lines := logs.records(t, "go memory limit set", "go memory limit not set")
	if len(lines) != 1 {
		t.Fatalf("log lines=%d, want 1", len(lines))
	}
	if lines[0]["source"] != "GOMEMLIMIT" {
		t.Fatalf("logged source=%v, want GOMEMLIMIT", lines[0]["source"])
	}
}

func TestConfigureMemoryLimitCgroup(t *testing.T) {
	keepMemoryLimit(t)
	unsetenv(t, "GOMEMLIMIT")
	unsetenv(t, "AUTOMEMLIMIT")
	logger, logs := newLogger()

	// The expected outcome depends on the machine: a container with a
	// memory limit, or a host or sandbox without one.
	cgroupLimit, cgroupErr := memlimit.FromCgroup()
	limit, source := memwatch.ConfigureMemoryLimit(logger, 0.5)

	if cgroupErr == nil {
		want := int64(float64(cgroupLimit) * 0.5)
		if source != memwatch.LimitSourceCgroup || limit != want {
			t.Fatalf("limit, source=%d, %q, want %d, %q", limit, source, want, memwatch.LimitSourceCgroup)
		}
		if got := debug.SetMemoryLimit(-1); got != want {
			t.Fatalf("memory limit in force=%d, want %d", got, want)
		}
	} else {
		t.Logf("no cgroup limit here: %v", cgroupErr)
		if source != memwatch.LimitSourceNone || limit != math.MaxInt64 {
			t.Fatalf("limit, source=%d, %q, want %d, %q", limit, source, int64(math.MaxInt64), memwatch.LimitSourceNone)
		}
	}

	lines := logs.records(t, "go memory limit set", "go memory limit not set")
	if len(lines) != 1 {
		t.Fatalf("log lines=%d, want 1", len(lines))
	}
	if lines[0]["source"] != source {
		t.Fatalf("logged source=%v, want %s", lines[0]["source"], source)
	}
}

func TestConfigureMemoryLimitOff(t *testing.T) {
	keepMemoryLimit(t)
	unsetenv(t, "GOMEMLIMIT")
	t.Setenv("AUTOMEMLIMIT", "off")
	logger, logs := newLogger()

	if _, source := memwatch.ConfigureMemoryLimit(logger, 0); source != memwatch.LimitSourceNone {
		t.Fatalf("source=%q, want %q", source, memwatch.LimitSourceNone)
	}
	lines := logs.records(t, "go memory limit not set")
	if len(lines) != 1 {
		t.Fatalf("log lines=%d, want 1", len(lines))
	}
	if lines[0]["reason"] != "AUTOMEMLIMIT is off" {
		t.Fatalf("reason=%v, want AUTOMEMLIMIT is off", lines[0]["reason"])
	}
}

func TestConfigureMemoryLimitInvalidRatio(t *testing.T) {
	keepMemoryLimit(t)
	unsetenv(t, "GOMEMLIMIT")
	unsetenv(t, "AUTOMEMLIMIT")
	logger, logs := newLogger()

	if _, source := memwatch.ConfigureMemoryLimit(logger, 1.5); source != memwatch.LimitSourceNone {
		t.Fatalf("source=%q, want %q", source, memwatch.LimitSourceNone)
	}
	lines := logs.records(t, "go memory limit not set")
	if len(lines) != 1 {
		t.Fatalf("log lines=%d, want 1", len(lines))
	}
	if lines[0]["level"] != "WARN" {
		t.Fatalf("level=%v, want WARN", lines[0]["level"])
	}
}
