package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/tenancy"
)

// metricRange is one of the dashboard's time ranges.
type metricRange struct {
	Key  string
	Span time.Duration
	Step time.Duration
}

var metricRanges = []metricRange{
	{"15m", 15 * time.Minute, 10 * time.Second},
	{"1h", time.Hour, 30 * time.Second},
	{"24h", 24 * time.Hour, 10 * time.Minute},
	{"7d", 7 * 24 * time.Hour, time.Hour},
}

func rangeOf(key string) metricRange {
	for _, m := range metricRanges {
		if m.Key == key {
			return m
		}
	}
	return metricRanges[1]
}

// Dashboard is the metrics section of an instance's page.
type Dashboard struct {
	Range  string
	Charts []ChartData
	Totals Totals
}

// Totals sum the dashboard's range: connections as last reported, the
// counters summed.
type Totals struct {
	Connections, MessagesIn, MessagesOut, BytesIn, BytesOut, Drops, AuthFailures int64
}

func totalsOf(pts []billing.Point) Totals {
	var t Totals
	for _, p := range pts {
		t.MessagesIn += p.MessagesIn
		t.MessagesOut += p.MessagesOut
		t.BytesIn += p.BytesIn
		t.BytesOut += p.BytesOut
		t.AuthFailures += p.AuthFailures
		for _, n := range p.Drops {
			t.Drops += n
		}
		if p.Connections > 0 || p.ConnectionsMax > 0 || p.MessagesIn > 0 || p.MessagesOut > 0 {
			t.Connections = p.Connections // the latest step with a report
		}
	}
	return t
}

// dashboard reads the instance's usage series; nil when there is no meter.
func (c *Console) dashboard(r *http.Request, orgID, instID string) (*Dashboard, error) {
	if c.meter == nil {
		return nil, nil
	}
	rg := rangeOf(r.URL.Query().Get("range"))
	now := c.now()
	pts, err := c.meter.Series(r.Context(), orgID, instID, now.Add(-rg.Span), now, rg.Step, now)
	if err != nil {
		return nil, err
	}
	var live int64
	liveOK := false
	if in, err := c.svc.Instance(r.Context(), orgID, instID); err == nil {
		live, liveOK = c.addPending(r.Context(), in, pts)
	}
	d := &Dashboard{Range: rg.Key, Charts: dashboardCharts(pts, rg.Step), Totals: totalsOf(pts)}
	partialLast(d.Charts, pts, rg.Step, now)
	if liveOK {
		d.Totals.Connections = live
	}
	return d, nil
}

// orgDashboard adds up the series of the org's instances (nil without a
// meter or instances).
func (c *Console) orgDashboard(r *http.Request, orgID string, insts []tenancy.Instance) (*Dashboard, error) {
	if c.meter == nil || len(insts) == 0 {
		return nil, nil
	}
	rg := rangeOf(r.URL.Query().Get("range"))
	now := c.now()
	var sum []billing.Point
	var live int64
	liveOK := true
	for _, in := range insts {
		pts, err := c.meter.Series(r.Context(), orgID, in.ID, now.Add(-rg.Span), now, rg.Step, now)
		if err != nil {
			return nil, err
		}
		n, ok := c.addPending(r.Context(), in, pts)
		live, liveOK = live+n, liveOK && ok
		if sum == nil {
			sum = make([]billing.Point, len(pts))
		}
		for i := range min(len(pts), len(sum)) {
			a, p := &sum[i], pts[i]
			a.Time = p.Time
			a.Connects += p.Connects
			a.AuthFailures += p.AuthFailures
			a.MessagesIn += p.MessagesIn
			a.MessagesOut += p.MessagesOut
			a.BytesIn += p.BytesIn
			a.BytesOut += p.BytesOut
			a.Connections += p.Connections
			a.ConnectionsMax += p.ConnectionsMax
			for k, v := range p.Drops {
				if a.Drops == nil {
					a.Drops = map[string]int64{}
				}
				a.Drops[k] += v
			}
		}
	}
	d := &Dashboard{Range: rg.Key, Charts: dashboardCharts(sum, rg.Step), Totals: totalsOf(sum)}
	partialLast(d.Charts, sum, rg.Step, now)
	if liveOK {
		d.Totals.Connections = live
	}
	return d, nil
}

// orgMetrics is the org overview's dashboard alone, for the auto-refresh.
func (c *Console) orgMetrics(w http.ResponseWriter, r *http.Request) {
	o := orgFrom(r.Context())
	if r.Header.Get("X-Partial") == "" {
		seeOther(w, r, "/orgs/"+o.ID+"/")
		return
	}
	insts, _, err := c.svc.ListInstances(r.Context(), o.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d, err := c.orgDashboard(r, o.ID, insts)
	if err != nil || d == nil {
		http.Error(w, "no metrics", http.StatusNotFound)
		return
	}
	c.render(w, r, http.StatusOK, DashboardRegion(*d))
}

// dashboardCharts turns points into the dashboard's charts: connections as
// counted, the counters as per-second rates over each step.
func dashboardCharts(pts []billing.Point, step time.Duration) []ChartData {
	n := len(pts)
	times := make([]time.Time, n)
	conns := make([]float64, n)
	mIn, mOut := make([]float64, n), make([]float64, n)
	bIn, bOut := make([]float64, n), make([]float64, n)
	reasons := []string{"acl", "quota", "queue_full", "too_large", "expired"}
	drops := make([][]float64, len(reasons))
	for i := range drops {
		drops[i] = make([]float64, n)
	}
	authFail := make([]float64, n)
	secs := step.Seconds()
	for i, p := range pts {
		times[i] = p.Time
		conns[i] = float64(p.Connections)
		mIn[i], mOut[i] = float64(p.MessagesIn)/secs, float64(p.MessagesOut)/secs
		bIn[i], bOut[i] = float64(p.BytesIn)/secs, float64(p.BytesOut)/secs
		for k, reason := range reasons {
			drops[k][i] = float64(p.Drops[reason]) / secs
		}
		authFail[i] = float64(p.AuthFailures) / secs
	}
	dropSeries := []ChartSeries{{Name: "auth failures", Class: "s1", Values: authFail}}
	for k, reason := range reasons {
		dropSeries = append(dropSeries, ChartSeries{Name: strings.ReplaceAll(reason, "_", " "), Class: fmt.Sprintf("s%d", k+2), Values: drops[k]})
	}
	return []ChartData{
		{ID: "connections", Title: "Connections", Times: times, Series: []ChartSeries{{Name: "connections", Class: "s1", Values: conns}}},
		{ID: "messages", Title: "Messages", Unit: "msg/s", Times: times, Series: []ChartSeries{
			{Name: "in", Class: "s2", Values: mIn}, {Name: "out", Class: "s3", Values: mOut}}},
		{ID: "bytes", Title: "Bytes", Unit: "B/s", Times: times, Series: []ChartSeries{
			{Name: "in", Class: "s4", Values: bIn}, {Name: "out", Class: "s5", Values: bOut}}},
		{ID: "drops", Title: "Drops by reason, auth failures", Unit: "/s", Times: times, Series: dropSeries},
	}
}

// instanceMetrics is the dashboard alone, re-fetched every few seconds by
// aerie.js (data-refresh) with X-Partial; without it, the full page.
func (c *Console) instanceMetrics(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Partial") == "" {
		q := ""
		if rg := r.URL.Query().Get("range"); rg != "" {
			q = "?range=" + url.QueryEscape(rg)
		}
		seeOther(w, r, c.instancePath(orgFrom(r.Context()).ID, chi.URLParam(r, "inst"), q))
		return
	}
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	d, err := c.dashboard(r, in.OrgID, in.ID)
	if err != nil || d == nil {
		http.Error(w, "no metrics", http.StatusNotFound)
		return
	}
	c.render(w, r, http.StatusOK, DashboardRegion(*d))
}

func rangeHref(p Page, instID, key string) string {
	return p.OrgPath("/instances/" + instID + "?range=" + key)
}
