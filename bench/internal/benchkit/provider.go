package benchkit

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/callcat/callcat/internal/retell"
)

// ProviderStub responds to get-call with a minimal ongoing call without a
// transcript, the provider's documented shape for a live call. The tracker's
// backstop polls of webhook-fed calls then cost little and change nothing.
// Other routes respond 404.
func ProviderStub() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/get-call/{call_id}", func(w http.ResponseWriter, r *http.Request) {
		b := []byte(`{"call_id":`)
		b = strconv.AppendQuote(b, r.PathValue("call_id"))
		b = append(b, `,"call_type":"phone_call","call_status":"ongoing","start_timestamp":1781000011483}`...)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	return mux
}

// ServeStub serves ProviderStub on a free loopback port and returns its URL
// and a function that stops it.
func ServeStub() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: ProviderStub(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	return "http://" + ln.Addr().String(), func() {
		srv.Close()
		<-done
	}, nil
}

// PostWebhook signs body with apiKey at the current time and posts it to
// url, a callcat's /webhooks/retell. Any status but 204 is an error.
func PostWebhook(client *http.Client, url, apiKey string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(retell.SignatureHeader, retell.Sign(body, apiKey, time.Now()))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}
