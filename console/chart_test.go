package console

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/aeriemq/aerie/billing"
)

func TestNiceScale(t *testing.T) {
	cases := []struct {
		max, top, step float64
	}{
		{0, 1, 0.25},
		{1, 1, 0.25},
		{7, 8, 2},
		{10, 10, 2.5},
		{95, 100, 25},
		{1234, 1500, 500},
		{0.03, 0.03, 0.01},
	}
	for _, c := range cases {
		top, step := niceScale(c.max)
		if !near(top, c.top) || !near(step, c.step) {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", c.max, top, step, c.top, c.step)
		}
		if top < c.max {
			t.Errorf("niceScale(%v): top %v below the data", c.max, top)
		}
	}
}

func near(a, b float64) bool { d := a - b; return d < 1e-9 && d > -1e-9 }

func TestFormatNumber(t *testing.T) {
	cases := map[float64]string{0: "0", 7: "7", 0.5: "0.5", 12.345: "12.35", 950: "950", 12000: "12k", 1500000: "1.5M", 2e9: "2G"}
	for v, want := range cases {
		if got := formatNumber(v); got != want {
			t.Errorf("formatNumber(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestChartRenders(t *testing.T) {
	base := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var times []time.Time
	var in, out []float64
	for i := 0; i < 30; i++ {
		times = append(times, base.Add(time.Duration(i)*10*time.Second))
		in = append(in, float64(i))
		out = append(out, float64(2*i))
	}
	d := ChartData{ID: "msgs", Title: "Messages per second", Unit: "msg/s", Times: times,
		Series: []ChartSeries{{Name: "in", Class: "s1", Values: in}, {Name: "out", Class: "s2", Values: out}}}
	var buf bytes.Buffer
	if err := Chart(d).Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	doc, err := goquery.NewDocumentFromReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	fig := doc.Find(`figure[data-testid="chart-msgs"]`)
	if fig.Length() != 1 {
		t.Fatalf("chart figure missing:\n%s", buf.String())
	}
	if got := fig.Find("path.line").Length(); got != 2 {
		t.Errorf("%d lines, want 2", got)
	}
	if d, _ := fig.Find("path.s1").Attr("d"); strings.Count(d, "L") != 29 {
		t.Errorf("path has %d segments, want 29: %s", strings.Count(d, "L"), d)
	}
	if got := fig.Find(`[data-testid="latest-msgs-1"]`).Text(); got != "58 msg/s" {
		t.Errorf("latest out = %q, want 58 msg/s", got)
	}
	if label, _ := fig.Find("svg").Attr("aria-label"); !strings.Contains(label, "in now 29 msg/s") {
		t.Errorf("aria-label %q does not summarise the data", label)
	}
	if fig.Find("text.empty").Length() != 0 {
		t.Error("a chart with data says it has none")
	}

	buf.Reset()
	if err := Chart(ChartData{ID: "none", Title: "Nothing"}).Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "No data yet") {
		t.Error("an empty chart does not say so")
	}
}

// TestPartialLastStep: the current, unfinished step is drawn at its rate so
// far (dashed), not as a drop towards 0; connections are left as counted.
func TestPartialLastStep(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	pts := []billing.Point{{Time: t0, MessagesIn: 100, Connections: 2}, {Time: t0.Add(10 * time.Second), MessagesIn: 25, Connections: 2}}
	charts := dashboardCharts(pts, 10*time.Second)
	partialLast(charts, pts, 10*time.Second, t0.Add(12500*time.Millisecond)) // 2.5 s into the last step
	for _, ch := range charts {
		switch ch.ID {
		case "messages":
			if got := ch.Series[0].Values; got[0] != 10 || got[1] != 10 {
				t.Errorf("message rates %v, want [10 10] (25 in 2.5 s)", got)
			}
			if !ch.Partial || len(layoutChart(ch).Tails) != 2 {
				t.Error("the partial step is not drawn apart")
			}
		case "connections":
			if got := ch.Series[0].Values; got[1] != 2 || ch.Partial {
				t.Errorf("connections %v partial %v", got, ch.Partial)
			}
		}
	}
	// A finished step is left alone.
	charts = dashboardCharts(pts, 10*time.Second)
	partialLast(charts, pts, 10*time.Second, t0.Add(25*time.Second))
	if charts[1].Series[0].Values[1] != 2.5 || charts[1].Partial {
		t.Errorf("finished step rescaled: %v", charts[1].Series[0].Values)
	}
}
