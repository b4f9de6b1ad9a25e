// Package benchkit holds what the benchmark programs under bench/ share:
// starting callcat as a child process, reading a process's CPU time, memory
// and I/O from /proc, scraping /metrics, building signed webhook bodies and
// reading Server-Sent Events. It is Linux-only, because /proc is.
package benchkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// Process is a child process started by Start.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Log  *os.File // stdout and stderr of the child
	done chan error
}

// Start runs binary with args as a child process whose output goes to
// logPath. env is added to the parent's environment.
func Start(name, binary string, args, env []string, logPath string) (*Process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log of %s: %w", name, err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}

	p := &Process{Name: name, Cmd: cmd, Log: logFile, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// PID returns the child's process id.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Exited returns a channel that receives the child's exit error once.
func (p *Process) Exited() <-chan error { return p.done }

// Stop sends SIGTERM, waits up to grace for the child to exit, then kills
// it. Only this child is signalled, by its pid.
func (p *Process) Stop(grace time.Duration) {
	defer p.Log.Close()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		<-p.done
		return
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WaitHTTP polls url until it responds 200 or timeout passes. It fails
// early when the child p exits.
func WaitHTTP(ctx context.Context, url string, p *Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-p.Exited():
			p.done <- err
			return fmt.Errorf("%s exited before %s answered: %v (see %s)", p.Name, url, err, p.Log.Name())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer 200 at %s within %v (see %s)", p.Name, url, timeout, p.Log.Name())
}

// ProcSample is one reading of a process's counters.
type ProcSample struct {
	At         time.Time
	CPUSeconds float64 // user + system time since the process started
	RSSBytes   int64   // resident set size now
	HWMBytes   int64   // peak resident set size
	ReadBytes  int64   // /proc/<pid>/io rchar: bytes read by read-like syscalls, sockets included
	WriteBytes int64   // /proc/<pid>/io wchar
}

// ReadProc samples /proc/<pid>/stat, status and io.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	dir := filepath.Join("/proc", strconv.Itoa(pid))

	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return s, err
	}
	// The command name in field 2 may contain spaces; fields after its
	// closing parenthesis start at field 3 (state). utime and stime are
	// fields 14 and 15.
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return s, errors.New("malformed " + dir + "/stat")
	}
	fields := strings.Fields(string(stat[end+1:]))
	if len(fields) < 13 {
		return s, errors.New("short " + dir + "/stat")
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	s.CPUSeconds = (utime + stime) / clockTicks

	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return s, err
	}
	s.RSSBytes = statusKB(status, "VmRSS:") << 10
	s.HWMBytes = statusKB(status, "VmHWM:") << 10

	if data, err := os.ReadFile(filepath.Join(dir, "io")); err == nil {
		s.ReadBytes = ioField(data, "rchar:")
		s.WriteBytes = ioField(data, "wchar:")
	}
	return s, nil
}

func statusKB(status []byte, key string) int64 {
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func ioField(data []byte, key string) int64 {
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			return n
		}
	}
	return 0
}

// MachineCPU returns the busy and total jiffies of all CPUs from /proc/stat,
// to tell how much of the machine other processes used during a run.
func MachineCPU() (busy, total float64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, errors.New("malformed /proc/stat")
	}
	for i, f := range fields[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		total += v
		if i != 3 && i != 4 { // idle and iowait
			busy += v
		}
	}
	return busy / clockTicks, total / clockTicks, nil
}

// CommandCPU returns the CPU seconds used by every process whose command
// name (/proc/<pid>/comm) is comm, such as "postgres": user and system time
// of the live processes plus the time of their exited children that they
// waited for (cutime and cstime). A server that forks a process per
// connection, as PostgreSQL does, so keeps the time of connections that
// closed. It also returns how many processes matched. Processes that exit
// between two readings lose the time they had not handed to a parent yet.
func CommandCPU(comm string) (seconds float64, processes int, err error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // the process exited
		}
		name, cpu, ok := parseStatCPU(stat)
		if !ok || name != comm {
			continue
		}
		seconds += cpu
		processes++
	}
	return seconds, processes, nil
}

// parseStatCPU returns the command name and utime + stime + cutime + cstime
// in seconds from the contents of /proc/<pid>/stat.
func parseStatCPU(stat []byte) (comm string, seconds float64, ok bool) {
	open := bytes.IndexByte(stat, '(')
	end := bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	fields := strings.Fields(string(stat[end+1:]))
	if len(fields) < 15 {
		return "", 0, false
	}
	// Fields 14 to 17 of the file: utime, stime, cutime, cstime.
	var ticks float64
	for _, f := range fields[11:15] {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return "", 0, false
		}
		ticks += v
	}
	return string(stat[open+1 : end]), ticks / clockTicks, true
}
