package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/aeriemq/aerie/internal/browsertest"
)

// TestChartInBrowser renders a chart page in headless chromium at phone and
// desktop widths and checks it is drawn (lines present, no horizontal
// overflow at 375 px), and that its points can be read from the keyboard:
// Tab focuses the plot and shows the latest point's time and value in a
// status region (announced by screen readers); the arrow keys, Home and End
// move through the points.
func TestChartInBrowser(t *testing.T) {
	base := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var times []time.Time
	var vals []float64
	for i := 0; i < 90; i++ {
		times = append(times, base.Add(time.Duration(i)*10*time.Second))
		vals = append(vals, float64(i%20))
	}
	mux := http.NewServeMux()
	mux.Handle("/static/", Static())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><html><head><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="/static/aerie.css"><script src="/static/aerie.js" defer></script></head><body><main>`))
		_ = Chart(ChartData{ID: "conn", Title: "Connections", Times: times,
			Series: []ChartSeries{{Name: "connections", Class: "s1", Values: vals}}}).Render(context.Background(), w)
		w.Write([]byte(`</main></body></html>`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, size := range []struct {
		name string
		w, h int
	}{{"phone", 375, 800}, {"desktop", 1280, 900}} {
		t.Run(size.name, func(t *testing.T) {
			b := browsertest.New(t, size.w, size.h)
			if err := b.Do(30*time.Second,
				chromedp.Navigate(srv.URL+"/"),
				chromedp.WaitVisible(chromedp.CSS(`[data-testid="chart-conn"] svg`)),
			); err != nil {
				t.Fatal(err)
			}
			attr, err := browsertest.Get(b, 10*time.Second, chromedp.AttributeValue(chromedp.CSS(`[data-testid="chart-conn"] path.line`), "d"))
			if err != nil {
				t.Fatal(err)
			}
			pathD := attr.Value
			scrollW, err := browsertest.Get(b, 10*time.Second, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
			if err != nil {
				t.Fatal(err)
			}
			clientW, err := browsertest.Get(b, 10*time.Second, chromedp.Evaluate[int](`document.documentElement.clientWidth`))
			if err != nil {
				t.Fatal(err)
			}
			bg, err := browsertest.Get(b, 10*time.Second, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
			if err != nil {
				t.Fatal(err)
			}
			b.Shot("chart-" + size.name)
			if strings.Count(pathD, "L") != 89 {
				t.Errorf("line has %d segments, want 89", strings.Count(pathD, "L"))
			}
			if scrollW > clientW {
				t.Errorf("page overflows horizontally: scroll width %d > %d", scrollW, clientW)
			}
			if bg != "rgb(246, 247, 249)" {
				t.Errorf("stylesheet not applied: body background %q", bg)
			}
			chartKeyboard(t, b)
			b.Shot("chart-keyboard-" + size.name)
			if w, _ := browsertest.Get(b, 10*time.Second, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > clientW {
				t.Errorf("the read-out makes the page %d px wide (viewport %d)", w, clientW)
			}
		})
	}
}

// chartKeyboard reads the chart's points with the keyboard only.
func chartKeyboard(t *testing.T, b *browsertest.Browser) {
	t.Helper()
	tip := func() string {
		t.Helper()
		v, err := browsertest.Get(b, 10*time.Second, chromedp.Evaluate[string](
			`(function(){var t=document.querySelector('[data-testid="tip-conn"]');return t.hidden?'(hidden)':t.innerText})()`))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	key := func(k string) {
		t.Helper()
		if err := b.Do(10*time.Second, chromedp.KeyEvent(k)); err != nil {
			t.Fatalf("key %q: %v", k, err)
		}
	}
	if got := tip(); got != "(hidden)" {
		t.Errorf("read-out shown before any focus: %q", got)
	}
	key("\t")
	focused, err := browsertest.Get(b, 10*time.Second, chromedp.Evaluate[string](
		`document.activeElement.getAttribute('data-testid')+' '+document.activeElement.getAttribute('aria-label')`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(focused, "plot-conn ") || !strings.Contains(focused, "arrow keys") {
		t.Fatalf("Tab focuses %q, want the plot with its keyboard hint", focused)
	}
	role, _ := browsertest.Get(b, 10*time.Second, chromedp.Evaluate[string](`document.querySelector('[data-testid="tip-conn"]').getAttribute('role')`))
	if role != "status" {
		t.Errorf("read-out role %q, want status (announced)", role)
	}
	for _, step := range []struct{ key, want string }{
		{"", "2026-11-24 12:14:50 UTC · connections: 9"}, // focus shows the latest point
		{kb.ArrowLeft, "2026-11-24 12:14:40 UTC · connections: 8"},
		{kb.ArrowLeft, "2026-11-24 12:14:30 UTC · connections: 7"},
		{kb.ArrowRight, "2026-11-24 12:14:40 UTC · connections: 8"},
		{kb.Home, "2026-11-24 12:00:00 UTC · connections: 0"},
		{kb.ArrowRight, "2026-11-24 12:00:10 UTC · connections: 1"},
		{kb.End, "2026-11-24 12:14:50 UTC · connections: 9"},
	} {
		if step.key != "" {
			key(step.key)
		}
		if got := tip(); got != step.want {
			t.Errorf("after key %q the read-out is %q, want %q", step.key, got, step.want)
		}
	}
	key("\t") // focus leaves the chart: the read-out goes
	if got := tip(); got != "(hidden)" {
		t.Errorf("read-out still shown after focus left: %q", got)
	}
}
