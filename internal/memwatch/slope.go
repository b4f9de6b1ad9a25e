package memwatch

import (
	"math"
	"time"
)

// MinSlopePoints is the fewest points Slope fits a line to. Fewer samples of
// a heap that moves in steps at every GC give a slope that means little.
const MinSlopePoints = 5

// Point is one observation of a series, such as live heap bytes, at time T.
type Point struct {
	T time.Time
	V float64
}

// Slope fits a line to points by ordinary least squares and returns its
// slope in units of V per hour. Points may come in any order and at any
// spacing. ok is false when there are fewer than MinSlopePoints points, when
// all points share one time, or when a value is not finite.
func Slope(points []Point) (perHour float64, ok bool) {
	if len(points) < MinSlopePoints {
		return 0, false
	}

	// Hours since the first point keep the abscissas small, so the sums lose
	// no precision to the magnitude of Unix time.
	origin := points[0].T
	var sumX, sumY float64
	for _, p := range points {
		sumX += p.T.Sub(origin).Hours()
		sumY += p.V
	}
	n := float64(len(points))
	meanX, meanY := sumX/n, sumY/n

	var sxx, sxy float64
	for _, p := range points {
		dx := p.T.Sub(origin).Hours() - meanX
		sxx += dx * dx
		sxy += dx * (p.V - meanY)
	}
	if sxx == 0 {
		return 0, false
	}
	perHour = sxy / sxx
	if math.IsNaN(perHour) || math.IsInf(perHour, 0) {
		return 0, false
	}
	return perHour, true
}
