package billing

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrInvalidRange is returned for a metrics query whose range or step is
// unusable.
var ErrInvalidRange = errors.New("invalid range")

// Point is one step of an instance's usage: counters summed over the step,
// gauges as last reported within it (ConnectionsMax the highest).
type Point struct {
	Time              time.Time        `json:"time"`
	Connects          int64            `json:"connects"`
	AuthFailures      int64            `json:"auth_failures"`
	MessagesIn        int64            `json:"messages_in"`
	MessagesOut       int64            `json:"messages_out"`
	BytesIn           int64            `json:"bytes_in"`
	BytesOut          int64            `json:"bytes_out"`
	ConnectionSeconds int64            `json:"connection_seconds"`
	Drops             map[string]int64 `json:"drops"`
	Connections       int64            `json:"connections"`
	ConnectionsMax    int64            `json:"connections_max"`
	Subscriptions     int64            `json:"subscriptions"`
	Retained          int64            `json:"retained"`
	StoredBytes       int64            `json:"stored_bytes"`
	MessagesForwarded int64            `json:"messages_forwarded"`
}

// MaxPoints bounds one query's answer.
const MaxPoints = 2000

// MaxStep is the widest step a series may have (366 days).
const MaxStep = 366 * 24 * time.Hour

// Series answers an instance's usage between from and to in steps of step,
// reading the finest kept resolution that divides step. Only the given org's
// data is read: another org's instance yields no points. Steps with no
// report are present with zero counters, so charts show gaps as zero.
func (m *Meter) Series(ctx context.Context, orgID, instanceID string, from, to time.Time, step time.Duration, now time.Time) ([]Point, error) {
	if !to.After(from) {
		return nil, fmt.Errorf("%w: to must be after from", ErrInvalidRange)
	}
	if step < 10*time.Second || step%(10*time.Second) != 0 {
		return nil, fmt.Errorf("%w: step must be a multiple of 10s", ErrInvalidRange)
	}
	if step > MaxStep {
		return nil, fmt.Errorf("%w: step must be at most %s", ErrInvalidRange, MaxStep)
	}
	from, to = from.UTC().Truncate(step), to.UTC()
	// In whole seconds: time.Time.Sub saturates at 292 years, which would
	// let a range of millennia through with a large step.
	if n := (to.Unix() - from.Unix()) / int64(step/time.Second); n > MaxPoints {
		return nil, fmt.Errorf("%w: %d points requested, at most %d", ErrInvalidRange, n, MaxPoints)
	}
	src := time.Duration(0)
	for _, s := range steps {
		if step%s.Step == 0 && !from.Before(now.Add(-s.Keep)) {
			src = s.Step
		}
	}
	if src == 0 {
		// Past every retention that divides step: use the coarsest that divides.
		for _, s := range steps {
			if step%s.Step == 0 {
				src = s.Step
			}
		}
	}
	rows, err := m.db.Query(ctx, `
SELECT date_bin(make_interval(secs => $4), bucket_start, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS t,
	sum(connects), sum(auth_failures), sum(messages_in), sum(messages_out), sum(bytes_in), sum(bytes_out),
	sum(connection_seconds), sum(drops_acl), sum(drops_quota), sum(drops_queue_full), sum(drops_too_large),
	sum(drops_expired), sum(drops_other),
	(array_agg(connections ORDER BY gauge_at DESC NULLS LAST))[1], max(connections_max),
	(array_agg(subscriptions ORDER BY gauge_at DESC NULLS LAST))[1],
	(array_agg(retained ORDER BY gauge_at DESC NULLS LAST))[1],
	(array_agg(stored_bytes ORDER BY gauge_at DESC NULLS LAST))[1], sum(messages_forwarded)
FROM usage_buckets
WHERE org_id = $1 AND instance_id = $2 AND step_seconds = $3 AND bucket_start >= $5 AND bucket_start < $6
GROUP BY t ORDER BY t`, orgID, instanceID, int(src/time.Second), step.Seconds(), from, to)
	if err != nil {
		return nil, fmt.Errorf("query usage: %w", err)
	}
	defer rows.Close()
	got := map[time.Time]Point{}
	for rows.Next() {
		var p Point
		var acl, quota, full, large, expired, other int64
		if err := rows.Scan(&p.Time, &p.Connects, &p.AuthFailures, &p.MessagesIn, &p.MessagesOut, &p.BytesIn, &p.BytesOut,
			&p.ConnectionSeconds, &acl, &quota, &full, &large, &expired, &other,
			&p.Connections, &p.ConnectionsMax, &p.Subscriptions, &p.Retained, &p.StoredBytes, &p.MessagesForwarded); err != nil {
			return nil, fmt.Errorf("query usage: %w", err)
		}
		p.Drops = map[string]int64{"acl": acl, "quota": quota, "queue_full": full, "too_large": large, "expired": expired, "other": other}
		got[p.Time.UTC()] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query usage: %w", err)
	}
	var out []Point
	for t := from; t.Before(to); t = t.Add(step) {
		p, ok := got[t]
		if !ok {
			p = Point{Time: t, Drops: map[string]int64{"acl": 0, "quota": 0, "queue_full": 0, "too_large": 0, "expired": 0, "other": 0}}
		}
		p.Time = t
		out = append(out, p)
	}
	return out, nil
}
