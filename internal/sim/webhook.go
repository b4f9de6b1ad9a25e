package sim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"time"

	"github.com/callcat/callcat/internal/retell"
)

// maxRetries is how often a failed webhook is sent again. The provider
// documents "up to 3 times" after a non-2xx response or a timeout.
const maxRetries = 3

// jobKind is a webhook the scheduler decided to send.
type jobKind uint8

const (
	jobCallStarted jobKind = iota
	jobTranscriptUpdated
	jobTranscriptFinal // the transcript_updated sent when the call ends
	jobCallEnded
	jobCallAnalyzed
	jobTransferStarted // an event callcat does not act on (Faults.UnknownEventRatio)
	jobFutureEvent     // an event the provider does not send yet (Faults.UnknownEventRatio)
	jobNone            // no job: what webhookFlags returns when no extra event follows
)

// Names of the events callcat does not act on, sent by Faults.UnknownEventRatio.
const (
	eventTransferStarted = "transfer_started"
	eventFutureEvent     = "future_event"
)

// webhookJob is a queued webhook. Its body is built only when a sender takes
// it, from the call's immutable script, so queued webhooks cost a few bytes.
type webhookJob struct {
	kind  jobKind
	flags uint8   // faults to inject (flagDuplicate, …), decided when queued
	at    float64 // transcript offset of a jobTranscriptUpdated, in seconds since connect
}

// enqueueLocked queues a webhook of c behind its earlier ones, with the
// faults drawn for it. The caller holds s.mu.
func (s *Sim) enqueueLocked(c *call, job webhookJob) {
	if s.cfg.WebhookURL == "" {
		return
	}
	extra := jobNone
	if s.cfg.Faults.webhookEnabled() {
		job.flags, extra = s.faults.webhookFlags(job)
	}
	if !s.pushLocked(c, job) {
		return
	}
	if extra != jobNone {
		s.pushLocked(c, webhookJob{kind: extra})
	}
	s.makeReadyLocked(c)
}

// pushLocked appends job to c's queue unless MaxQueuedWebhooks is reached.
func (s *Sim) pushLocked(c *call, job webhookJob) bool {
	if s.queuedWebhooks >= s.cfg.MaxQueuedWebhooks {
		s.stats.WebhooksDropped++
		return false
	}
	c.pending = append(c.pending, job)
	s.queuedWebhooks++
	return true
}

// makeReadyLocked puts c in the ready queue if it has a webhook to send now
// and no sender holds it.
func (s *Sim) makeReadyLocked(c *call) {
	if len(c.pending) == 0 || c.queued || c.sending || !c.retryAt.IsZero() {
		return
	}
	if c.pending[0].flags&flagHold != 0 && !s.releaseHeldLocked(c) {
		return
	}
	c.queued = true
	s.ready.push(c)
	select {
	case s.wake <- struct{}{}:
	default:
		// Enough wake-ups are pending: every sender drains the queue before
		// it waits again.
	}
}

// releaseHeldLocked moves a head webhook held for reordering behind the
// call's next webhook. It reports false while the call has no next webhook
// and may still queue one. A held webhook was never attempted, so c.body and
// c.retries belong to no job yet.
func (s *Sim) releaseHeldLocked(c *call) bool {
	c.pending[0].flags &^= flagHold
	if len(c.pending) >= 2 {
		// The job moving to the head is sent now even if it was drawn to
		// be held too: held jobs are never attempted before they move.
		c.pending[0], c.pending[1] = c.pending[1], c.pending[0]
		c.pending[0].flags &^= flagHold
		s.faults.countReordered()
		return true
	}
	if c.phase == phaseDone {
		return true
	}
	c.pending[0].flags |= flagHold
	return false
}

// wakeRetriesLocked makes ready the calls whose retry backoff has passed.
func (s *Sim) wakeRetriesLocked(now time.Time) {
	kept := s.waiting[:0]
	for _, c := range s.waiting {
		if now.Before(c.retryAt) {
			kept = append(kept, c)
			continue
		}
		c.retryAt = time.Time{}
		s.makeReadyLocked(c)
	}
	clear(s.waiting[len(kept):])
	s.waiting = kept
}

// sendLoop delivers webhooks until ctx ends. A sender takes one call at a
// time, so the webhooks of one call go out in order, one at a time.
func (s *Sim) sendLoop(ctx context.Context) {
	for {
		c, job, body, signature := s.takeReady()
		if c == nil {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}

		if body == nil {
			body = s.webhookBody(c, job)
			signedAt := s.now()
			if job.flags&flagLate != 0 {
				signedAt = signedAt.Add(-s.cfg.Faults.LateWebhookAge)
			}
			signature = retell.Sign(body, s.cfg.APIKey, signedAt)
		}
		err := s.post(ctx, body, signature)
		if ctx.Err() != nil {
			s.mu.Lock()
			c.sending = false
			c.body, c.signature = body, signature
			s.mu.Unlock()
			return
		}
		s.settle(c, job, body, signature, err)
	}
}

// takeReady pops the next call with a webhook to send and marks it as held by
// the caller. body is nil when the head job was never attempted.
func (s *Sim) takeReady() (c *call, job webhookJob, body []byte, signature string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.ready.pop()
	if !ok {
		return nil, job, nil, ""
	}
	c.queued = false
	c.sending = true
	return c, c.pending[0], c.body, c.signature
}

// settle records the outcome of one delivery attempt of c's head job.
func (s *Sim) settle(c *call, job webhookJob, body []byte, signature string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.sending = false

	if err != nil && isUnanswered(err) {
		s.stats.WebhooksUnanswered++
	}

	switch {
	case err == nil:
		s.stats.WebhooksSent++
		s.recordDeliveredLocked(body)
		s.popHeadLocked(c)
		if job.flags&flagDuplicate != 0 {
			s.pushFrontLocked(c, webhookJob{kind: job.kind, at: job.at}, body, signature)
		}
	case c.retries < maxRetries:
		// Retries resend the same bytes under the same signature header, so
		// the signature timestamp is the first attempt's. The provider does
		// not document whether it signs retries again. With the default
		// backoff and timeout, the last retry starts within about a minute of
		// the first attempt, inside the receiver's 5-minute window, unless
		// many calls wait for a sender.
		c.retries++
		c.body, c.signature = body, signature
		c.retryAt = s.now().Add(s.backoff(c.retries))
		s.waiting = append(s.waiting, c)
		s.stats.WebhooksRetried++
		s.log.Debug("webhook failed, will retry", "call_id", c.id, "event", job.event(), "attempt", c.retries, "err", err)
	default:
		s.stats.WebhooksFailed++
		s.logGiveUpLocked(c, job, err)
		s.popHeadLocked(c)
	}

	s.makeReadyLocked(c)
	s.maybeFinishLocked(c)
}

func (s *Sim) popHeadLocked(c *call) {
	clear(c.pending[:1])
	c.pending = c.pending[1:]
	if len(c.pending) == 0 {
		c.pending = nil
	}
	c.retries = 0
	c.body, c.signature = nil, ""
	s.queuedWebhooks--
}

// pushFrontLocked queues job, already built as body and signature, as the
// next webhook of c: a duplicate of the delivery that just succeeded.
func (s *Sim) pushFrontLocked(c *call, job webhookJob, body []byte, signature string) {
	c.pending = append(c.pending, webhookJob{})
	copy(c.pending[1:], c.pending)
	c.pending[0] = job
	c.body, c.signature = body, signature
	s.queuedWebhooks++
}

// isUnanswered reports whether a failed attempt reached the receiver but got
// no response, as opposed to a refused connection or an error status.
func isUnanswered(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return false
	}
	var rejected *rejectedError
	return !errors.As(err, &rejected)
}

// rejectedError is a webhook response outside 2xx.
type rejectedError struct{ status string }

func (e *rejectedError) Error() string { return "webhook receiver responded " + e.status }

// backoff returns the wait before retry number n (from 1): RetryBackoff,
// doubled for each further retry.
func (s *Sim) backoff(n int) time.Duration {
	return s.cfg.RetryBackoff * time.Duration(math.Pow(2, float64(n-1)))
}

// logGiveUpLocked logs a webhook given up, at most once per 10 seconds at
// warn level with the number given up since the last warning.
func (s *Sim) logGiveUpLocked(c *call, job webhookJob, err error) {
	s.giveUpsSinceLog++
	now := s.now()
	if now.Sub(s.lastGiveUpLog) < 10*time.Second {
		s.log.Debug("webhook given up", "call_id", c.id, "event", job.event(), "err", err)
		return
	}
	s.log.Warn("webhook given up after retries", "call_id", c.id, "event", job.event(),
		"given_up_since_last_warning", s.giveUpsSinceLog, "err", err)
	s.lastGiveUpLog = now
	s.giveUpsSinceLog = 0
}

// post sends one webhook attempt. Any 2xx response is success, as for the
// provider. The response body is read up to 64 KiB and ignored.
func (s *Sim) post(ctx context.Context, body []byte, signature string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WebhookTimeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(retell.SignatureHeader, signature)

	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &rejectedError{status: resp.Status}
	}
	return nil
}

// webhookBody builds the bytes of a job. It takes the call's state under
// s.mu, then marshals outside it.
func (s *Sim) webhookBody(c *call, job webhookJob) []byte {
	s.mu.Lock()
	st := c.state()
	s.mu.Unlock()

	var v view
	switch job.kind {
	case jobCallStarted:
		v = view{status: statusOngoing, connected: true}
	case jobTranscriptUpdated:
		v = view{status: statusOngoing, connected: true, transcript: true, at: job.at}
	case jobTranscriptFinal:
		// The provider does not document the status of the last
		// transcript_updated. The simulator sends the terminal status and the
		// end fields of call_ended, without the post-call data.
		v = view{status: st.status, connected: true, transcript: true, at: st.endAt - c.sc.ring, ended: true}
	case jobCallEnded, jobCallAnalyzed:
		v = view{status: st.status, connected: st.connected, ended: true, analysis: job.kind == jobCallAnalyzed}
		if st.connected {
			v.transcript = true
			v.at = st.endAt - c.sc.ring
			v.postCall = true
		}
	case jobTransferStarted, jobFutureEvent:
		v = view{status: statusOngoing, connected: true}
	}
	v.rewrite = job.flags&flagRewrite != 0 && job.kind == jobTranscriptUpdated

	body, err := encodeJSON(webhookJSON{Event: job.event(), Call: s.callObject(c, st, v)})
	if err != nil {
		// The payload types hold only strings, numbers and valid JSON.
		panic(errors.Join(errors.New("sim: marshal webhook"), err))
	}
	if job.flags&flagUnknownFields != 0 {
		body = addUnknownFields(body)
	}
	return body
}

func (j webhookJob) event() string {
	switch j.kind {
	case jobCallStarted:
		return eventCallStarted
	case jobTranscriptUpdated, jobTranscriptFinal:
		return eventTranscriptUpdated
	case jobCallEnded:
		return eventCallEnded
	case jobTransferStarted:
		return eventTransferStarted
	case jobFutureEvent:
		return eventFutureEvent
	default:
		return eventCallAnalyzed
	}
}
