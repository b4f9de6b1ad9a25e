package soak

import (
	"fmt"
	"time"

	"github.com/callcat/callcat/internal/memwatch"
)

// RuleDBSizeSlope names the database growth rule in Report.Rules. Only a
// soak with call retention checks it.
const RuleDBSizeSlope = "db_size_slope"

// dbMeasured states in the report what each database figure counts.
const dbMeasured = "size_bytes is the store's Size, page_count × page_size: every page of the database, " +
	"those still only in the WAL and the free ones included, but not the WAL file. The " + RuleDBSizeSlope +
	" rule checks it. free_bytes are the freelist pages within size_bytes, which SQLite reuses before it " +
	"adds pages. disk_bytes is the main file plus the -wal file on disk, and wal_bytes the -wal file alone. " +
	"The WAL file grows until SQLite checkpoints it and starts it over, and SQLite then reuses the file " +
	"without shrinking it, so disk_bytes follows checkpoints rather than retention and no rule checks it. stored_calls is " +
	"SELECT count(*) FROM calls, taken at most every 5 s and at the baseline and after the drain."

// Database describes the service's SQLite database over the soak. Times are
// seconds since the baseline sample, sizes are bytes.
type Database struct {
	Path     string `json:"path"`
	Measured string `json:"measured"` // the meaning of each figure

	// PrunedBySeconds estimates when retention has deleted the first ended
	// calls (see Config.prunedBy). It is 0 without call retention.
	PrunedBySeconds float64 `json:"pruned_by_seconds,omitempty"`

	// BytesPerStoredCall is the peak size over the peak count of stored
	// calls: what the database holds per call, its transcript, events and
	// webhook deliveries included. ChurnBytesPerHour estimates how fast the
	// churn would grow the database without retention: BytesPerStoredCall
	// times the calls started per hour of churn. Both are 0 when no call
	// was counted.
	BytesPerStoredCall float64 `json:"bytes_per_stored_call"`
	ChurnBytesPerHour  float64 `json:"churn_bytes_per_hour"`

	Baseline    DBFigures     `json:"baseline"`
	Peak        DBFigures     `json:"peak"` // the maximum of each figure over all samples
	AfterDrain  DBFigures     `json:"after_drain"`
	SteadyState DBSteadyState `json:"steady_state"`

	Samples []DBSamplePoint `json:"samples"`
}

// DBFigures are the figures of one database sample. StoredCalls is the last
// count at or before the sample.
type DBFigures struct {
	SizeBytes   int64 `json:"size_bytes"`
	FreeBytes   int64 `json:"free_bytes"`
	DiskBytes   int64 `json:"disk_bytes"`
	WALBytes    int64 `json:"wal_bytes"`
	StoredCalls int64 `json:"stored_calls"`
}

// DBSteadyState contains the database growth slopes, in bytes per hour, fitted
// over the steady phase and over its second half. By the second half,
// retention should have started deleting, so the size should be level
// there. A slope is nil when its stretch held fewer than
// memwatch.MinSlopePoints samples.
type DBSteadyState struct {
	Samples          int      `json:"samples"`
	SizeBytesPerHour *float64 `json:"size_bytes_per_hour"`
	DiskBytesPerHour *float64 `json:"disk_bytes_per_hour"`

	SecondHalfStartSeconds float64  `json:"second_half_start_seconds"`
	SecondHalfSamples      int      `json:"second_half_samples"`
	SecondHalfSizePerHour  *float64 `json:"second_half_size_bytes_per_hour"`
	SecondHalfDiskPerHour  *float64 `json:"second_half_disk_bytes_per_hour"`
}

// DBSamplePoint is one database sample of the time series. StoredCalls is
// absent from samples that did not count the calls.
type DBSamplePoint struct {
	Seconds     float64 `json:"t"`
	Phase       string  `json:"phase"`
	SizeBytes   int64   `json:"size_bytes"`
	FreeBytes   int64   `json:"free_bytes"`
	DiskBytes   int64   `json:"disk_bytes"`
	WALBytes    int64   `json:"wal_bytes"`
	StoredCalls *int64  `json:"stored_calls,omitempty"`
}

// databaseReport assembles the Database section from the samples, the
// explicit baseline and after-drain samples included. steadyStart is the
// start of the steady phase as the report uses it.
func (r *runner) databaseReport(samples []dbSample, steadyStart time.Time) Database {
	since := func(t time.Time) float64 { return t.Sub(r.baselineAt).Seconds() }
	secondHalf := steadyStart.Add(r.drainStart.Sub(steadyStart) / 2)

	db := Database{
		Measured:   dbMeasured,
		Baseline:   dbFiguresOf(r.dbBaseline, r.dbBaseline.StoredCalls),
		AfterDrain: dbFiguresOf(r.dbAfterDrain, r.dbAfterDrain.StoredCalls),
		Samples:    make([]DBSamplePoint, 0, len(samples)),
	}
	if r.db != nil {
		db.Path = r.db.store.Path()
	}
	if by := r.cfg.prunedBy(); by > 0 {
		db.PrunedBySeconds = since(r.churnStart.Add(by))
	}
	db.SteadyState.SecondHalfStartSeconds = since(secondHalf)

	var size, disk, size2, disk2 []memwatch.Point
	var stored int64
	for _, s := range samples {
		if s.Time.Before(r.baselineAt) {
			continue
		}
		point := DBSamplePoint{
			Seconds:   since(s.Time),
			Phase:     phaseAt(s.Time, r.churnStart, steadyStart, r.drainStart),
			SizeBytes: s.SizeBytes,
			FreeBytes: s.FreeBytes,
			DiskBytes: s.diskBytes(),
			WALBytes:  s.WALBytes,
		}
		if s.Counted {
			stored = s.StoredCalls
			count := s.StoredCalls
			point.StoredCalls = &count
		}
		db.Samples = append(db.Samples, point)
		db.Peak = maxDBFigures(db.Peak, dbFiguresOf(s, stored))

		if point.Phase != PhaseSteady {
			continue
		}
		db.SteadyState.Samples++
		size = append(size, memwatch.Point{T: s.Time, V: float64(s.SizeBytes)})
		disk = append(disk, memwatch.Point{T: s.Time, V: float64(s.diskBytes())})
		if !s.Time.Before(secondHalf) {
			db.SteadyState.SecondHalfSamples++
			size2 = append(size2, size[len(size)-1])
			disk2 = append(disk2, disk[len(disk)-1])
		}
	}
	db.SteadyState.SizeBytesPerHour = slopeOf(size)
	db.SteadyState.DiskBytesPerHour = slopeOf(disk)
	db.SteadyState.SecondHalfSizePerHour = slopeOf(size2)
	db.SteadyState.SecondHalfDiskPerHour = slopeOf(disk2)

	churn := r.drainStart.Sub(r.churnStart).Hours()
	if db.Peak.StoredCalls > 0 && churn > 0 {
		db.BytesPerStoredCall = float64(db.Peak.SizeBytes) / float64(db.Peak.StoredCalls)
		db.ChurnBytesPerHour = db.BytesPerStoredCall * float64(r.simStats.CallsStarted) / churn
	}
	return db
}

func dbFiguresOf(s dbSample, storedCalls int64) DBFigures {
	return DBFigures{
		SizeBytes:   s.SizeBytes,
		FreeBytes:   s.FreeBytes,
		DiskBytes:   s.diskBytes(),
		WALBytes:    s.WALBytes,
		StoredCalls: storedCalls,
	}
}

func maxDBFigures(a, b DBFigures) DBFigures {
	return DBFigures{
		SizeBytes:   max(a.SizeBytes, b.SizeBytes),
		FreeBytes:   max(a.FreeBytes, b.FreeBytes),
		DiskBytes:   max(a.DiskBytes, b.DiskBytes),
		WALBytes:    max(a.WALBytes, b.WALBytes),
		StoredCalls: max(a.StoredCalls, b.StoredCalls),
	}
}

// slopeOf returns the fitted slope of points per hour, or nil when there are
// too few points.
func slopeOf(points []memwatch.Point) *float64 {
	v, ok := memwatch.Slope(points)
	if !ok {
		return nil
	}
	return &v
}

// dbSizeRule checks the slope of the database size, page_count ×
// page_size, over the second half of the steady phase. The WAL file is left
// out because its size on disk follows checkpoints rather than retention.
func dbSizeRule(rep *Report, rules Rules) RuleResult {
	db := &rep.Database
	rule := RuleResult{
		Rule:   RuleDBSizeSlope,
		Figure: "slope of the database size (page_count × page_size) over the second half of the steady phase",
		Limit:  rules.MaxDBGrowthPerHour,
		Unit:   "bytes/h",
	}
	limitText := formatBytes(rule.Limit) + "/h"
	if rule.Limit == 0 {
		rule.Limit = DefaultDBGrowthShare * db.ChurnBytesPerHour
		limitText = fmt.Sprintf("%s/h (%.0f%% of the %s/h the churn would add without retention)",
			formatBytes(rule.Limit), 100*DefaultDBGrowthShare, formatBytes(db.ChurnBytesPerHour))
	}

	switch v := db.SteadyState.SecondHalfSizePerHour; {
	case rule.Limit == 0:
		rule.Message = "database size growth limit unknown: no count of stored calls to estimate the churn growth from; set --max-db-growth"
	case v != nil:
		rule.Value = *v
		rule.Pass = *v <= rule.Limit
		rule.Message = fmt.Sprintf("database size slope over the second half of the steady phase %s/h, limit %s",
			formatSignedBytes(*v), limitText)
	default:
		rule.Message = fmt.Sprintf("database size slope over the second half of the steady phase unknown: it held %d database samples, fewer than %d; lengthen the duration or shorten the sample interval",
			db.SteadyState.SecondHalfSamples, memwatch.MinSlopePoints)
	}
	if db.PrunedBySeconds > db.SteadyState.SecondHalfStartSeconds {
		rule.Message += fmt.Sprintf(" (the second half starts at %.0f s, before retention has deleted the first calls at about %.0f s: lengthen --duration or shorten --retention)",
			db.SteadyState.SecondHalfStartSeconds, db.PrunedBySeconds)
	}
	return rule
}
