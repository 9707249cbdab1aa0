package console

import (
	"context"
	"net/http"
	"time"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/tenancy"
)

// Live numbers: the usage reports (every 10 s, the billing record) are
// completed with what the instance's node counted since its last report,
// so the dashboard's "now" numbers and current bucket move within moments
// of traffic. The meter is read first, then the node: a report landing in
// between can only make the sum briefly low, never count a message twice.

// addPending adds the node's not-yet-reported usage to the last (current)
// point and sets its connections to the node's live gauge. It returns the
// live connection count, or false when the node cannot be asked.
func (c *Console) addPending(ctx context.Context, in tenancy.Instance, pts []billing.Point) (int64, bool) {
	if c.nodes == nil || len(pts) == 0 {
		return 0, false
	}
	u, err := c.nodes.PendingUsage(ctx, in.NodeID, in.ID)
	if err != nil {
		return 0, false
	}
	p := &pts[len(pts)-1]
	p.Connects += u.Connects
	p.AuthFailures += u.AuthFailures
	p.MessagesIn += u.MessagesIn
	p.MessagesOut += u.MessagesOut
	p.BytesIn += u.BytesIn
	p.BytesOut += u.BytesOut
	for k, v := range u.Drops {
		if p.Drops == nil {
			p.Drops = map[string]int64{}
		}
		p.Drops[k] += v
	}
	p.Connections = u.Connections
	p.ConnectionsMax = max(p.ConnectionsMax, u.Connections)
	return u.Connections, true
}

// partialLast redraws the last point of the rate charts as a rate over the
// part of its step that has elapsed (the current bucket is partial: divided
// by the whole step it would read as a drop towards 0).
func partialLast(charts []ChartData, pts []billing.Point, step time.Duration, now time.Time) {
	if len(pts) == 0 {
		return
	}
	elapsed := now.Sub(pts[len(pts)-1].Time)
	if elapsed <= 0 || elapsed >= step {
		return
	}
	f := step.Seconds() / max(elapsed.Seconds(), 1)
	for ci := range charts {
		if charts[ci].ID == "connections" {
			continue
		}
		for si := range charts[ci].Series {
			v := charts[ci].Series[si].Values
			if len(v) > 0 {
				v[len(v)-1] *= f
			}
		}
		charts[ci].Partial = true
	}
}

// instanceStatus answers the instance's status badge alone (?part=state:
// the State panel's status line), for the pages' live refresh.
func (c *Console) instanceStatus(w http.ResponseWriter, r *http.Request) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	if r.URL.Query().Get("part") == "state" {
		c.render(w, r, http.StatusOK, stateStatus(in.Status))
		return
	}
	c.render(w, r, http.StatusOK, statusBadge(in.Status))
}
