package memwatch

import (
	"errors"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// DefaultMemoryLimitRatio is the share of the cgroup memory limit that
// ConfigureMemoryLimit gives the Go runtime. The rest is headroom for memory
// the Go limit does not count (C memory from cgo, page cache charged to the
// cgroup) and for the GC to act before the kernel kills the process.
const DefaultMemoryLimitRatio = 0.9

// Sources of the Go memory limit returned by ConfigureMemoryLimit.
const (
	LimitSourceGOMEMLIMIT = "GOMEMLIMIT" // the environment variable, applied by the runtime at start
	LimitSourceCgroup     = "cgroup"     // a share of the cgroup memory limit
	LimitSourceNone       = "none"       // no limit set
)

// readCgroupLimit is memlimit.FromCgroup; tests replace it to act as a
// container with a limit.
var readCgroupLimit = memlimit.FromCgroup

// ConfigureMemoryLimit sets the Go memory limit to ratio of the cgroup memory
// limit unless the GOMEMLIMIT environment variable is set, and logs one line
// saying which. A ratio of 0 means DefaultMemoryLimitRatio; it must lie in
// (0, 1]. The AUTOMEMLIMIT environment variable, read by automemlimit,
// overrides ratio, and "off" disables the setting.
//
// It returns the limit in force afterwards (debug.SetMemoryLimit(-1), which is
// math.MaxInt64 when none is set) and its source, one of the LimitSource
// constants. Without a cgroup limit it sets none, because the machine's total
// memory would leave no headroom for other processes.
func ConfigureMemoryLimit(logger *slog.Logger, ratio float64) (limit int64, source string) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if ratio == 0 {
		ratio = DefaultMemoryLimitRatio
	}

	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		limit = debug.SetMemoryLimit(-1)
		logger.Info("go memory limit set", "source", LimitSourceGOMEMLIMIT, "limit_bytes", limit, "gomemlimit", env)
		return limit, LimitSourceGOMEMLIMIT
	}

	// The provider records the cgroup's result, so the log line can tell no
	// limit apart from no cgroup and show the limit the ratio applied to.
	var cgroupLimit uint64
	var cgroupErr error
	called := false
	provider := func() (uint64, error) {
		called = true
		cgroupLimit, cgroupErr = readCgroupLimit()
		return cgroupLimit, cgroupErr
	}
	limit, err := memlimit.Set(memlimit.WithProvider(provider), memlimit.WithRatio(ratio))

	// memlimit.Set sets math.MaxInt64, the runtime's default, when the cgroup
	// has no limit, so each branch but the first leaves the limit unset.
	switch {
	case err == nil && called && cgroupErr == nil:
		logger.Info("go memory limit set", "source", LimitSourceCgroup, "limit_bytes", limit,
			"cgroup_limit_bytes", cgroupLimit, "ratio", ratio)
		return limit, LimitSourceCgroup
	case err == nil && !called:
		logger.Info("go memory limit not set", "source", LimitSourceNone, "reason", "AUTOMEMLIMIT is off")
	case err == nil:
		logger.Info("go memory limit not set", "source", LimitSourceNone, "reason", "cgroup sets no memory limit")
	case errors.Is(err, memlimit.ErrNoCgroup), errors.Is(err, memlimit.ErrCgroupsNotSupported):
		logger.Info("go memory limit not set", "source", LimitSourceNone, "reason", cgroupErr.Error())
	default:
		logger.Warn("go memory limit not set", "source", LimitSourceNone, "err", err)
	}
	return debug.SetMemoryLimit(-1), LimitSourceNone
}
