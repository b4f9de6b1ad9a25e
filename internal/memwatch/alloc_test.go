package memwatch

import (
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSampleAllocs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("reads /proc, which %s lacks", runtime.GOOS)
	}
	w, err := New(Config{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	w.Sample()

	// Each open system call allocates its path's C string; nothing else in
	// a sample should allocate.
	files := 3 // status, fd, meminfo
	if w.reader.cgroupErr == nil {
		files += 1 + len(w.reader.cgroup.limitPaths)
	}
	if allocs := testing.AllocsPerRun(20, func() { w.Sample() }); allocs > float64(files) {
		t.Fatalf("allocs per sample=%v, want <= %d", allocs, files)
	}
}
