package benchkit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Event is one Server-Sent Events message.
type Event struct {
	ID, Type string
	Data     []byte
	At       time.Time // when the blank line ending the message was read
}

// Subscribe opens an SSE stream at url and calls onEvent for every message
// until ctx ends or the server closes the stream. It returns once the
// response header arrived; reading goes on in a goroutine that calls done
// with the reason the stream ended.
func Subscribe(ctx context.Context, client *http.Client, url string, onEvent func(Event), done func(error)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return fmt.Errorf("stream %s: status %d: %s", url, resp.StatusCode, bytes.TrimSpace(body))
	}
	go func() {
		defer resp.Body.Close()
		done(readEvents(resp.Body, onEvent))
	}()
	return nil
}

func readEvents(r io.Reader, onEvent func(Event)) error {
	br := bufio.NewReaderSize(r, 4096)
	var ev Event
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if ev.Type != "" || ev.Data != nil {
				ev.At = time.Now()
				onEvent(ev)
			}
			ev = Event{}
		case line[0] == ':':
		case bytes.HasPrefix(line, []byte("id: ")):
			ev.ID = string(line[4:])
		case bytes.HasPrefix(line, []byte("event: ")):
			ev.Type = string(line[7:])
		case bytes.HasPrefix(line, []byte("data: ")):
			ev.Data = append(ev.Data[:0:0], line[6:]...)
		}
	}
}
