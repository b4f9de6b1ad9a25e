package memwatch

import (
	"encoding/json"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"
)

// Report is the state of a Watcher as ServeHTTP serves it. Pointer fields
// are nil, and null in JSON, while unknown.
type Report struct {
	Current         *Sample       `json:"current"` // newest sample; nil before the first
	Growth          Growth        `json:"growth"`
	Limits          Limits        `json:"limits"`
	SampleCount     int           `json:"sample_count"` // samples in the ring
	Capacity        int           `json:"capacity"`
	IntervalSeconds float64       `json:"interval_seconds"`
	WindowSeconds   float64       `json:"window_seconds"`
	Samples         []Sample      `json:"samples"`     // newest samples, oldest first
	Unavailable     []Unavailable `json:"unavailable"` // fields missing from the newest sample
}

// Growth holds the slopes fitted over the window after the newest sample.
type Growth struct {
	LiveHeapBytesPerHour *float64 `json:"live_heap_bytes_per_hour"`
	RSSBytesPerHour      *float64 `json:"rss_bytes_per_hour"`
	WindowSamples        int      `json:"window_samples"` // samples inside the window
	MaxBytesPerHour      float64  `json:"max_bytes_per_hour"`

	// Growing is true from the "memory growing" warning until the
	// "memory growth recovered" line.
	Growing bool `json:"growing"`
}

// Limits holds the memory limits in force and the projection against them.
type Limits struct {
	// GoMemoryLimitBytes is the Go runtime's soft limit (GOMEMLIMIT or
	// debug.SetMemoryLimit); nil when none is set.
	GoMemoryLimitBytes *int64 `json:"go_memory_limit_bytes"`

	// CgroupLimitBytes is the cgroup's limit; nil when none is set or the
	// cgroup cannot be read.
	CgroupLimitBytes *uint64 `json:"cgroup_limit_bytes"`

	// MemoryLimitBytes is the memory the process can use before the kernel
	// kills it: the cgroup limit, or else the machine's total memory.
	// MemoryLimitSource is "cgroup", "machine" or "" when both are unknown.
	MemoryLimitBytes  *uint64 `json:"memory_limit_bytes"`
	MemoryLimitSource string  `json:"memory_limit_source"`

	// TimeToLimitSeconds projects the RSS slope from the newest RSS to
	// MemoryLimitBytes; nil unless RSS grows.
	TimeToLimitSeconds *float64 `json:"time_to_limit_seconds"`
}

// Unavailable names a Sample field (by its JSON name) that the newest sample
// lacks, and why.
type Unavailable struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Report returns the state of the Watcher with the newest Config.ReportSamples
// samples.
func (w *Watcher) Report() Report {
	return w.report(w.reportSamples)
}

// ServeHTTP serves the Report as JSON to GET and HEAD requests. The query
// parameter samples sets how many newest samples it carries, up to the
// capacity of the ring.
func (w *Watcher) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		rw.Header().Set("Allow", "GET, HEAD")
		http.Error(rw, "method not allowed: use GET", http.StatusMethodNotAllowed)
		return
	}

	n := w.reportSamples
	if v := r.URL.Query().Get("samples"); v != "" {
		parsed, err := strconv.Atoi(v)
		if err != nil || parsed < 0 {
			http.Error(rw, "invalid samples "+strconv.Quote(v)+": want a non-negative integer", http.StatusBadRequest)
			return
		}
		n = min(parsed, len(w.ring))
	}

	body, err := json.Marshal(w.report(n))
	if err != nil {
		w.logger.Error("encode memory report", "err", err)
		http.Error(rw, "internal server error", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	rw.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = rw.Write(append(body, '\n'))
}

func (w *Watcher) report(n int) Report {
	w.mu.Lock()
	rep := Report{
		SampleCount:     w.count,
		Capacity:        len(w.ring),
		IntervalSeconds: w.interval.Seconds(),
		WindowSeconds:   w.window.Seconds(),
		Samples:         w.samplesLocked(n),
		Unavailable:     []Unavailable{},
		Growth: Growth{
			WindowSamples:   w.growth.windowSamples,
			MaxBytesPerHour: w.maxGrowth,
			Growing:         w.growing,
		},
	}
	g := w.growth
	if w.count > 0 {
		current := *w.newestLocked(0)
		rep.Current = &current
	}
	iss := w.issues
	w.mu.Unlock()

	if g.liveHeapOK {
		rep.Growth.LiveHeapBytesPerHour = &g.liveHeap
	}
	if g.rssOK {
		rep.Growth.RSSBytesPerHour = &g.rss
	}
	for f, err := range iss {
		if err != nil {
			rep.Unavailable = append(rep.Unavailable, Unavailable{Field: fieldNames[f], Reason: err.Error()})
		}
	}
	rep.Limits = limits(rep.Current, g, debug.SetMemoryLimit(-1))
	return rep
}

// limits fills Limits from the newest sample s (nil before the first), the
// slopes g and the Go memory limit goLimit.
func limits(s *Sample, g growth, goLimit int64) Limits {
	var l Limits
	if goLimit != math.MaxInt64 {
		l.GoMemoryLimitBytes = &goLimit
	}
	if s == nil {
		return l
	}
	if s.CgroupLimitBytes > 0 {
		l.CgroupLimitBytes = &s.CgroupLimitBytes
	}
	limit, source := memoryLimit(*s)
	if limit == 0 {
		return l
	}
	l.MemoryLimitBytes, l.MemoryLimitSource = &limit, source

	if g.rssOK && g.rss > 0 && s.RSSBytes > 0 {
		seconds := 0.0
		if s.RSSBytes < limit {
			hours := float64(limit-s.RSSBytes) / g.rss
			seconds = hours * time.Hour.Seconds()
		}
		if !math.IsInf(seconds, 0) {
			l.TimeToLimitSeconds = &seconds
		}
	}
	return l
}

// memoryLimit returns the memory the process can use before the kernel kills
// it and where that number comes from: the cgroup limit, or else the
// machine's total memory. It returns 0 and "" when both are unknown.
func memoryLimit(s Sample) (uint64, string) {
	switch {
	case s.CgroupLimitBytes > 0:
		return s.CgroupLimitBytes, "cgroup"
	case s.MachineTotalBytes > 0:
		return s.MachineTotalBytes, "machine"
	default:
		return 0, ""
	}
}
