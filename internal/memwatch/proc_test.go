package memwatch

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const statusText = `Name:	callcat
Umask:	0022
State:	S (sleeping)
VmPeak:	 1255436 kB
VmSize:	 1255436 kB
VmHWM:	   14592 kB
VmRSS:	   14336 kB
RssAnon:	    6144 kB
Threads:	7
SigQ:	0/95932
Cpus_allowed:	3
`

const meminfoText = `MemTotal:       24683784 kB
MemFree:        24034884 kB
MemAvailable:   24071484 kB
Buffers:           10368 kB
`

func TestParseStatus(t *testing.T) {
	rss, rssErr, threads, threadsErr := parseStatus([]byte(statusText))
	if rssErr != nil || threadsErr != nil {
		t.Fatalf("errors=%v, %v, want none", rssErr, threadsErr)
	}
	if rss != 14336*1024 {
		t.Fatalf("rss=%d, want %d", rss, 14336*1024)
	}
	if threads != 7 {
		t.Fatalf("threads=%d, want 7", threads)
	}
}

func TestParseStatusMissing(t *testing.T) {
	_, rssErr, _, threadsErr := parseStatus([]byte("Name:\tcallcat\nVmRSS:\tkB\n"))
	if rssErr != errNoVmRSS {
		t.Fatalf("rss err=%v, want %v", rssErr, errNoVmRSS)
	}
	if threadsErr != errNoThreads {
		t.Fatalf("threads err=%v, want %v", threadsErr, errNoThreads)
	}
}

func TestParseMeminfo(t *testing.T) {
	total, totalErr, available, availableErr := parseMeminfo([]byte(meminfoText))
	if totalErr != nil || availableErr != nil {
		t.Fatalf("errors=%v, %v, want none", totalErr, availableErr)
	}
	if total != 24683784*1024 {
		t.Fatalf("total=%d, want %d", total, 24683784*1024)
	}
	if available != 24071484*1024 {
		t.Fatalf("available=%d, want %d", available, 24071484*1024)
	}
}

func TestParseMeminfoOldKernel(t *testing.T) {
	_, totalErr, _, availableErr := parseMeminfo([]byte("MemTotal: 1024 kB\nMemFree: 512 kB\n"))
	if totalErr != nil {
		t.Fatalf("total err=%v, want nil", totalErr)
	}
	if availableErr != errNoMemAvailable {
		t.Fatalf("available err=%v, want %v", availableErr, errNoMemAvailable)
	}
}

func TestParseUint(t *testing.T) {
	tests := []struct {
		in     string
		want   uint64
		wantOK bool
	}{
		{"42", 42, true},
		{" \t42 kB", 42, true},
		{"18446744073709551615\n", 18446744073709551615, true},
		{"18446744073709551616", 0, false},
		{"", 0, false},
		{" kB", 0, false},
		{"-1", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseUint([]byte(tt.in))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseUint(%q)=%d, %v, want %d, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestParseCgroupLimit(t *testing.T) {
	tests := []struct {
		in     string
		v2     bool
		want   uint64
		wantOK bool
	}{
		{"max\n", true, 0, true},
		{"536870912\n", true, 536870912, true},
		{"9223372036854771712\n", false, 0, true}, // v1 with no limit, 4 KiB pages
		{"536870912\n", false, 536870912, true},
		{"\n", true, 0, false},
	}
	for _, tt := range tests {
		got, ok := parseCgroupLimit([]byte(tt.in), tt.v2, 4096)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseCgroupLimit(%q, v2=%v)=%d, %v, want %d, %v", tt.in, tt.v2, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestCgroupMemoryDir(t *testing.T) {
	const hybridMounts = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	const v2Mounts = `24 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
28 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
`
	tests := []struct {
		name      string
		cgroups   string
		mounts    string
		wantMount string
		wantDir   string
		wantV2    bool
	}{
		{
			name:      "HybridPicksV1",
			cgroups:   "4:memory:/process_api/32bade\n1:cpu:/\n0::/\n",
			mounts:    hybridMounts,
			wantMount: "/sys/fs/cgroup/memory",
			wantDir:   "/sys/fs/cgroup/memory/process_api/32bade",
		},
		{
			name:      "V2Namespaced",
			cgroups:   "0::/\n",
			mounts:    v2Mounts,
			wantMount: "/sys/fs/cgroup",
			wantDir:   "/sys/fs/cgroup",
			wantV2:    true,
		},
		{
			name:      "V2SystemdUnit",
			cgroups:   "0::/system.slice/callcat.service\n",
			mounts:    v2Mounts,
			wantMount: "/sys/fs/cgroup",
			wantDir:   "/sys/fs/cgroup/system.slice/callcat.service",
			wantV2:    true,
		},
		{
			name:      "V1SubtreeMount",
			cgroups:   "9:cpuset:/docker/abc\n4:memory:/docker/abc\n",
			mounts:    "40 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n",
			wantMount: "/sys/fs/cgroup/memory",
			wantDir:   "/sys/fs/cgroup/memory",
		},
		{
			name:      "V1CombinedControllers",
			cgroups:   "4:cpu,memory:/a\n",
			mounts:    "40 31 0:32 / /cg/cpu,memory rw - cgroup cgroup rw,cpu,memory\n",
			wantMount: "/cg/cpu,memory",
			wantDir:   "/cg/cpu,memory/a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mount, dir, v2, err := cgroupMemoryDir(tt.cgroups, tt.mounts)
			if err != nil {
				t.Fatalf("err=%v, want nil", err)
			}
			if mount != tt.wantMount {
				t.Errorf("mount=%q, want %q", mount, tt.wantMount)
			}
			if dir != tt.wantDir {
				t.Errorf("dir=%q, want %q", dir, tt.wantDir)
			}
			if v2 != tt.wantV2 {
				t.Errorf("v2=%v, want %v", v2, tt.wantV2)
			}
		})
	}
}

func TestCgroupMemoryDirNone(t *testing.T) {
	// A v1 memory line without a v1 memory mount, as in a container that
	// mounts only the unified hierarchy.
	_, _, _, err := cgroupMemoryDir("4:memory:/a\n", "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
	if err == nil {
		t.Fatalf("err=nil, want an error")
	}
}

// writeFile creates path with its parent directories.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadCgroupV2Hierarchy(t *testing.T) {
	// The parent limits the service to 1 GiB; the service's own cgroup
	// sets none, and its sibling's limit does not apply.
	mount := t.TempDir()
	service := filepath.Join(mount, "system.slice", "callcat.service")
	writeFile(t, filepath.Join(mount, "system.slice", "memory.max"), "1073741824\n")
	writeFile(t, filepath.Join(mount, "system.slice", "other.service", "memory.max"), "1024\n")
	writeFile(t, filepath.Join(service, "memory.max"), "max\n")
	writeFile(t, filepath.Join(service, "memory.current"), "52428800\n")

	files, err := cgroupFilesIn(mount, service, true)
	if err != nil {
		t.Fatalf("cgroupFilesIn: %v", err)
	}
	wantLimits := []string{filepath.Join(service, "memory.max"), filepath.Join(mount, "system.slice", "memory.max")}
	if diff := cmp.Diff(wantLimits, files.limitPaths); diff != "" {
		t.Fatalf("limit paths (-want +got):\n%s", diff)
	}

	r := newReader(time.Now)
	r.cgroup, r.cgroupErr = files, nil
	var s Sample
	var iss issues
	r.readCgroup(&s, &iss)
	if iss[fieldCgroupLimit] != nil || iss[fieldCgroupUsage] != nil {
		t.Fatalf("issues=%v, %v, want none", iss[fieldCgroupLimit], iss[fieldCgroupUsage])
	}
	if s.CgroupLimitBytes != 1<<30 {
		t.Fatalf("limit=%d, want %d", s.CgroupLimitBytes, 1<<30)
	}
	if s.CgroupUsageBytes != 52428800 {
		t.Fatalf("usage=%d, want 52428800", s.CgroupUsageBytes)
	}
}

func TestReadCgroupMissingDir(t *testing.T) {
	// A path that does not exist under the mount point, such as a host path
	// read from inside a namespace, falls back to the mount point.
	mount := t.TempDir()
	writeFile(t, filepath.Join(mount, "memory.usage_in_bytes"), "4096\n")
	writeFile(t, filepath.Join(mount, "memory.limit_in_bytes"), "9223372036854771712\n")

	files, err := cgroupFilesIn(mount, filepath.Join(mount, "docker", "abc"), false)
	if err != nil {
		t.Fatalf("cgroupFilesIn: %v", err)
	}
	if want := filepath.Join(mount, "memory.usage_in_bytes"); files.usagePath != want {
		t.Fatalf("usage path=%q, want %q", files.usagePath, want)
	}

	r := newReader(time.Now)
	r.cgroup, r.cgroupErr = files, nil
	var s Sample
	var iss issues
	r.readCgroup(&s, &iss)
	if s.CgroupLimitBytes != 0 {
		t.Fatalf("limit=%d, want 0 (no limit)", s.CgroupLimitBytes)
	}
	if s.CgroupUsageBytes != 4096 {
		t.Fatalf("usage=%d, want 4096", s.CgroupUsageBytes)
	}
}

func TestReadCgroupInvalid(t *testing.T) {
	mount := t.TempDir()
	writeFile(t, filepath.Join(mount, "memory.current"), "4096\n")
	writeFile(t, filepath.Join(mount, "memory.max"), "lots\n")
	files, err := cgroupFilesIn(mount, mount, true)
	if err != nil {
		t.Fatalf("cgroupFilesIn: %v", err)
	}

	r := newReader(time.Now)
	r.cgroup, r.cgroupErr = files, nil
	var s Sample
	var iss issues
	r.readCgroup(&s, &iss)
	if iss[fieldCgroupLimit] == nil {
		t.Fatalf("limit issue=nil, want an error")
	}
	if iss[fieldCgroupUsage] != nil {
		t.Fatalf("usage issue=%v, want nil", iss[fieldCgroupUsage])
	}
}

func TestCgroupFilesMissing(t *testing.T) {
	if _, err := cgroupFilesIn(t.TempDir(), "/nonexistent", true); err == nil {
		t.Fatalf("err=nil, want an error for a hierarchy without memory.current")
	}
}
