package forward

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aeriemq/aerie/dataplane/config"
)

// DrainUsage returns each instance's forwarded traffic since the last call
// (usagereport.Source): forwarded messages are outgoing messages and bill
// as message units like deliveries to devices.
func (s *Service) DrainUsage() []config.InstanceUsage {
	s.mu.Lock()
	ids := make([]string, 0, len(s.usage))
	us := make([]*usage, 0, len(s.usage))
	for id, u := range s.usage {
		ids = append(ids, id)
		us = append(us, u)
	}
	s.mu.Unlock()
	var out []config.InstanceUsage
	for i, u := range us {
		n := u.msgs.Swap(0)
		b, units := u.bytes.Swap(0), u.units.Swap(0)
		if n == 0 {
			continue
		}
		out = append(out, config.InstanceUsage{InstanceID: ids[i], MessagesForwarded: n, MessagesOut: n, BytesOut: b, MessageUnitsOut: units})
	}
	return out
}

// Collector exposes the rules' counters, lag and dead letters on /metrics.
func (s *Service) Collector() prometheus.Collector {
	c := &collector{s: s, descs: map[string]*prometheus.Desc{}}
	for _, m := range []struct{ name, help string }{
		{"aerie_rule_delivered_total", "Messages a forwarding rule delivered."},
		{"aerie_rule_failed_total", "Delivery attempts of a forwarding rule that failed."},
		{"aerie_rule_retries_total", "Delivery attempts of a forwarding rule that were retries."},
		{"aerie_rule_dead_lettered_total", "Messages a forwarding rule gave up on (moved to its dead-letter list)."},
		{"aerie_rule_dead_letters", "Messages in a forwarding rule's dead-letter list."},
		{"aerie_rule_lag_messages", "Messages matching a forwarding rule not delivered yet (counted up to 10000)."},
		{"aerie_rule_lag_seconds", "Age of the oldest message a forwarding rule has not delivered yet."},
	} {
		c.descs[m.name] = prometheus.NewDesc(m.name, m.help, []string{"aerie_instance", "rule"}, nil)
	}
	return c
}

type collector struct {
	s     *Service
	descs map[string]*prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	keys := make([]ruleKey, 0, len(c.s.runners))
	for k := range c.s.runners {
		keys = append(keys, k)
	}
	c.s.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool { return keys[i].instance+keys[i].rule < keys[j].instance+keys[j].rule })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, k := range keys {
		st := c.s.status(ctx, k.instance, k.rule)
		for name, v := range map[string]float64{
			"aerie_rule_delivered_total": float64(st.Delivered), "aerie_rule_failed_total": float64(st.Failed),
			"aerie_rule_retries_total": float64(st.Retries), "aerie_rule_dead_lettered_total": float64(st.DeadLettered),
			"aerie_rule_dead_letters": float64(st.DeadLetters), "aerie_rule_lag_messages": float64(st.LagMessages),
			"aerie_rule_lag_seconds": st.LagSeconds,
		} {
			typ := prometheus.GaugeValue
			if strings.HasSuffix(name, "_total") {
				typ = prometheus.CounterValue
			}
			ch <- prometheus.MustNewConstMetric(c.descs[name], typ, v, k.instance, k.rule)
		}
	}
}
