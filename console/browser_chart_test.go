package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/aeriemq/aerie/internal/browsertest"
)

// TestChartInBrowser renders a chart page in headless chromium at phone and
// desktop widths and checks it is drawn (lines present, no horizontal
// overflow at 375 px).
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
		w.Write([]byte(`<!doctype html><html><head><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="/static/aerie.css"></head><body><main>`))
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
		})
	}
}
