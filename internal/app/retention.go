package app

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for RetentionConfig.
const (
	DefaultDeliveryRetention    = 7 * 24 * time.Hour
	DefaultIdempotencyRetention = 24 * time.Hour
	DefaultPruneInterval        = time.Hour
	DefaultPruneBatch           = 500
)

// RetentionConfig sets how long stored records are kept.
type RetentionConfig struct {
	// Calls is how long an ended call (with its transcript and events) is
	// kept after its last change. 0 keeps ended calls forever.
	Calls time.Duration

	// Deliveries is how long webhook delivery records, which only serve
	// deduplication, are kept (default DefaultDeliveryRetention).
	Deliveries time.Duration

	// Idempotency is how long Idempotency-Key records are kept (default
	// DefaultIdempotencyRetention). Shorter than the API's 24 h window
	// would let a late retry place a second call.
	Idempotency time.Duration

	// Interval is the time between pruning rounds (default
	// DefaultPruneInterval); the first round runs at start.
	Interval time.Duration

	// Batch is how many records one transaction deletes (default
	// DefaultPruneBatch).
	Batch int
}

func (c *RetentionConfig) setDefaults() {
	if c.Deliveries <= 0 {
		c.Deliveries = DefaultDeliveryRetention
	}
	if c.Idempotency <= 0 {
		c.Idempotency = DefaultIdempotencyRetention
	}
	if c.Interval <= 0 {
		c.Interval = DefaultPruneInterval
	}
	if c.Batch <= 0 {
		c.Batch = DefaultPruneBatch
	}
}

// pruner runs the retention rounds.
type pruner struct {
	store   callcat.Pruner
	cfg     RetentionConfig
	logger  *slog.Logger
	pruned  *prometheus.CounterVec
	failed  prometheus.Counter
	now     func() time.Time
	maxLoop int // batches per kind and round, so one round always ends
}

func newPruner(store callcat.Pruner, cfg RetentionConfig, logger *slog.Logger, reg prometheus.Registerer) *pruner {
	cfg.setDefaults()
	p := &pruner{
		store:  store,
		cfg:    cfg,
		logger: logger,
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callcat_pruned_records_total",
			Help: "Records deleted by retention, by kind (calls, deliveries, idempotency).",
		}, []string{"kind"}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callcat_prune_failures_total",
			Help: "Retention batches that failed; the next round retries.",
		}),
		now:     time.Now,
		maxLoop: 1000,
	}
	reg.MustRegister(p.pruned, p.failed)
	return p
}

// run prunes once at start and then every cfg.Interval until ctx ends.
func (p *pruner) run(ctx context.Context) {
	ticker := time.NewTicker(p.cfg.Interval)
	defer ticker.Stop()
	for {
		p.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// round deletes, batch by batch, every record past its retention.
func (p *pruner) round(ctx context.Context) {
	now := p.now()
	kinds := []struct {
		name  string
		keep  time.Duration
		prune func(context.Context, time.Time, int) (int, error)
	}{
		{"calls", p.cfg.Calls, p.store.PruneCalls},
		{"deliveries", p.cfg.Deliveries, p.store.PruneDeliveries},
		{"idempotency", p.cfg.Idempotency, p.store.PruneIdempotency},
	}
	for _, k := range kinds {
		if k.keep <= 0 {
			continue
		}
		before := now.Add(-k.keep)
		total := 0
		for range p.maxLoop {
			if ctx.Err() != nil {
				return
			}
			n, err := k.prune(ctx, before, p.cfg.Batch)
			if err != nil {
				if ctx.Err() == nil {
					p.failed.Inc()
					p.logger.Warn("prune failed", "kind", k.name, "err", err)
				}
				break
			}
			total += n
			p.pruned.WithLabelValues(k.name).Add(float64(n))
			if n < p.cfg.Batch {
				break
			}
		}
		if total > 0 {
			p.logger.Info("pruned old records", "kind", k.name, "count", total, "before", before)
		}
	}
}

// ParseRetention parses a retention such as "90d", "12h" or "0": a whole
// number of days with the suffix d, or anything time.ParseDuration takes.
// "0" and "" mean keep forever. Negative values are rejected.
func ParseRetention(s string) (time.Duration, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > maxRetentionDays {
			return 0, fmt.Errorf("invalid retention %q: use whole days from 0 to %d such as 90d, or a duration such as 36h", s, maxRetentionDays)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid retention %q: use whole days such as 90d, or a duration such as 36h", s)
	}
	return d, nil
}

// maxRetentionDays keeps a day count within time.Duration (about 292 years).
const maxRetentionDays = 100 * 365
