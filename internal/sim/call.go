package sim

import (
	"math"
	"time"
)

// phase is a stage of a call's life. Each phase ends at call.nextAt.
type phase uint8

const (
	phaseRinging   phase = iota // registered, until it connects or gives up at script.ring
	phaseTalking                // ongoing: speaker changes, then the end
	phaseAnalyzing              // terminal, until call_analyzed after Config.AnalysisDelay
	phaseDone                   // analyzed, and kept until its webhooks are out
)

// call is one simulated call. Fields after sc are guarded by Sim.mu.
type call struct {
	id        string
	seq       int64     // start order, from 1
	sc        *script   // immutable
	created   time.Time // Config.Now at creation: the call's simulated clock starts here
	createdMS int64

	phase     phase
	status    string
	nextAt    float64  // simulated seconds since created of the next change
	nextTurn  int      // index into sc.turnChanges of the next transcript_updated
	endAt     float64  // simulated seconds since created at which the call ends
	reason    string   // disconnection_reason, once known
	end       *endInfo // set when the call becomes terminal
	connected bool     // the call was answered
	stopped   bool     // stop-call was accepted
	analyzed  bool
	finished  bool // analyzed, webhooks out; only eviction follows

	// Webhook delivery, described in webhook.go.
	pending   []webhookJob
	queued    bool      // in Sim.ready
	sending   bool      // a sender holds the head job
	retryAt   time.Time // non-zero while the head job waits for a retry
	retries   int       // failed attempts of the head job
	body      []byte    // the head job's bytes once built, resent unchanged on retry
	signature string

	log *callLog // requests about the call, for Requests and RateLimited; nil until one is logged
}

// callState is a copy of a call's mutable fields, for building payloads
// outside Sim.mu.
type callState struct {
	status    string
	connected bool
	endAt     float64
	reason    string
	end       *endInfo
	analyzed  bool
}

func (c *call) state() callState {
	return callState{
		status:    c.status,
		connected: c.connected,
		endAt:     c.endAt,
		reason:    c.reason,
		end:       c.end,
		analyzed:  c.analyzed,
	}
}

func (c *call) startMS() int64 {
	return c.createdMS + int64(math.Round(c.sc.ring*1000))
}

// simTime returns the simulated seconds since c was created, at wall time now.
func (c *call) simTime(now time.Time, speed float64) float64 {
	return now.Sub(c.created).Seconds() * speed
}

// advanceLocked moves c through every change due by wall time now and queues
// the webhooks they cause. The caller holds s.mu.
func (s *Sim) advanceLocked(c *call, now time.Time) {
	simT := c.simTime(now, s.cfg.Speed)
	for !c.finished && c.phase != phaseDone && simT >= c.nextAt {
		switch c.phase {
		case phaseRinging:
			s.resolveRingLocked(c)
		case phaseTalking:
			s.talkLocked(c, simT)
		case phaseAnalyzing:
			c.analyzed = true
			c.phase = phaseDone
			c.nextAt = math.Inf(1)
			s.stats.CallsAnalyzed++
			s.enqueueLocked(c, webhookJob{kind: jobCallAnalyzed})
			s.makeReadyLocked(c) // releases a webhook held for reordering if call_analyzed was dropped
			s.maybeFinishLocked(c)
		}
	}
}

// resolveRingLocked connects c at the end of its ring, or ends it unconnected.
func (s *Sim) resolveRingLocked(c *call) {
	sc := c.sc
	if sc.notConnected || c.stopped {
		c.status = statusNotConnected
		c.reason = sc.notConnectedReason
		if c.stopped {
			// NOTE: the provider does not document the status of a call
			// stopped while ringing. The simulator reports ended, manual_stopped.
			c.status = statusEnded
			c.reason = reasonManualStopped
		}
		c.endAt = c.nextAt
		c.end = &endInfo{endMS: c.createdMS + int64(math.Round(c.endAt*1000))}
		s.live--
		s.stats.CallsNotConnected++
		s.enqueueLocked(c, webhookJob{kind: jobCallEnded})
		c.phase = phaseAnalyzing
		c.nextAt = c.endAt + s.cfg.AnalysisDelay.Seconds()
		return
	}

	c.status = statusOngoing
	c.phase = phaseTalking
	c.connected = true
	c.endAt = sc.ring + sc.naturalEnd
	c.reason = sc.naturalReason
	s.enqueueLocked(c, webhookJob{kind: jobCallStarted})
	c.nextAt = s.nextTalkEvent(c)
}

// talkLocked queues the transcript updates due by simT and ends the call when
// its end has come.
func (s *Sim) talkLocked(c *call, simT float64) {
	sc := c.sc
	for c.nextTurn < len(sc.turnChanges) {
		at := sc.ring + sc.turnChanges[c.nextTurn]
		if at > simT || at >= c.endAt {
			break
		}
		if s.cfg.PushTranscripts {
			s.enqueueLocked(c, webhookJob{kind: jobTranscriptUpdated, at: sc.turnChanges[c.nextTurn]})
		}
		c.nextTurn++
	}

	if simT < c.endAt {
		c.nextAt = s.nextTalkEvent(c)
		return
	}

	c.status = statusEnded
	c.end = sc.connectedEnd(c.startMS(), c.endAt-sc.ring)
	s.live--
	s.stats.CallsEnded++
	if s.cfg.PushTranscripts {
		s.enqueueLocked(c, webhookJob{kind: jobTranscriptFinal})
	}
	s.enqueueLocked(c, webhookJob{kind: jobCallEnded})
	c.phase = phaseAnalyzing
	c.nextAt = c.endAt + s.cfg.AnalysisDelay.Seconds()
}

func (s *Sim) nextTalkEvent(c *call) float64 {
	next := c.endAt
	if c.nextTurn < len(c.sc.turnChanges) {
		next = min(next, c.sc.ring+c.sc.turnChanges[c.nextTurn])
	}
	return next
}

// stopLocked schedules the end of c shortly after now, as stop-call does. It returns false when c
// is already terminal.
func (s *Sim) stopLocked(c *call, now time.Time) bool {
	if c.phase >= phaseAnalyzing {
		return false
	}
	if c.stopped {
		return true
	}
	c.stopped = true
	end := c.simTime(now, s.cfg.Speed) + stopDelay

	switch c.phase {
	case phaseRinging:
		c.nextAt = min(c.nextAt, end)
	case phaseTalking:
		if end < c.endAt {
			c.endAt = end
			c.reason = reasonManualStopped
			c.nextAt = min(c.nextAt, end)
		}
	}
	return true
}

// maybeFinishLocked marks c finished once it is analyzed and every webhook of
// it was delivered or given up, then evicts the oldest finished calls beyond
// Config.MaxRetainedCalls.
func (s *Sim) maybeFinishLocked(c *call) {
	if c.finished || c.phase != phaseDone || len(c.pending) > 0 || c.sending {
		return
	}
	c.finished = true
	s.unfinished--
	s.finishedCalls.push(c)
	for s.finishedCalls.len() > s.cfg.MaxRetainedCalls {
		old, _ := s.finishedCalls.pop()
		delete(s.calls, old.id)
	}
}

// fifo is a first-in first-out queue on a slice that reuses its space.
type fifo[T any] struct {
	items []T
	head  int
}

func (q *fifo[T]) len() int { return len(q.items) - q.head }

func (q *fifo[T]) push(v T) { q.items = append(q.items, v) }

func (q *fifo[T]) pop() (T, bool) {
	var zero T
	if q.head == len(q.items) {
		return zero, false
	}
	v := q.items[q.head]
	q.items[q.head] = zero
	q.head++

	switch {
	case q.head == len(q.items):
		q.items, q.head = q.items[:0], 0
	case q.head >= 64 && 2*q.head >= len(q.items):
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return v, true
}
