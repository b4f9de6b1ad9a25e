package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSoakChartMustBeSVG(t *testing.T) {
	err := run(context.Background(), []string{"soak", "--chart", filepath.Join(t.TempDir(), "soak.png")},
		func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), ".svg") {
		t.Fatalf("err=%v, want an error asking for an .svg file", err)
	}
}

func TestSoakWritesReportAndChart(t *testing.T) {
	dir := t.TempDir()
	reportPath := filepath.Join(dir, "soak.json")
	chartPath := filepath.Join(dir, "soak.svg")
	var stdout bytes.Buffer

	err := run(context.Background(), []string{"soak",
		"--calls", "10", "--total-calls", "30", "--speed", "50", "--call-length", "20s",
		"--subscribers", "2", "--duration", "30s", "--sample-interval", "100ms",
		"--data-dir", filepath.Join(dir, "data"),
		"--report", reportPath, "--chart", chartPath,
	}, func(string) string { return "" }, &stdout, io.Discard)

	// A soak this short may fail the slope rule; either way it reports.
	if err != nil && !strings.Contains(err.Error(), "soak failed") {
		t.Fatalf("soak: %v", err)
	}
	if !strings.Contains(stdout.String(), "callcat soak: ") {
		t.Errorf("stdout lacks the summary:\n%s", stdout.String())
	}

	body, readErr := os.ReadFile(reportPath)
	if readErr != nil {
		t.Fatalf("read report: %v", readErr)
	}
	var report struct {
		Calls struct {
			Started   int64 `json:"started"`
			Completed int64 `json:"completed"`
		} `json:"calls"`
		Pass bool `json:"pass"`
	}
	if err := json.Unmarshal(body, &report); err != nil {
		t.Fatalf("decode report: %v", err)
	}
	if report.Calls.Started < 30 || report.Calls.Completed != report.Calls.Started {
		t.Errorf("calls started=%d completed=%d, want at least 30, all completed", report.Calls.Started, report.Calls.Completed)
	}
	if report.Pass != (err == nil) {
		t.Errorf("report pass=%v but run err=%v", report.Pass, err)
	}

	chart, readErr := os.ReadFile(chartPath)
	if readErr != nil {
		t.Fatalf("read chart: %v", readErr)
	}
	if !bytes.HasPrefix(chart, []byte("<svg ")) {
		t.Errorf("chart starts with %q, want <svg", chart[:min(len(chart), 20)])
	}
}
