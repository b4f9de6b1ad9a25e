package soak

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Chart geometry in SVG user units (pixels at 100% zoom).
const (
	chartWidth   = 960
	chartHeight  = 800
	plotLeft     = 80
	plotRight    = 880
	memTop       = 96
	memBottom    = 336
	dbTop        = 384
	dbBottom     = 564
	countTop     = 612
	countBottom  = 740
	maxPolyline  = 2000 // points drawn per series; longer series are thinned
	tickTarget   = 6    // about this many ticks per axis
	colorHeap    = "#1f5fbf"
	colorRSS     = "#d9480f"
	colorRoutine = "#2b8a3e"
	colorFDs     = "#7048e8"
	colorDisk    = "#c2255c"
	colorDBSize  = "#0c8599"
	colorStored  = "#495057"
)

// panels are the vertical extents of the three panels, top to bottom.
var panels = [][2]float64{{memTop, memBottom}, {dbTop, dbBottom}, {countTop, countBottom}}

// phaseFill shades each phase; the baseline is a moment and is not shaded.
var phaseFill = map[string]string{
	PhaseWarmup: "#f1f3f5",
	PhaseSteady: "#ebfbee",
	PhaseDrain:  "#e7f5ff",
}

// WriteSVG draws the report's time series as an SVG chart. The upper panel
// shows live heap and RSS in MiB. The middle one shows the database size
// and its files on disk in MiB, with the stored calls on an axis of their
// own. The lower one shows goroutines and open file descriptors. All share
// one axis of seconds or minutes since the baseline. Phases are shaded and
// labelled, and a dashed line marks the after-drain limit of the live heap.
func WriteSVG(w io.Writer, rep *Report) error {
	var b strings.Builder
	c := newChart(rep)

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, chartHeight)
	c.title(&b)
	c.phases(&b)
	c.memoryPanel(&b)
	c.databasePanel(&b)
	c.countPanel(&b)
	c.timeAxis(&b)
	b.WriteString("</svg>\n")

	_, err := io.WriteString(w, b.String())
	return err
}

// chart holds the scales shared by the panels.
type chart struct {
	rep       *Report
	xMax      float64 // seconds at the right edge
	xUnit     float64 // seconds per axis unit: 1 or 60
	xLabel    string
	memMax    float64 // MiB at the top of the memory panel
	dbMax     float64 // MiB at the top of the database panel
	storedMax float64 // stored calls at the top of the database panel
	cntMax    float64 // count at the top of the count panel
	samples   []SamplePoint
	dbSamples []DBSamplePoint
	stored    []DBSamplePoint // the database samples that counted the calls
}

func newChart(rep *Report) *chart {
	c := &chart{
		rep:       rep,
		xUnit:     1,
		xLabel:    "time since baseline (s)",
		samples:   thin(rep.Samples, maxPolyline),
		dbSamples: thin(rep.Database.Samples, maxPolyline),
	}
	var stored []DBSamplePoint
	for _, s := range rep.Database.Samples {
		if s.StoredCalls != nil {
			stored = append(stored, s)
		}
	}
	c.stored = thin(stored, maxPolyline)
	for _, p := range rep.Phases {
		c.xMax = max(c.xMax, p.EndSeconds)
	}
	for _, s := range rep.Samples {
		c.xMax = max(c.xMax, s.Seconds)
	}
	for _, s := range rep.Database.Samples {
		c.xMax = max(c.xMax, s.Seconds)
	}
	if c.xMax > 600 {
		c.xUnit, c.xLabel = 60, "time since baseline (min)"
	}
	c.xMax = niceCeil(max(c.xMax/c.xUnit, 1)) * c.xUnit

	// The lines of a long soak level off at their peak, so each panel
	// keeps about a quarter of its height above them for the legend and the
	// note.
	limit := float64(rep.Baseline.LiveHeapBytes) + float64(rep.Settings.MaxHeapAboveBaselineBytes)
	c.memMax = niceCeil(max(mib(float64(rep.Peak.RSSBytes)), mib(float64(rep.Peak.LiveHeapBytes)), mib(limit), 1) * 1.35)
	c.cntMax = niceCeil(max(float64(rep.Peak.Goroutines), float64(rep.Peak.FDs), 1) * 1.35)
	db := &rep.Database.Peak
	c.dbMax = niceCeil(max(mib(float64(db.DiskBytes)), mib(float64(db.SizeBytes)), 1) * 1.35)
	c.storedMax = niceCeil(max(float64(db.StoredCalls), 1) * 1.35)
	return c
}

func mib(b float64) float64 { return b / (1 << 20) }

func (c *chart) x(seconds float64) float64 {
	return plotLeft + (plotRight-plotLeft)*seconds/c.xMax
}

func (c *chart) yMem(v float64) float64 {
	return memBottom - (memBottom-memTop)*v/c.memMax
}

func (c *chart) yCount(v float64) float64 {
	return countBottom - (countBottom-countTop)*v/c.cntMax
}

func (c *chart) yDB(v float64) float64 {
	return dbBottom - (dbBottom-dbTop)*v/c.dbMax
}

func (c *chart) yStored(v float64) float64 {
	return dbBottom - (dbBottom-dbTop)*v/c.storedMax
}

func (c *chart) title(b *strings.Builder) {
	rep := c.rep
	verdict := "PASS"
	if !rep.Pass {
		verdict = "FAIL"
	}
	st := rep.Settings
	fmt.Fprintf(b, `<text x="%d" y="26" font-size="16" font-weight="bold">%s</text>`+"\n", plotLeft,
		esc(fmt.Sprintf("callcat soak: %s, %d calls completed, %d concurrent, speed %g, up to %d subscribers",
			verdict, rep.Calls.Completed, st.Calls, st.Speed, st.Subscribers)))
	fmt.Fprintf(b, `<text x="%d" y="46" fill="#495057">%s</text>`+"\n", plotLeft,
		esc(fmt.Sprintf("steady-state slope: live heap %s, RSS %s; live heap after drain %s (baseline %s)",
			formatSlope(rep.SteadyState.LiveHeapBytesPerHour), formatSlope(rep.SteadyState.RSSBytesPerHour),
			formatBytes(float64(rep.AfterDrain.LiveHeapBytes)), formatBytes(float64(rep.Baseline.LiveHeapBytes)))))
	fmt.Fprintf(b, `<text x="%d" y="64" fill="#495057">%s</text>`+"\n", plotLeft,
		esc(fmt.Sprintf("goroutines %d → %d, open files %d → %d (baseline → after drain); Go %s, %d CPUs",
			rep.Baseline.Goroutines, rep.AfterDrain.Goroutines, rep.Baseline.FDs, rep.AfterDrain.FDs, st.GoVersion, st.NumCPU)))
}

// phases shades each phase over every panel and names it above the memory
// panel.
func (c *chart) phases(b *strings.Builder) {
	for _, p := range c.rep.Phases {
		fill, ok := phaseFill[p.Name]
		if !ok || p.EndSeconds <= p.StartSeconds {
			continue
		}
		x0, x1 := c.x(p.StartSeconds), c.x(p.EndSeconds)
		for _, band := range panels {
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n",
				x0, band[0], x1-x0, band[1]-band[0], fill)
		}
		// A phase too narrow for its name, such as a drain of a few
		// seconds in an hour, is named beside its band.
		x, anchor := (x0+x1)/2, "middle"
		switch {
		case x1-x0 >= 50:
		case x0+50 <= plotRight:
			x, anchor = x0, "start"
		default:
			x, anchor = x1, "end"
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="%s" fill="#495057">%s</text>`+"\n", x, memTop-6, anchor, esc(p.Name))
	}
}

func (c *chart) memoryPanel(b *strings.Builder) {
	c.frame(b, memTop, memBottom)
	for _, v := range ticks(c.memMax) {
		y := c.yMem(v)
		c.gridLine(b, y, formatTick(v))
	}
	c.axisLabel(b, (memTop+memBottom)/2, "memory (MiB)")

	limit := mib(float64(c.rep.Baseline.LiveHeapBytes) + float64(c.rep.Settings.MaxHeapAboveBaselineBytes))
	y := c.yMem(limit)
	fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-dasharray="6 4" stroke-width="1"/>`+"\n",
		plotLeft, y, plotRight, y, colorHeap)

	series(b, colorRSS, "", c.samples, func(p SamplePoint) (float64, float64) { return c.x(p.Seconds), c.yMem(mib(float64(p.RSSBytes))) })
	series(b, colorHeap, "", c.samples, func(p SamplePoint) (float64, float64) {
		return c.x(p.Seconds), c.yMem(mib(float64(p.LiveHeapBytes)))
	})
	c.markers(b)
	c.legend(b, memTop, []legendEntry{{colorHeap, "live heap (after GC)"}, {colorRSS, "RSS"}})
	fmt.Fprintf(b, `<text x="%d" y="%d" fill="%s" font-size="11">%s</text>`+"\n", plotLeft+10, memTop+34, colorHeap,
		esc("circles: live heap at the baseline and after the drain; dashed: baseline + "+
			formatBytes(float64(c.rep.Settings.MaxHeapAboveBaselineBytes))+", the after-drain limit"))
}

// markers circles the live heap of the baseline and after-drain samples,
// the two figures the after-drain rule compares.
func (c *chart) markers(b *strings.Builder) {
	rep := c.rep
	end := 0.0
	if n := len(rep.Phases); n > 0 {
		end = rep.Phases[n-1].EndSeconds
	}
	for _, p := range []struct {
		seconds float64
		bytes   uint64
	}{{0, rep.Baseline.LiveHeapBytes}, {end, rep.AfterDrain.LiveHeapBytes}} {
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="4" fill="#ffffff" stroke="%s" stroke-width="2"/>`+"\n",
			c.x(p.seconds), c.yMem(mib(float64(p.bytes))), colorHeap)
	}
}

func (c *chart) countPanel(b *strings.Builder) {
	c.frame(b, countTop, countBottom)
	for _, v := range ticks(c.cntMax) {
		c.gridLine(b, c.yCount(v), formatTick(v))
	}
	c.axisLabel(b, (countTop+countBottom)/2, "count")
	series(b, colorFDs, "", c.samples, func(p SamplePoint) (float64, float64) { return c.x(p.Seconds), c.yCount(float64(p.FDs)) })
	series(b, colorRoutine, "", c.samples, func(p SamplePoint) (float64, float64) { return c.x(p.Seconds), c.yCount(float64(p.Goroutines)) })
	c.legend(b, countTop, []legendEntry{{colorRoutine, "goroutines"}, {colorFDs, "open file descriptors"}})
}

// databasePanel draws the database size and its files on disk on the left
// axis and the stored calls on the right one.
func (c *chart) databasePanel(b *strings.Builder) {
	rep := c.rep
	c.frame(b, dbTop, dbBottom)
	for _, v := range ticks(c.dbMax) {
		c.gridLine(b, c.yDB(v), formatTick(v))
	}
	for _, v := range ticks(c.storedMax) {
		fmt.Fprintf(b, `<text x="%d" y="%.1f" fill="%s">%s</text>`+"\n", plotRight+6, c.yStored(v)+4, colorStored, esc(formatTick(v)))
	}
	c.axisLabel(b, (dbTop+dbBottom)/2, "database (MiB)")
	y := (dbTop + dbBottom) / 2.0
	fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="middle" fill="%s" transform="rotate(90 %d %.1f)">%s</text>`+"\n",
		chartWidth-14, y, colorStored, chartWidth-14, y, esc("stored calls"))

	// The WAL makes the on-disk line a dense saw-tooth, so it is drawn
	// first and half transparent, and the others over it.
	series(b, colorDisk, `stroke-opacity="0.45"`, c.dbSamples, func(p DBSamplePoint) (float64, float64) { return c.x(p.Seconds), c.yDB(mib(float64(p.DiskBytes))) })
	series(b, colorDBSize, "", c.dbSamples, func(p DBSamplePoint) (float64, float64) { return c.x(p.Seconds), c.yDB(mib(float64(p.SizeBytes))) })
	series(b, colorStored, `stroke-dasharray="4 3"`, c.stored, func(p DBSamplePoint) (float64, float64) {
		return c.x(p.Seconds), c.yStored(float64(*p.StoredCalls))
	})
	c.legend(b, dbTop, []legendEntry{
		{colorDBSize, "size (page_count × page_size)"},
		{colorDisk, "main file + WAL on disk"},
		{colorStored, "stored calls (dashed, right axis)"},
	})

	note := "retention off: the database keeps every call, so its growth is not checked"
	if st := rep.Settings; st.RetentionSeconds > 0 {
		// The rule fits the size from this line to the drain.
		x := c.x(rep.Database.SteadyState.SecondHalfStartSeconds)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#868e96" stroke-dasharray="2 3"/>`+"\n", x, dbTop+44, x, dbBottom)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" fill="#495057" font-size="11">%s</text>`+"\n", x+4, dbBottom-6, esc("second half"))
		rule, _ := rep.Rule(RuleDBSizeSlope)
		note = fmt.Sprintf("retention %s, pruned every %s; size slope over the second half of the steady phase %s, limit %s/h",
			seconds(st.RetentionSeconds), seconds(st.PruneIntervalSeconds),
			formatSlope(rep.Database.SteadyState.SecondHalfSizePerHour), formatBytes(rule.Limit))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" fill="%s" font-size="11">%s</text>`+"\n", plotLeft+10, dbTop+34, colorDBSize, esc(note))
}

func (c *chart) timeAxis(b *strings.Builder) {
	for _, v := range ticks(c.xMax / c.xUnit) {
		x := c.x(v * c.xUnit)
		for _, band := range panels {
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#868e96"/>`+"\n", x, band[1], x, band[1]+4)
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, countBottom+18, formatTick(v))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", (plotLeft+plotRight)/2, countBottom+40, esc(c.xLabel))
}

func (c *chart) frame(b *strings.Builder, top, bottom float64) {
	fmt.Fprintf(b, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="none" stroke="#868e96"/>`+"\n",
		plotLeft, top, plotRight-plotLeft, bottom-top)
}

func (c *chart) gridLine(b *strings.Builder, y float64, label string) {
	fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#dee2e6"/>`+"\n", plotLeft, y, plotRight, y)
	fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", plotLeft-6, y+4, esc(label))
}

func (c *chart) axisLabel(b *strings.Builder, y float64, label string) {
	fmt.Fprintf(b, `<text x="20" y="%.1f" text-anchor="middle" transform="rotate(-90 20 %.1f)">%s</text>`+"\n", y, y, esc(label))
}

// series draws one polyline through the points of samples. attrs, when not
// empty, contains more SVG attributes of the line, such as a dash pattern.
func series[T any](b *strings.Builder, color, attrs string, samples []T, at func(T) (x, y float64)) {
	if len(samples) == 0 {
		return
	}
	fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.6" stroke-linejoin="round"`, color)
	if attrs != "" {
		b.WriteString(" " + attrs)
	}
	b.WriteString(` points="`)
	for i, p := range samples {
		if i > 0 {
			b.WriteByte(' ')
		}
		x, y := at(p)
		fmt.Fprintf(b, "%.1f,%.1f", x, y)
	}
	b.WriteString(`"/>` + "\n")
}

type legendEntry struct {
	color, label string
}

// legend writes the entries in a row at the top left inside the panel.
func (c *chart) legend(b *strings.Builder, top float64, entries []legendEntry) {
	x := float64(plotLeft + 10)
	y := top + 16
	for _, e := range entries {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", x, y-4, x+18, y-4, e.color)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x+24, y, esc(e.label))
		x += 24 + 7*float64(len(e.label)) + 24
	}
}

// thin returns at most n+1 samples, evenly spaced, keeping the last one.
func thin[T any](samples []T, n int) []T {
	if len(samples) <= n {
		return samples
	}
	stride := (len(samples) + n - 1) / n
	out := make([]T, 0, n+1)
	last := 0
	for i := 0; i < len(samples); i += stride {
		out = append(out, samples[i])
		last = i
	}
	if last != len(samples)-1 {
		out = append(out, samples[len(samples)-1])
	}
	return out
}

// niceStep returns a step of 1, 2 or 5 times a power of ten that splits
// [0, top] into about tickTarget parts.
func niceStep(top float64) float64 {
	raw := top / tickTarget
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*pow >= raw {
			return m * pow
		}
	}
	return 10 * pow
}

// niceCeil rounds v up to a multiple of its nice step.
func niceCeil(v float64) float64 {
	step := niceStep(v)
	return math.Ceil(v/step) * step
}

// ticks returns the tick values from 0 to top at the nice step.
func ticks(top float64) []float64 {
	step := niceStep(top)
	var out []float64
	for i := 0; float64(i)*step <= top+step/1e6; i++ {
		out = append(out, float64(i)*step)
	}
	return out
}

func formatTick(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", math.Round(v*100)/100)
}

func esc(s string) string { return html.EscapeString(s) }
