package memwatch

import (
	"errors"
	"fmt"
	"os"
	"runtime/metrics"
	"time"
)

// Sample is one observation of the process, its cgroup and its machine. A
// field that its source could not provide is zero, and Report lists such
// fields of the newest sample with the reason. Zero is also a real value of
// LiveHeapBytes and GCCycles before the first GC, and of CgroupLimitBytes
// when no limit is set.
type Sample struct {
	Time time.Time `json:"time"`

	// LiveHeapBytes is the heap marked live by the last GC; zero until the
	// first GC ends.
	LiveHeapBytes uint64 `json:"live_heap_bytes"`

	// TotalMemoryBytes is all memory the Go runtime has mapped: heap, stacks,
	// runtime structures and memory freed but not yet returned to the OS.
	TotalMemoryBytes uint64 `json:"total_memory_bytes"`

	HeapObjects uint64 `json:"heap_objects"` // objects live or not yet swept
	RSSBytes    uint64 `json:"rss_bytes"`    // resident set size, VmRSS
	Goroutines  int    `json:"goroutines"`   // goroutines alive
	Threads     int    `json:"threads"`      // OS threads of the process
	FDs         int    `json:"fds"`          // open file descriptors
	GCCycles    uint64 `json:"gc_cycles"`    // GC cycles completed since start

	// CgroupLimitBytes is the lowest memory limit of the process's cgroup and
	// its ancestors; zero when none sets a limit.
	CgroupLimitBytes uint64 `json:"cgroup_limit_bytes"`

	// CgroupUsageBytes is the memory charged to the process's cgroup, page
	// cache included.
	CgroupUsageBytes uint64 `json:"cgroup_usage_bytes"`

	MachineTotalBytes     uint64 `json:"machine_total_bytes"`     // MemTotal
	MachineAvailableBytes uint64 `json:"machine_available_bytes"` // MemAvailable
}

// field indexes the Sample fields that a source can fail to provide.
type field int

const (
	fieldLiveHeap field = iota
	fieldTotalMemory
	fieldHeapObjects
	fieldGoroutines
	fieldGCCycles
	fieldRSS
	fieldThreads
	fieldFDs
	fieldCgroupLimit
	fieldCgroupUsage
	fieldMachineTotal
	fieldMachineAvailable
	numFields
)

// fieldNames are the JSON names of the fields, as Report lists them.
var fieldNames = [numFields]string{
	fieldLiveHeap:         "live_heap_bytes",
	fieldTotalMemory:      "total_memory_bytes",
	fieldHeapObjects:      "heap_objects",
	fieldGoroutines:       "goroutines",
	fieldGCCycles:         "gc_cycles",
	fieldRSS:              "rss_bytes",
	fieldThreads:          "threads",
	fieldFDs:              "fds",
	fieldCgroupLimit:      "cgroup_limit_bytes",
	fieldCgroupUsage:      "cgroup_usage_bytes",
	fieldMachineTotal:     "machine_total_bytes",
	fieldMachineAvailable: "machine_available_bytes",
}

// runtimeMetrics are read in one metrics.Read call, in field order: the
// first len(runtimeMetrics) fields come from the Go runtime.
var runtimeMetrics = [...]string{
	fieldLiveHeap:    "/gc/heap/live:bytes",
	fieldTotalMemory: "/memory/classes/total:bytes",
	fieldHeapObjects: "/gc/heap/objects:objects",
	fieldGoroutines:  "/sched/goroutines:goroutines",
	fieldGCCycles:    "/gc/cycles/total:gc-cycles",
}

var errMetricUnsupported = errors.New("metric not supported by this Go runtime")

// issues holds, per field, why the last sample could not read it; nil
// entries were read.
type issues [numFields]error

// reader takes samples. It is not safe for concurrent use: Watcher.readMu
// serializes it.
type reader struct {
	now      func() time.Time
	metrics  []metrics.Sample // fixed names, values overwritten by each read
	buf      []byte           // readBufferSize, reused for every file
	pageSize uint64

	cgroup    cgroupFiles
	cgroupErr error // the error that made the cgroup unreadable; nil when cgroup is set
}

func newReader(now func() time.Time) *reader {
	r := &reader{
		now:      now,
		metrics:  make([]metrics.Sample, len(runtimeMetrics)),
		buf:      make([]byte, readBufferSize),
		pageSize: uint64(os.Getpagesize()),
	}
	for i, name := range runtimeMetrics {
		r.metrics[i].Name = name
	}
	r.cgroup, r.cgroupErr = findCgroup()
	return r
}

// read takes a sample and records in iss why any field is missing.
func (r *reader) read(iss *issues) Sample {
	s := Sample{Time: r.now()}
	r.readRuntime(&s, iss)
	r.readStatus(&s, iss)
	r.readFDs(&s, iss)
	r.readCgroup(&s, iss)
	r.readMeminfo(&s, iss)
	return s
}

func (r *reader) readRuntime(s *Sample, iss *issues) {
	metrics.Read(r.metrics)
	values := [len(runtimeMetrics)]uint64{}
	for i, m := range r.metrics {
		if m.Value.Kind() != metrics.KindUint64 {
			iss[i] = errMetricUnsupported
			continue
		}
		values[i] = m.Value.Uint64()
	}
	s.LiveHeapBytes = values[fieldLiveHeap]
	s.TotalMemoryBytes = values[fieldTotalMemory]
	s.HeapObjects = values[fieldHeapObjects]
	s.Goroutines = int(values[fieldGoroutines])
	s.GCCycles = values[fieldGCCycles]
}

func (r *reader) readStatus(s *Sample, iss *issues) {
	buf, err := readFile(procStatusPath, r.buf)
	if err != nil {
		iss[fieldRSS], iss[fieldThreads] = err, err
		return
	}
	s.RSSBytes, iss[fieldRSS], s.Threads, iss[fieldThreads] = parseStatus(buf)
}

func (r *reader) readFDs(s *Sample, iss *issues) {
	s.FDs, iss[fieldFDs] = countFDs(r.buf)
}

func (r *reader) readMeminfo(s *Sample, iss *issues) {
	buf, err := readFile(procMeminfoPath, r.buf)
	if err != nil {
		iss[fieldMachineTotal], iss[fieldMachineAvailable] = err, err
		return
	}
	s.MachineTotalBytes, iss[fieldMachineTotal], s.MachineAvailableBytes, iss[fieldMachineAvailable] = parseMeminfo(buf)
}

func (r *reader) readCgroup(s *Sample, iss *issues) {
	if r.cgroupErr != nil {
		iss[fieldCgroupLimit], iss[fieldCgroupUsage] = r.cgroupErr, r.cgroupErr
		return
	}

	s.CgroupUsageBytes, iss[fieldCgroupUsage] = r.readCgroupValue(r.cgroup.usagePath, false)

	// The lowest limit on the path to the mount point applies. Zero means
	// no limit.
	for _, path := range r.cgroup.limitPaths {
		limit, err := r.readCgroupValue(path, true)
		if err != nil {
			iss[fieldCgroupLimit] = err
			s.CgroupLimitBytes = 0
			return
		}
		if limit > 0 && (s.CgroupLimitBytes == 0 || limit < s.CgroupLimitBytes) {
			s.CgroupLimitBytes = limit
		}
	}
}

func (r *reader) readCgroupValue(path string, isLimit bool) (uint64, error) {
	buf, err := readFile(path, r.buf)
	if err != nil {
		return 0, err
	}
	var v uint64
	var ok bool
	if isLimit {
		v, ok = parseCgroupLimit(buf, r.cgroup.v2, r.pageSize)
	} else {
		v, ok = parseUint(buf)
	}
	if !ok {
		return 0, fmt.Errorf("invalid number %q in %s", buf, path)
	}
	return v, nil
}
