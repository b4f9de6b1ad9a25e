package benchkit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Metrics is one scrape of a Prometheus text exposition: the value of every
// sample line, keyed by the series as written ("name" or `name{a="b"}`).
type Metrics map[string]float64

// Scrape fetches url (a /metrics endpoint) with an optional bearer token.
func Scrape(ctx context.Context, url, token string) (Metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %d", url, resp.StatusCode)
	}
	return parseMetrics(io.LimitReader(resp.Body, 16<<20))
}

func parseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// Sum adds every series of the metric name, whatever its labels.
func (m Metrics) Sum(name string) float64 {
	total := 0.0
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			total += v
		}
	}
	return total
}

// Get returns the value of one series as written, such as
// `callcat_polls_total{outcome="ok"}`.
func (m Metrics) Get(series string) float64 { return m[series] }

// Bucket is one cumulative histogram bucket.
type Bucket struct {
	UpperBound float64
	Count      float64
}

// Histogram returns the cumulative buckets of histogram name, sorted by
// upper bound, +Inf last. labels selects one series of a vector, written as
// in the exposition and followed by a comma (`endpoint="get_call",`), or ""
// for a histogram without labels.
func (m Metrics) Histogram(name, labels string) []Bucket {
	prefix := name + "_bucket{" + labels + `le="`
	var out []Bucket
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		le, _, _ := strings.Cut(rest, `"`)
		ub, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue
		}
		out = append(out, Bucket{UpperBound: ub, Count: v})
	}
	slices.SortFunc(out, func(a, b Bucket) int { return cmpFloat(a.UpperBound, b.UpperBound) })
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// HistogramDelta returns after minus before, bucket by bucket: the
// observations made between two scrapes.
func HistogramDelta(before, after []Bucket) []Bucket {
	out := make([]Bucket, len(after))
	for i, b := range after {
		out[i] = b
		for _, p := range before {
			if p.UpperBound == b.UpperBound {
				out[i].Count -= p.Count
			}
		}
	}
	return out
}

// Quantile returns the upper bound of the first bucket holding at least q of
// the observations: an upper estimate of the q-quantile, as precise as the
// bucket layout. It returns NaN without observations.
func Quantile(buckets []Bucket, q float64) float64 {
	if len(buckets) == 0 {
		return math.NaN()
	}
	total := buckets[len(buckets)-1].Count
	if total <= 0 {
		return math.NaN()
	}
	for _, b := range buckets {
		if b.Count >= q*total {
			return b.UpperBound
		}
	}
	return math.Inf(1)
}

// FractionAbove returns the share of observations above bound, which must
// be one of the bucket bounds.
func FractionAbove(buckets []Bucket, bound float64) float64 {
	if len(buckets) == 0 {
		return math.NaN()
	}
	total := buckets[len(buckets)-1].Count
	if total <= 0 {
		return math.NaN()
	}
	for _, b := range buckets {
		if b.UpperBound == bound {
			return 1 - b.Count/total
		}
	}
	return math.NaN()
}
