// Package ratelog limits repeated log lines: one line per kind per interval,
// carrying how many occurrences the interval held. A loop that fails for every
// call in the same way then writes one line, not one per call.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is the shortest time between two lines of the same kind.
const DefaultInterval = 10 * time.Second

// maxKinds bounds the number of kinds remembered. Kinds are fixed strings in
// the code (never ids), so the bound is only a guard against misuse.
const maxKinds = 256

// Limiter writes at most one log line per kind per Interval.
type Limiter struct {
	logger   *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	kinds map[string]*kindState // guarded by mu
}

type kindState struct {
	last       time.Time
	suppressed int
}

// New returns a Limiter that writes through logger. interval <= 0 uses
// DefaultInterval.
func New(logger *slog.Logger, interval time.Duration) *Limiter {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Limiter{
		logger:   logger,
		interval: interval,
		now:      time.Now,
		kinds:    make(map[string]*kindState),
	}
}

// Log writes msg at level unless a line of the same kind was written less
// than Interval ago; then it only counts the occurrence. The next line written
// for the kind carries the count as "suppressed".
func (l *Limiter) Log(ctx context.Context, level slog.Level, kind, msg string, args ...any) {
	if !l.logger.Enabled(ctx, level) {
		return
	}

	now := l.now()
	l.mu.Lock()
	st, ok := l.kinds[kind]
	if !ok {
		if len(l.kinds) >= maxKinds {
			l.kinds = make(map[string]*kindState)
		}
		st = &kindState{}
		l.kinds[kind] = st
	}
	if ok && now.Sub(st.last) < l.interval {
		st.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.suppressed = 0
	st.last = now
	l.mu.Unlock()

	if suppressed > 0 {
		args = append(args, slog.Int("suppressed", suppressed))
	}
	l.logger.Log(ctx, level, msg, args...)
}
