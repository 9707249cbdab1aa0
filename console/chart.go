package console

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ChartSeries is one line of a chart.
type ChartSeries struct {
	Name   string
	Class  string // CSS class that colours the line (s1…s6)
	Values []float64
}

// ChartData is what a chart shows: values per time step for each series.
type ChartData struct {
	ID     string // unique on the page; used for aria labels and tests
	Title  string
	Unit   string // shown after the numbers, e.g. "msg/s"
	Times  []time.Time
	Series []ChartSeries
	// Partial: the last point is the current, unfinished step (its rate is
	// over the time elapsed so far); drawn dashed.
	Partial bool
}

// chartModel is a chart laid out for drawing: every coordinate computed, so
// the templ component only writes markup.
type chartModel struct {
	ChartData
	W, H          int
	Left, Bottom  int
	Paths         []chartPath
	Tails         []chartPath // the partial current step, per series
	YTicks        []chartTick
	XTicks        []chartTick
	Latest        []string // latest value per series, formatted
	Empty         bool
	PlotW, PlotH  int
	PlotX, PlotY  int
	AriaSummaries string
}

type chartPath struct {
	Name, Class, D string
}

type chartTick struct {
	Pos    float64
	Label  string
	Anchor string // text-anchor of an x label: start, middle or end
}

const (
	chartW     = 640
	chartH     = 200
	chartLeft  = 56
	chartRight = 12
	chartTop   = 12
	chartBot   = 24
)

// layoutChart computes the drawing of d.
func layoutChart(d ChartData) chartModel {
	m := chartModel{ChartData: d, W: chartW, H: chartH, PlotX: chartLeft, PlotY: chartTop,
		PlotW: chartW - chartLeft - chartRight, PlotH: chartH - chartTop - chartBot}
	n := len(d.Times)
	maxV := 0.0
	for _, s := range d.Series {
		for _, v := range s.Values {
			if !math.IsNaN(v) && v > maxV {
				maxV = v
			}
		}
	}
	top, step := niceScale(maxV)
	m.Empty = n == 0
	for v := 0.0; v <= top+step/2; v += step {
		m.YTicks = append(m.YTicks, chartTick{Pos: m.y(v, top), Label: formatNumber(v)})
	}
	if n > 0 {
		span := d.Times[n-1].Sub(d.Times[0])
		layout := "15:04"
		if span > 36*time.Hour {
			layout = "Jan 2"
		} else if span > 20*time.Hour {
			layout = "Jan 2 15:04"
		}
		for i, k := 0, 0; k < 5 && n > 1; k++ {
			i = k * (n - 1) / 4
			anchor := "middle"
			switch k {
			case 0:
				anchor = "start"
			case 4:
				anchor = "end"
			}
			m.XTicks = append(m.XTicks, chartTick{Pos: m.x(i, n), Label: d.Times[i].UTC().Format(layout), Anchor: anchor})
		}
		if n == 1 {
			m.XTicks = append(m.XTicks, chartTick{Pos: m.x(0, 1), Label: d.Times[0].UTC().Format(layout), Anchor: "start"})
		}
	}
	var summaries []string
	for _, s := range d.Series {
		var b strings.Builder
		last := n
		if d.Partial && n >= 2 {
			last = n - 1 // the current step is drawn on its own, dashed
			tail := fmt.Sprintf("M%.1f,%.1f L%.1f,%.1f", m.x(n-2, n), m.y(s.Values[n-2], top), m.x(n-1, n), m.y(s.Values[n-1], top))
			m.Tails = append(m.Tails, chartPath{Name: s.Name, Class: s.Class, D: tail})
		}
		for i, v := range s.Values {
			if i >= last || math.IsNaN(v) {
				continue
			}
			if b.Len() == 0 {
				b.WriteString("M")
			} else {
				b.WriteString(" L")
			}
			b.WriteString(strconv.FormatFloat(m.x(i, n), 'f', 1, 64))
			b.WriteString(",")
			b.WriteString(strconv.FormatFloat(m.y(v, top), 'f', 1, 64))
		}
		m.Paths = append(m.Paths, chartPath{Name: s.Name, Class: s.Class, D: b.String()})
		latest := "–"
		if len(s.Values) > 0 {
			latest = formatNumber(s.Values[len(s.Values)-1])
			if d.Unit != "" {
				latest += " " + d.Unit
			}
		}
		m.Latest = append(m.Latest, latest)
		summaries = append(summaries, s.Name+" now "+latest)
	}
	m.AriaSummaries = d.Title + ": " + strings.Join(summaries, ", ")
	return m
}

func (m chartModel) x(i, n int) float64 {
	if n <= 1 {
		return float64(m.PlotX)
	}
	return float64(m.PlotX) + float64(i)*float64(m.PlotW)/float64(n-1)
}

func (m chartModel) y(v, top float64) float64 {
	return float64(m.PlotY) + float64(m.PlotH)*(1-v/top)
}

// niceScale returns an axis top ≥ maxV and a tick step of 1, 2 or 5 × 10^k
// giving four or five ticks.
func niceScale(maxV float64) (top, step float64) {
	if maxV <= 0 || math.IsNaN(maxV) || math.IsInf(maxV, 0) {
		return 1, 0.25
	}
	raw := maxV / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, f := range []float64{1, 2, 2.5, 5, 10} {
		step = f * mag
		if step >= raw {
			break
		}
	}
	top = math.Ceil(maxV/step) * step
	if top == 0 {
		top = step
	}
	return top, step
}

// formatNumber writes v compactly: 950, 1.2k, 3.4M.
func formatNumber(v float64) string {
	abs := math.Abs(v)
	switch {
	case abs >= 1e9:
		return trimZero(fmt.Sprintf("%.1f", v/1e9)) + "G"
	case abs >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case abs >= 1e4:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case abs >= 100 || v == math.Trunc(v):
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	default:
		return trimZero(fmt.Sprintf("%.2f", v))
	}
}

func trimZero(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// hoverData is a chart's points for the hover read-out (aerie.js): the
// times, then per series its name and values, as data attributes.
func (m chartModel) hoverTimes() string {
	out := make([]string, len(m.Times))
	for i, t := range m.Times {
		out[i] = t.UTC().Format("2006-01-02 15:04:05") + " UTC"
		if m.Partial && i == len(m.Times)-1 {
			out[i] += " (so far)"
		}
	}
	return strings.Join(out, "|")
}

func hoverValues(vals []float64, unit string) string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = formatNumber(v)
		if unit != "" {
			out[i] += " " + unit
		}
	}
	return strings.Join(out, "|")
}

// pct is a position in the plot area as a CSS percentage.
func pct(pos float64, origin, size int) string {
	return fmt.Sprintf("%.2f%%", (pos-float64(origin))*100/float64(size))
}
