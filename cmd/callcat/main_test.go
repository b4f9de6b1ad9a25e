package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseFlagsFromEnvironment(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "")
	interval := fs.Duration("poll-interval", 3*time.Second, "")
	env := map[string]string{"CALLCAT_ADDR": "127.0.0.1:9999", "CALLCAT_POLL_INTERVAL": "5s"}

	if err := parseFlags(fs, []string{"--addr", "127.0.0.1:7777"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *addr != "127.0.0.1:7777" {
		t.Fatalf("addr=%q, want the command line to win over CALLCAT_ADDR", *addr)
	}
	if *interval != 5*time.Second {
		t.Fatalf("poll-interval=%v, want 5s from CALLCAT_POLL_INTERVAL", *interval)
	}
}

func TestParseFlagsBadEnvironment(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Duration("poll-interval", 3*time.Second, "")
	err := parseFlags(fs, nil, func(k string) string {
		if k == "CALLCAT_POLL_INTERVAL" {
			return "soon"
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "CALLCAT_POLL_INTERVAL") {
		t.Fatalf("err=%v, want an error naming CALLCAT_POLL_INTERVAL", err)
	}
}

func TestRunUnknownCommand(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"fly"}, os.Getenv, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), `unknown command "fly"`) {
		t.Fatalf("err=%v, want unknown command", err)
	}
	if !strings.Contains(stderr.String(), "callcat serve") {
		t.Fatalf("usage not printed: %q", stderr.String())
	}
}

func TestServeWithoutKey(t *testing.T) {
	err := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir()},
		func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "RETELL_API_KEY") {
		t.Fatalf("err=%v, want an error naming RETELL_API_KEY", err)
	}
}

func TestServePublicAddressRefused(t *testing.T) {
	env := map[string]string{"RETELL_API_KEY": "key_x"}
	err := run(context.Background(), []string{"serve", "--addr", ":8080", "--data-dir", t.TempDir()},
		func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err=%v, want a refusal naming loopback", err)
	}
}

// TestDemoAsNewUser builds the binary and runs `callcat demo` as the README
// shows, then checks that within 10 seconds the API lists live calls
// and a stream shows utterances arriving.
func TestDemoAsNewUser(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "callcat")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "demo", "--addr", "127.0.0.1:0")
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo exit after interrupt: %v\nstderr:\n%s", err, stderr.String())
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("demo did not stop within 15s of an interrupt")
		}
		if t.Failed() {
			t.Logf("demo stderr:\n%s", stderr.String())
		}
	})

	// The first lines printed name the API.
	urlPattern := regexp.MustCompile(`http://127\.0\.0\.1:\d+`)
	sc := bufio.NewScanner(stdout)
	var base string
	for base == "" && sc.Scan() {
		base = urlPattern.FindString(sc.Text())
	}
	if base == "" {
		t.Fatalf("demo printed no URL")
	}
	go io.Copy(io.Discard, stdout)

	deadline := start.Add(10 * time.Second)
	var callID string
	for callID == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no live call listed within 10s")
		}
		var list struct {
			Calls []struct {
				CallID string `json:"call_id"`
				Status string `json:"status"`
			} `json:"calls"`
		}
		resp, err := http.Get(base + "/v1/calls?status=live")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
		}
		for _, c := range list.Calls {
			if c.Status == "ongoing" {
				callID = c.CallID
				break
			}
		}
		if callID == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}

	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(time.Second))
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/calls/"+callID+"/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	defer resp.Body.Close()

	utterances := 0
	lines := bufio.NewScanner(resp.Body)
	for utterances < 2 && lines.Scan() {
		if lines.Text() == "event: utterance" {
			utterances++
		}
	}
	if utterances < 2 {
		t.Fatalf("stream showed %d utterances within 10s, want at least 2", utterances)
	}
	t.Logf("two utterances streamed %v after the demo started", time.Since(start).Round(time.Millisecond))
}
