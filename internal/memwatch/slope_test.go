package memwatch_test

import (
	"math"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/memwatch"
)

// line returns points at the given hours after t0 on V = base + perHour*h.
// Hours that are multiples of 1/4 and integral values keep every sum in
// Slope exact in float64.
func line(base, perHour float64, hours ...float64) []memwatch.Point {
	t0 := time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC)
	points := make([]memwatch.Point, len(hours))
	for i, h := range hours {
		points[i] = memwatch.Point{
			T: t0.Add(time.Duration(h * float64(time.Hour))),
			V: base + perHour*h,
		}
	}
	return points
}

func TestSlope(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name   string
		points []memwatch.Point
		want   float64
		wantOK bool
	}{
		{"Flat", line(100*mib, 0, 0, 0.25, 0.5, 0.75, 1), 0, true},
		{"OneMiBPerHour", line(100*mib, mib, 0, 0.25, 0.5, 0.75, 1), mib, true},
		{"Negative", line(100*mib, -4*mib, 0, 0.25, 0.5, 0.75, 1), -4 * mib, true},
		{"IrregularSpacing", line(50*mib, 3*mib, 0, 0.25, 1.5, 1.75, 4, 6.5), 3 * mib, true},
		{"Unordered", line(50*mib, 2*mib, 1, 0, 0.75, 0.25, 0.5), 2 * mib, true},
		{"TooFewPoints", line(100*mib, mib, 0, 0.25, 0.5, 0.75), 0, false},
		{"SameTime", line(100*mib, mib, 1, 1, 1, 1, 1), 0, false},
		{"Empty", nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := memwatch.Slope(tt.points)
			if ok != tt.wantOK {
				t.Fatalf("ok=%v, want %v", ok, tt.wantOK)
			}
			if got != tt.want {
				t.Fatalf("slope=%v, want %v", got, tt.want)
			}
		})
	}
}

func TestSlopeNoisy(t *testing.T) {
	// Noise that mirrors around the middle of evenly spaced points is
	// uncorrelated with time, so the fit returns the slope of the line.
	points := line(0, 1000, 0, 0.25, 0.5, 0.75, 1, 1.25)
	noise := []float64{+10, -10, 0, 0, -10, +10}
	for i := range points {
		points[i].V += noise[i]
	}
	got, ok := memwatch.Slope(points)
	if !ok {
		t.Fatalf("ok=false, want true")
	}
	if math.Abs(got-1000) > 1e-9 {
		t.Fatalf("slope=%v, want 1000", got)
	}
}

func TestSlopeNotFinite(t *testing.T) {
	points := line(0, 1, 0, 0.25, 0.5, 0.75, 1)
	points[2].V = math.Inf(1)
	if got, ok := memwatch.Slope(points); ok {
		t.Fatalf("slope=%v ok=true, want ok=false", got)
	}
}
