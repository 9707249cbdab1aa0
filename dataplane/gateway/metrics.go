package gateway

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/aeriemq/aerie/dataplane/config"
)

// Drop reasons counted per instance.
const (
	DropACL       = "acl"
	DropQuota     = "quota"
	DropQueueFull = "queue_full"
	DropTooLarge  = "too_large"
	DropExpired   = "expired"
)

// messageUnit is the payload size one billed message unit covers.
const messageUnit = 5 * 1024

func units(payload int) int64 {
	if payload <= messageUnit {
		return 1
	}
	return int64((payload + messageUnit - 1) / messageUnit)
}

// counters are one instance's usage since the last drain, plus its gauges.
type counters struct {
	connects, authFailures, msgsIn, msgsOut, bytesIn, bytesOut, unitsIn, unitsOut atomic.Int64
	drops                                                                         sync.Map // reason → *atomic.Int64
	connections, subscriptions                                                    atomic.Int64
}

func (c *counters) drop(reason string) {
	v, _ := c.drops.LoadOrStore(reason, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Metrics counts each instance's traffic: exposed for Prometheus with an
// "aerie_instance" label (not "instance", Prometheus's own target label;
// aerie_instance_info maps it to its org), and drained as usage deltas for
// the control plane. Series of an instance no longer on the node are
// removed at each scrape.
type Metrics struct {
	mu        sync.RWMutex
	inst      map[string]*counters
	lastDrain time.Time
	now       func() time.Time
	retained  func() map[string]int64
	stored    func(instance string) int64 // bytes the store holds for the instance (gauge)
	total     atomic.Int64                // messages in and out since start
	// placed lists the instances on the node with their org (nil: keep
	// every series).
	placed func() map[string]string
	// topicStored is each instance's stored bytes by provisioned topic ID
	// (gauges; topicusage.go), lastTopics what the last drain saw.
	topicStored func() map[string]map[string]int64
	// peerConns is an instance's connections on the cell's other nodes
	// (nil outside a cell).
	peerConns  func(instance string) int64
	lastTopics map[string]map[string]int64

	reg                                                *prometheus.Registry
	connections, subscriptions, retainedG              *prometheus.GaugeVec
	connects, authFailures, msgsIn, msgsOut, bIn, bOut *prometheus.CounterVec
	dropsC                                             *prometheus.CounterVec
	info                                               *prometheus.GaugeVec
	throttledC                                         *prometheus.CounterVec
}

func newMetrics(retained func() map[string]int64) *Metrics {
	m := &Metrics{inst: map[string]*counters{}, now: time.Now, retained: retained, reg: prometheus.NewRegistry()}
	m.lastDrain = m.now()
	gauge := func(name, help string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "aerie", Name: name, Help: help}, []string{"aerie_instance"})
		m.reg.MustRegister(g)
		return g
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "aerie", Name: name, Help: help}, append([]string{"aerie_instance"}, labels...))
		m.reg.MustRegister(c)
		return c
	}
	m.connections = gauge("connections", "Connected MQTT clients.")
	m.subscriptions = gauge("subscriptions", "Active subscriptions.")
	m.retainedG = gauge("retained_messages", "Retained messages.")
	m.connects = counter("connects_total", "Accepted MQTT connections.")
	m.authFailures = counter("auth_failures_total", "Refused MQTT connections.")
	m.msgsIn = counter("messages_in_total", "PUBLISH packets accepted from clients.")
	m.msgsOut = counter("messages_out_total", "PUBLISH packets sent to clients.")
	m.bIn = counter("bytes_in_total", "Payload bytes accepted from clients.")
	m.bOut = counter("bytes_out_total", "Payload bytes sent to clients.")
	m.dropsC = counter("drops_total", "Messages dropped, by reason.", "reason")
	m.info = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "aerie", Name: "instance_info",
		Help: "1 for each instance placed on this node, with its org."}, []string{"aerie_instance", "org"})
	m.reg.MustRegister(m.info)
	m.throttledC = counter("publish_throttled_seconds_total", "Time publishers were held back by rate quotas (back-pressure).")
	return m
}

func (m *Metrics) of(instance string) *counters {
	m.mu.RLock()
	c := m.inst[instance]
	m.mu.RUnlock()
	if c != nil {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c = m.inst[instance]; c == nil {
		c = &counters{}
		m.inst[instance] = c
	}
	return c
}

func (m *Metrics) connected(instance string, delta int64) {
	m.of(instance).connections.Add(delta)
	m.connections.WithLabelValues(instance).Add(float64(delta))
	if delta > 0 {
		m.of(instance).connects.Add(1)
		m.connects.WithLabelValues(instance).Inc()
	}
}

func (m *Metrics) authFailure(instance string) {
	if instance == "" {
		instance = "unknown"
	}
	m.of(instance).authFailures.Add(1)
	m.authFailures.WithLabelValues(instance).Inc()
}

func (m *Metrics) in(instance string, payload int) {
	c := m.of(instance)
	m.total.Add(1)
	c.msgsIn.Add(1)
	c.bytesIn.Add(int64(payload))
	c.unitsIn.Add(units(payload))
	m.msgsIn.WithLabelValues(instance).Inc()
	m.bIn.WithLabelValues(instance).Add(float64(payload))
}

func (m *Metrics) out(instance string, payload int) {
	c := m.of(instance)
	m.total.Add(1)
	c.msgsOut.Add(1)
	c.bytesOut.Add(int64(payload))
	c.unitsOut.Add(units(payload))
	m.msgsOut.WithLabelValues(instance).Inc()
	m.bOut.WithLabelValues(instance).Add(float64(payload))
}

func (m *Metrics) dropped(instance, reason string) {
	m.of(instance).drop(reason)
	m.dropsC.WithLabelValues(instance, reason).Inc()
}

// throttled records a publisher held back for d by a rate quota.
func (m *Metrics) throttled(instance string, d time.Duration) {
	m.throttledC.WithLabelValues(instance).Add(d.Seconds())
}

func (m *Metrics) subscribed(instance string, delta int64) {
	m.of(instance).subscriptions.Add(delta)
	m.subscriptions.WithLabelValues(instance).Add(float64(delta))
}

// Handler serves the Prometheus text exposition.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m, promhttp.HandlerOpts{})
}

// Gather implements prometheus.Gatherer: it refreshes the retained-message
// gauges and the instance list, drops the series of instances no longer on
// the node, then gathers.
func (m *Metrics) Gather() ([]*dto.MetricFamily, error) {
	if m.retained != nil {
		for inst, n := range m.retained() {
			m.retainedG.WithLabelValues(inst).Set(float64(n))
		}
	}
	if m.placed != nil {
		placed := m.placed()
		m.info.Reset()
		for id, org := range placed {
			m.info.WithLabelValues(id, org).Set(1)
		}
		m.mu.RLock()
		var gone []string
		for id := range m.inst {
			if _, ok := placed[id]; !ok && id != "unknown" {
				gone = append(gone, id)
			}
		}
		m.mu.RUnlock()
		for _, id := range gone {
			l := prometheus.Labels{"aerie_instance": id}
			for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
				m.connections, m.subscriptions, m.retainedG, m.connects, m.authFailures, m.msgsIn, m.msgsOut, m.bIn, m.bOut, m.dropsC, m.throttledC} {
				v.DeletePartialMatch(l)
			}
		}
	}
	return m.reg.Gather()
}

// MessagesTotal counts the messages the node received and delivered since
// it started (for the GC tuner).
func (m *Metrics) MessagesTotal() int64 { return m.total.Load() }

// DrainUsage returns each instance's counters since the last call (and its
// gauges now) and resets the counters; connection-seconds are the
// connections held over the interval.
func (m *Metrics) DrainUsage() []config.InstanceUsage {
	now := m.now()
	m.mu.Lock()
	elapsed := now.Sub(m.lastDrain).Seconds()
	m.lastDrain = now
	insts := make(map[string]*counters, len(m.inst))
	for k, v := range m.inst {
		insts[k] = v
	}
	m.mu.Unlock()
	var retained map[string]int64
	if m.retained != nil {
		retained = m.retained()
	}
	stored := m.stored
	var topics map[string]map[string]int64
	if m.topicStored != nil {
		topics = m.topicStored()
		for id := range topics {
			if insts[id] == nil {
				insts[id] = &counters{} // quiet since the start: only its gauges
			}
		}
	}
	var out []config.InstanceUsage
	for id, c := range insts {
		if id == "unknown" {
			continue // refusals that named no instance belong to nobody's bill
		}
		u := config.InstanceUsage{InstanceID: id,
			Connects: c.connects.Swap(0), AuthFailures: c.authFailures.Swap(0),
			MessagesIn: c.msgsIn.Swap(0), MessagesOut: c.msgsOut.Swap(0),
			BytesIn: c.bytesIn.Swap(0), BytesOut: c.bytesOut.Swap(0),
			MessageUnitsIn: c.unitsIn.Swap(0), MessageUnitsOut: c.unitsOut.Swap(0),
			Connections: c.connections.Load(), Subscriptions: c.subscriptions.Load(), Retained: retained[id],
		}
		u.ConnectionSeconds = int64(float64(u.Connections)*elapsed + 0.5) // this node's: summed by the control plane
		if m.peerConns != nil {
			// A gauge keeps the latest report: in a cell every node
			// reports the instance's connections on the whole cell.
			u.Connections += m.peerConns(id)
		}
		if stored != nil {
			u.StoredBytes = stored(id)
		}
		c.drops.Range(func(k, v any) bool {
			if n := v.(*atomic.Int64).Swap(0); n > 0 {
				if u.Drops == nil {
					u.Drops = map[string]int64{}
				}
				u.Drops[k.(string)] = n
			}
			return true
		})
		active := u.Connects+u.AuthFailures+u.MessagesIn+u.MessagesOut+u.ConnectionSeconds+int64(len(u.Drops)) > 0
		u.TopicStoredBytes = topics[id]
		moved := m.topicsMoved(id, u.TopicStoredBytes)
		if active || u.Connections > 0 || u.Retained > 0 || moved {
			out = append(out, u)
		}
	}
	return out
}

// metricsHook feeds Metrics from mochi's events.
type metricsHook struct {
	mqtt.HookBase
	m      *Metrics
	tenant *tenantHook
}

func (h *metricsHook) ID() string { return "aerie-metrics" }

func (h *metricsHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablished, mqtt.OnPublished, mqtt.OnPacketSent,
		mqtt.OnPublishDropped, mqtt.OnSubscribed, mqtt.OnUnsubscribed}, []byte{b})
}

func (h *metricsHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if c := h.tenant.get(cl); c != nil {
		c.established.Store(true)
		c.since.Store(time.Now().UnixNano())
		h.m.connected(c.instance, 1)
	}
}

func (h *metricsHook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if pk.Ignore {
		return // refused (ACL, quota): counted as a drop
	}
	if h.tenant.replayed != nil && h.tenant.replayed(cl, pk) {
		return // a stored publish handed back: counted when stored (OnStored)
	}
	if cl.Net.Inline {
		if inst, _, ok := strings.Cut(pk.TopicName, "/"); ok {
			h.m.in(inst, len(pk.Payload))
		}
		return
	}
	if c := h.tenant.get(cl); c != nil {
		c.msgsIn.Add(1)
		h.m.in(c.instance, len(pk.Payload))
	}
}

func (h *metricsHook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	if c := h.tenant.get(cl); c != nil {
		c.msgsOut.Add(1)
		h.m.out(c.instance, len(pk.Payload))
	}
}

func (h *metricsHook) OnPublishDropped(cl *mqtt.Client, _ packets.Packet) {
	if c := h.tenant.get(cl); c != nil {
		h.m.dropped(c.instance, DropQueueFull)
	}
}

func (h *metricsHook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, reasonCodes []byte) {
	c := h.tenant.get(cl)
	if c == nil {
		return
	}
	var n int64
	for _, r := range reasonCodes {
		if r < 0x80 {
			n++
		}
	}
	c.subs.Add(n)
	h.m.subscribed(c.instance, n)
}

func (h *metricsHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	c := h.tenant.get(cl)
	if c == nil {
		return
	}
	n := int64(len(pk.Filters))
	if cur := c.subs.Load(); n > cur {
		n = cur
	}
	c.subs.Add(-n)
	h.m.subscribed(c.instance, -n)
}
