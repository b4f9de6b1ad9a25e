package memwatch

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Files read on every sample. Their contents are parsed in place in one
// reused buffer, so a sample allocates only the path of each file it opens.
const (
	procStatusPath  = "/proc/self/status"
	procMeminfoPath = "/proc/meminfo"
	procFDPath      = "/proc/self/fd"
	procCgroupPath  = "/proc/self/cgroup"
	procMountsPath  = "/proc/self/mountinfo"
)

// readBufferSize bounds every file read. /proc/self/status and /proc/meminfo
// are about 1.5 KiB on Linux 6.x. A longer status file still parses, because
// the fields read here come before the CPU and NUMA masks that grow with the
// machine.
const readBufferSize = 8 << 10

var (
	errNoVmRSS        = errors.New("no VmRSS line in " + procStatusPath)
	errNoThreads      = errors.New("no Threads line in " + procStatusPath)
	errNoMemTotal     = errors.New("no MemTotal line in " + procMeminfoPath)
	errNoMemAvailable = errors.New("no MemAvailable line in " + procMeminfoPath)
)

// lineValue returns the rest of the first line of buf that starts with key.
func lineValue(buf []byte, key string) ([]byte, bool) {
	for len(buf) > 0 {
		line := buf
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			line, buf = buf[:i], buf[i+1:]
		} else {
			buf = nil
		}
		if len(line) >= len(key) && string(line[:len(key)]) == key {
			return line[len(key):], true
		}
	}
	return nil, false
}

// parseUint parses the decimal number at the start of b after leading spaces
// and tabs. It ignores what follows the digits, such as a " kB" unit.
func parseUint(b []byte) (uint64, bool) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	start := i
	var n uint64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, i > start
}

// kibField returns the value of a "Key:   123 kB" line in bytes.
func kibField(buf []byte, key string) (uint64, bool) {
	v, ok := lineValue(buf, key)
	if !ok {
		return 0, false
	}
	n, ok := parseUint(v)
	if !ok || n > math.MaxUint64/1024 {
		return 0, false
	}
	return n * 1024, true
}

// parseStatus reads VmRSS (bytes) and Threads from /proc/self/status.
func parseStatus(buf []byte) (rss uint64, rssErr error, threads int, threadsErr error) {
	rss, ok := kibField(buf, "VmRSS:")
	if !ok {
		rssErr = errNoVmRSS
	}
	v, ok := lineValue(buf, "Threads:")
	n, parsed := parseUint(v)
	if !ok || !parsed || n > math.MaxInt32 {
		threadsErr = errNoThreads
	}
	return rss, rssErr, int(n), threadsErr
}

// parseMeminfo reads MemTotal and MemAvailable (bytes) from /proc/meminfo.
// MemAvailable exists since Linux 3.14.
func parseMeminfo(buf []byte) (total uint64, totalErr error, available uint64, availableErr error) {
	total, ok := kibField(buf, "MemTotal:")
	if !ok {
		totalErr = errNoMemTotal
	}
	available, ok = kibField(buf, "MemAvailable:")
	if !ok {
		availableErr = errNoMemAvailable
	}
	return total, totalErr, available, availableErr
}

// cgroupFiles names the files that contain the memory usage and limits of the
// process's cgroup. Both cgroup versions count descendants against an
// ancestor's limit, so limitPaths lists the limit file of the process's cgroup
// and of each ancestor up to the mount point. The lowest limit applies.
type cgroupFiles struct {
	v2         bool
	usagePath  string   // memory.current (v2) or memory.usage_in_bytes (v1)
	limitPaths []string // memory.max (v2) or memory.limit_in_bytes (v1), innermost first
}

// findCgroup locates the memory controller of the process from
// /proc/self/cgroup and /proc/self/mountinfo and checks that its files exist.
// The v1 memory controller wins when both versions are mounted, because on
// such hybrid hosts v2 usually runs without the memory controller.
func findCgroup() (cgroupFiles, error) {
	cgroups, err := os.ReadFile(procCgroupPath)
	if err != nil {
		return cgroupFiles{}, err
	}
	mounts, err := os.ReadFile(procMountsPath)
	if err != nil {
		return cgroupFiles{}, err
	}
	mountPoint, dir, v2, err := cgroupMemoryDir(string(cgroups), string(mounts))
	if err != nil {
		return cgroupFiles{}, err
	}
	return cgroupFilesIn(mountPoint, dir, v2)
}

// cgroupMemoryDir returns the mount point of the memory controller's
// hierarchy and the directory of the process's cgroup in it.
func cgroupMemoryDir(cgroups, mountinfo string) (mountPoint, dir string, v2 bool, err error) {
	var v1Path, v2Path string
	var hasV1, hasV2 bool
	for line := range strings.Lines(cgroups) {
		// hierarchy-ID:controller-list:cgroup-path
		id, rest, ok1 := strings.Cut(strings.TrimSuffix(line, "\n"), ":")
		controllers, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			continue
		}
		switch {
		case id == "0" && controllers == "":
			v2Path, hasV2 = path, true
		case hasElement(controllers, "memory"):
			v1Path, hasV1 = path, true
		}
	}

	for line := range strings.Lines(mountinfo) {
		// id parent major:minor root mount-point options [optional...] - fstype source super-options
		pre, post, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " - ")
		if !ok {
			continue
		}
		pf := strings.Fields(pre)
		sf := strings.Fields(post)
		if len(pf) < 5 || len(sf) < 3 {
			continue
		}
		root, point, fstype, superOptions := pf[3], pf[4], sf[0], sf[2]
		switch {
		case hasV1 && fstype == "cgroup" && hasElement(superOptions, "memory"):
			return point, joinCgroupPath(point, root, v1Path), false, nil
		case !hasV1 && hasV2 && fstype == "cgroup2":
			return point, joinCgroupPath(point, root, v2Path), true, nil
		}
	}
	return "", "", false, errors.New("no cgroup memory controller mounted for this process")
}

// joinCgroupPath maps a path from /proc/self/cgroup to a directory under the
// mount point. A mount of a sub-tree (root other than "/") contains only the
// part of the path below root. In a cgroup namespace, /proc/self/cgroup
// reads "/" and the process's own cgroup is at the mount point.
func joinCgroupPath(mountPoint, root, path string) string {
	if root == "/" {
		return filepath.Join(mountPoint, path)
	}
	if rel, ok := strings.CutPrefix(path, root); ok && (rel == "" || rel[0] == '/') {
		return filepath.Join(mountPoint, rel)
	}
	return mountPoint
}

// cgroupFilesIn lists the usage file of dir and the limit files of dir and
// its ancestors up to mountPoint, keeping only files that exist.
func cgroupFilesIn(mountPoint, dir string, v2 bool) (cgroupFiles, error) {
	usage, limit := "memory.usage_in_bytes", "memory.limit_in_bytes"
	if v2 {
		usage, limit = "memory.current", "memory.max"
	}

	// A cgroup path that does not exist under the mount point (a namespace
	// seen from outside) falls back to the mount point itself.
	if _, err := os.Stat(filepath.Join(dir, usage)); err != nil {
		dir = mountPoint
	}
	files := cgroupFiles{v2: v2, usagePath: filepath.Join(dir, usage)}
	if _, err := os.Stat(files.usagePath); err != nil {
		return cgroupFiles{}, fmt.Errorf("cgroup memory usage: %w", err)
	}

	for d := dir; ; d = filepath.Dir(d) {
		p := filepath.Join(d, limit)
		if _, err := os.Stat(p); err == nil {
			files.limitPaths = append(files.limitPaths, p)
		}
		if d == mountPoint || len(d) <= len(mountPoint) {
			break
		}
	}
	return files, nil
}

// parseCgroupLimit parses a memory limit file. It returns 0 for no limit:
// "max" in v2, and in v1 the page-aligned maximum the kernel reports when no
// limit is set.
func parseCgroupLimit(b []byte, v2 bool, pageSize uint64) (uint64, bool) {
	if v2 && len(b) >= 3 && string(b[:3]) == "max" {
		return 0, true
	}
	n, ok := parseUint(b)
	if !ok {
		return 0, false
	}
	if !v2 && n >= math.MaxInt64/pageSize*pageSize {
		return 0, true
	}
	return n, true
}

func hasElement(list, name string) bool {
	for e := range strings.SplitSeq(list, ",") {
		if e == name {
			return true
		}
	}
	return false
}
