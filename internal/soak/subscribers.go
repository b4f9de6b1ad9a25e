package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// liveListLimit is the number of newest live calls the subscribers pick
// from.
const liveListLimit = 200

// SubscriberStats counts what the SSE subscribers did.
type SubscriberStats struct {
	Max            int   `json:"max"`             // subscribers open at most at once
	StreamsOpened  int64 `json:"streams_opened"`  // streams that got a 200 response
	StreamsEnded   int64 `json:"streams_ended"`   // streams the service closed after the ended event
	StreamsLimited int64 `json:"streams_limited"` // streams rejected with 503 at the service's SSE limit
	StreamErrors   int64 `json:"stream_errors"`   // other failures: status, connection or read errors
	Events         int64 `json:"events"`          // SSE events received, replayed and live
	ListErrors     int64 `json:"list_errors"`     // failed refreshes of the live-call list
}

// subscribers are SSE clients that attach to random live calls and detach
// at random. One goroutine refreshes the list of live calls over the API,
// and each subscriber runs in its own goroutine.
type subscribers struct {
	max     int
	baseURL string
	client  *http.Client
	log     *slog.Logger

	// hold and pause are the longest time a subscriber follows one call and
	// the longest time it waits before the next.
	hold, pause, refresh time.Duration

	mu      sync.Mutex
	liveIDs []string // replaced, never appended to, by the refresher

	wg       sync.WaitGroup
	cancel   context.CancelFunc
	stopOnce sync.Once

	opened, ended, limited, failed, events, listErrors atomic.Int64
}

func newSubscribers(n int, baseURL string, callWall time.Duration, log *slog.Logger) *subscribers {
	return &subscribers{
		max:     n,
		baseURL: baseURL,
		log:     log,
		client: &http.Client{Transport: &http.Transport{
			MaxIdleConns:        n + 1,
			MaxIdleConnsPerHost: n + 1,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		}},
		hold:    max(callWall, 100*time.Millisecond),
		pause:   max(callWall/4, 10*time.Millisecond),
		refresh: min(max(callWall/4, 50*time.Millisecond), time.Second),
	}
}

// start launches the refresher and the subscribers, which run until stop.
func (s *subscribers) start() {
	if s.max == 0 {
		return
	}
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Go(func() { s.refreshLoop(ctx) })
	for range s.max {
		s.wg.Go(func() { s.subscribeLoop(ctx) })
	}
}

// stop ends every subscriber, waits for them and closes the idle
// connections of their client. It is idempotent.
func (s *subscribers) stop() {
	s.stopOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		s.client.CloseIdleConnections()
	})
}

func (s *subscribers) stats() SubscriberStats {
	return SubscriberStats{
		Max:            s.max,
		StreamsOpened:  s.opened.Load(),
		StreamsEnded:   s.ended.Load(),
		StreamsLimited: s.limited.Load(),
		StreamErrors:   s.failed.Load(),
		Events:         s.events.Load(),
		ListErrors:     s.listErrors.Load(),
	}
}

// refreshLoop reads the newest live calls from the API every refresh
// interval.
func (s *subscribers) refreshLoop(ctx context.Context) {
	tick := time.NewTicker(s.refresh)
	defer tick.Stop()
	for {
		ids, err := s.listLive(ctx)
		if err != nil && ctx.Err() == nil {
			s.listErrors.Add(1)
			s.log.Debug("soak live-call list failed", "err", err)
		}
		if err == nil {
			s.mu.Lock()
			s.liveIDs = ids
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *subscribers) listLive(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.baseURL+"/v1/calls?status=live&limit="+strconv.Itoa(liveListLimit), nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, errors.New("list live calls: status " + resp.Status)
	}

	var page struct {
		Calls []struct {
			CallID string `json:"call_id"`
		} `json:"calls"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&page); err != nil {
		return nil, err
	}
	ids := make([]string, len(page.Calls))
	for i, c := range page.Calls {
		ids[i] = c.CallID
	}
	return ids, nil
}

func (s *subscribers) pick() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.liveIDs) == 0 {
		return ""
	}
	return s.liveIDs[rand.N(len(s.liveIDs))]
}

// subscribeLoop alternates between a random pause and following a random
// live call for a random time, until ctx ends.
func (s *subscribers) subscribeLoop(ctx context.Context) {
	for {
		if !sleep(ctx, rand.N(s.pause)+1) {
			return
		}
		id := s.pick()
		if id == "" {
			continue
		}
		s.follow(ctx, id, rand.N(s.hold)+1)
	}
}

// follow reads the stream of callID for at most hold, counting events.
func (s *subscribers) follow(ctx context.Context, callID string, hold time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.baseURL+"/v1/calls/"+callID+"/stream", nil)
	if err != nil {
		s.failed.Add(1)
		return
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			s.failed.Add(1)
			s.log.Debug("soak stream request failed", "call_id", callID, "err", err)
		}
		return
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusOK:
		s.opened.Add(1)
	case http.StatusServiceUnavailable:
		s.limited.Add(1)
		return
	default:
		s.failed.Add(1)
		s.log.Debug("soak stream refused", "call_id", callID, "status", resp.StatusCode)
		return
	}

	ended, err := countEvents(resp.Body, &s.events)
	switch {
	case ended:
		s.ended.Add(1)
	case err != nil && ctx.Err() == nil:
		s.failed.Add(1)
		s.log.Debug("soak stream read failed", "call_id", callID, "err", err)
	}
}

var (
	eventField = []byte("event: ")
	endedLine  = []byte("event: ended\n")
)

// countEvents reads SSE messages from body until it ends, adding one to
// events per event field. It reports whether an ended event arrived and
// returns the read error, nil at a clean end of the stream.
func countEvents(body io.Reader, events *atomic.Int64) (ended bool, err error) {
	br := bufio.NewReaderSize(body, 16<<10)
	atLineStart := true
	for {
		line, err := br.ReadSlice('\n')
		if atLineStart && bytes.HasPrefix(line, eventField) {
			events.Add(1)
			if bytes.Equal(line, endedLine) {
				ended = true
			}
		}
		// A line longer than the buffer arrives in pieces; only the first
		// piece starts a line.
		atLineStart = err != bufio.ErrBufferFull
		switch {
		case err == nil, err == bufio.ErrBufferFull:
		case errors.Is(err, io.EOF):
			return ended, nil
		default:
			return ended, err
		}
	}
}

// sleep waits for d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
