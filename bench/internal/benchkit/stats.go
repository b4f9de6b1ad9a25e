package benchkit

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Percentile returns the q-quantile (0 to 1) of sorted by the nearest-rank
// method, or 0 for an empty slice.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

// Latencies summarises a set of durations.
type Latencies struct {
	Count         int
	P50, P99, Max time.Duration
}

// Summarize sorts d in place and returns its p50, p99 and maximum.
func Summarize(d []time.Duration) Latencies {
	slices.Sort(d)
	l := Latencies{Count: len(d)}
	if len(d) > 0 {
		l.P50 = Percentile(d, 0.50)
		l.P99 = Percentile(d, 0.99)
		l.Max = d[len(d)-1]
	}
	return l
}

func (l Latencies) String() string {
	return fmt.Sprintf("n=%d p50=%s p99=%s max=%s", l.Count, Ms(l.P50), Ms(l.P99), Ms(l.Max))
}

// Median returns the median of v, or NaN for an empty slice.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Ms formats d in milliseconds with two decimals.
func Ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// MiB formats a byte count in MiB with one decimal.
func MiB(b int64) string {
	return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20))
}
