package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
)

// Quota enforcement. Each instance's quotas come from the pushed config and
// apply on this node; a change applies at once to live connections (the
// limiters are adjusted in place, nobody reconnects). A zero quota means
// unlimited. Each quota has one owner: the connection quotas are applied
// here at CONNECT (admitConnection); the publish quotas by the admission
// of every publish (admit.go), the retained-message count being the
// store's (store.RetainedFull, told of changes by retention.go); the
// packet size by packetsize.go; the subscription and topic-level quotas
// when a SUBSCRIBE is read (mount.go); the backlog quota by the sessions
// hook (dataplane/sessions), which reads it at each check.
//
// Reason codes (MQTT 5 / 3.1.1):
//   - max_connections: CONNACK 0x97 / 0x03
//   - max_connects_per_second: CONNACK 0x9F / 0x03
//   - max_publish_per_second (instance), …_per_client, max_bytes_per_second:
//     back-pressure, never a drop: a publish that finds its token buckets
//     empty holds the client's read loop until the tokens come (the node
//     reads that socket more slowly, TCP slows the client down), whatever
//     its QoS and protocol version. A client held back continuously for
//     longer than max_throttle_seconds (default 30) gets DISCONNECT 0x96
//     (v5) or is closed (v3.1.1); the publish it was held on is not
//     acknowledged (not stored, not counted as in; counted as a quota drop)
//   - max_payload_bytes: DISCONNECT 0x95 (v5) / close (v3.1.1), counted too_large
//   - max_subscriptions_per_client: SUBACK 0x97 / 0x80
//   - max_topic_levels: DISCONNECT 0x90 topic name invalid (publish), SUBACK 0x87 / 0x80 (filter)
//   - max_retained_messages: a new retained topic beyond it: MQTT 5 QoS≥1
//     PUBACK 0x97 (refused: not stored, counted quota); QoS 0 and v3.1.1
//     (which cannot be told) are published but not retained. The count is
//     the store's, exact after every set, clear, expiry and instance delete
//   - max_backlog_seconds: a connected client behind for longer gets
//     DISCONNECT 0x97 (the sessions hook)
//   - max_session_expiry_seconds: the session expiry is capped (announced in the v5 CONNACK)
//   - max_inflight: caps how many QoS≥1 messages are in flight to a client

// defaultMaxThrottle bounds how long a client may be held back
// continuously when its instance sets no max_throttle_seconds.
const defaultMaxThrottle = 30 * time.Second

// throttleBound is how long a client may be held back continuously.
func throttleBound(q config.Quotas) time.Duration {
	if q.MaxThrottleSeconds > 0 {
		return time.Duration(q.MaxThrottleSeconds) * time.Second
	}
	return defaultMaxThrottle
}

// instanceLimits is one instance's shared quota state on this node.
type instanceLimits struct {
	conns atomic.Int64 // live connections

	mu sync.Mutex
	q  config.Quotas
	// The buckets are replaced (full) when the quotas change.
	connects atomic.Pointer[rate.Limiter]
	publish  atomic.Pointer[rate.Limiter]
	bytes    atomic.Pointer[rate.Limiter]
}

// limiter returns a token bucket refilling perSec a second with room for
// burst; perSec ≤ 0 is unlimited.
func limiter(perSec, burst int) *rate.Limiter {
	if perSec <= 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(perSec), max(burst, 1))
}

func bytesBurst(q config.Quotas) int {
	return max(int(q.MaxBytesPerSecond), q.MaxPayloadBytes)
}

func newInstanceLimits(q config.Quotas) *instanceLimits {
	l := &instanceLimits{q: q}
	l.buckets(q)
	return l
}

func (l *instanceLimits) buckets(q config.Quotas) {
	l.connects.Store(limiter(q.MaxConnectsPerSecond, q.MaxConnectsPerSecond))
	l.publish.Store(limiter(q.MaxPublishPerSecond, q.MaxPublishPerSecond))
	l.bytes.Store(limiter(int(q.MaxBytesPerSecond), bytesBurst(q)))
}

func (l *instanceLimits) set(q config.Quotas) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.q == q {
		return
	}
	l.q = q
	l.buckets(q)
}

func (l *instanceLimits) quotas() config.Quotas {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.q
}

// quotaTable holds the limits of every instance seen on this node.
type quotaTable struct {
	mu sync.Mutex
	by map[string]*instanceLimits
	// nodes is the live-node count of the node's cell (0 or 1: not in a
	// cell); instance-wide rates are divided by it (cellquota.go).
	nodes atomic.Int32
}

// get returns the instance's limits, or nil.
func (t *quotaTable) get(id string) *instanceLimits {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.by[id]
}

// of returns the instance's limits, brought up to q (its cell share).
func (t *quotaTable) of(id string, q config.Quotas) *instanceLimits {
	q = cellShare(q, int(t.nodes.Load()))
	t.mu.Lock()
	l, ok := t.by[id]
	if !ok {
		if t.by == nil {
			t.by = map[string]*instanceLimits{}
		}
		l = newInstanceLimits(q)
		t.by[id] = l
	}
	t.mu.Unlock()
	if ok {
		l.set(q)
	}
	return l
}

func (t *quotaTable) ids() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.by))
	for id := range t.by {
		out = append(out, id)
	}
	return out
}

// clientLimits is one connection's own quota state.
type clientLimits struct {
	publish   atomic.Pointer[rate.Limiter]
	perSec    atomic.Int64 // the per-client publish quota publish was built for
	maxLevels atomic.Int32
	maxSubs   atomic.Int32
	// heldSince is when the client's current run of held-back publishes
	// began (0: its last publish found its tokens). Only the client's own
	// reader touches it.
	heldSince time.Time
	// quotaRefused holds, per SUBSCRIBE packet ID, the filter positions
	// refused for the subscription quota (their SUBACK code becomes 0x97).
	mu           sync.Mutex
	quotaRefused map[uint16][]int
	// expiryCapped is the session expiry to announce in the CONNACK (v5)
	// when the quota lowered the client's.
	expiryCapped atomic.Int64
}

func newClientLimits(q config.Quotas) *clientLimits {
	c := &clientLimits{}
	c.perSec.Store(-1)
	c.apply(q)
	c.expiryCapped.Store(-1)
	return c
}

func (c *clientLimits) apply(q config.Quotas) {
	if n := int64(q.MaxPublishPerSecondPerClient); c.perSec.Swap(n) != n {
		c.publish.Store(limiter(q.MaxPublishPerSecondPerClient, q.MaxPublishPerSecondPerClient))
	}
	c.maxLevels.Store(int32(q.MaxTopicLevels))
	c.maxSubs.Store(int32(q.MaxSubscriptionsPerClient))
}

// admitConnection applies the connection quotas to a device that passed
// authentication. It returns the refusal code, or CodeSuccess with the
// connection counted against the instance.
func (h *tenantHook) admitConnection(cl *mqtt.Client, c *conn, q config.Quotas) packets.Code {
	lim := h.limits.of(c.instance, q)
	c.lim = lim
	c.cl = newClientLimits(q)
	if !lim.connects.Load().Allow() {
		return packets.ErrConnectionRateExceeded
	}
	// A device replacing its own session (same client ID) is not an extra
	// connection: the old one is about to go.
	_, takeover := h.srv.Clients.Get(c.mount + cl.ID)
	if n := lim.conns.Add(1); q.MaxConnections > 0 && n+h.peerConnections(c.instance) > int64(q.MaxConnections) && !takeover {
		lim.conns.Add(-1)
		return packets.ErrQuotaExceeded
	}
	c.counted.Store(true)
	// Session expiry cap.
	if limit := uint32(q.MaxSessionExpirySeconds); limit > 0 {
		if cl.Properties.ProtocolVersion == 5 {
			if cl.Properties.Props.SessionExpiryInterval > limit {
				cl.Properties.Props.SessionExpiryInterval = limit
				cl.Properties.Props.SessionExpiryIntervalFlag = true
				c.cl.expiryCapped.Store(int64(limit))
			}
		} else if !cl.Properties.Clean {
			// 3.1.1 persistent sessions have no expiry of their own; the
			// store keeps them for the instance's cap.
			cl.Properties.Props.SessionExpiryInterval = limit
		}
	}
	// In-flight cap towards the device.
	if m := int32(q.MaxInflight); m > 0 {
		if rm := int32(cl.Properties.Props.ReceiveMaximum); rm == 0 || rm > m {
			cl.Properties.Props.ReceiveMaximum = uint16(m)
			cl.State.Inflight.ResetSendQuota(m)
		}
	}
	return packets.CodeSuccess
}

// releaseConnection takes a closed connection off its instance's count.
func (c *conn) releaseConnection() {
	if c.lim != nil && c.counted.CompareAndSwap(true, false) {
		c.lim.conns.Add(-1)
	}
}

// reserve takes one publish of size payload bytes from the buckets that
// apply to it (the client's messages, the instance's messages and bytes)
// and returns the reservations and how long until all of them are due.
func reserve(now time.Time, size int, buckets ...*rate.Limiter) ([]*rate.Reservation, time.Duration) {
	rs := make([]*rate.Reservation, 0, len(buckets))
	var wait time.Duration
	for i, b := range buckets {
		n := 1
		if i == len(buckets)-1 { // the bytes bucket
			n = size
			if b.Limit() != rate.Inf {
				n = min(n, b.Burst()) // a payload beyond a second's bytes waits a full second
			}
		}
		r := b.ReserveN(now, n)
		rs = append(rs, r)
		if d := r.DelayFrom(now); d > wait {
			wait = d
		}
	}
	return rs, wait
}

func cancelAll(now time.Time, rs []*rate.Reservation) {
	for _, r := range rs {
		r.CancelAt(now)
	}
}

// refreshQuotas brings the limiters of an instance (all instances when id
// is "") and of its live connections to the pushed quotas.
func (h *tenantHook) refreshQuotas(id string) {
	ids := []string{id}
	if id == "" {
		ids = h.limits.ids()
	}
	for _, id := range ids {
		inst, ok := h.state.Instance(id)
		if !ok {
			continue
		}
		q := effectiveQuotas(inst)
		h.limits.of(id, q)
		h.mu.RLock()
		for _, c := range h.conns {
			if c.instance == id && c.cl != nil {
				c.cl.apply(q)
			}
		}
		h.mu.RUnlock()
	}
}

// effectiveQuotas are the instance's quotas as enforced now (throttled
// while a billing limit says so).
func effectiveQuotas(inst config.Instance) config.Quotas {
	if inst.Limited == config.LimitThrottle {
		return config.Throttled(inst.Quotas)
	}
	return inst.Quotas
}

// quotaChange reports whether a config change may have changed quotas.
func quotaChange(ch configsync.Change) bool {
	switch ch.Kind {
	case config.KindQuotasPut, config.KindInstancePut, config.KindInstanceStatus, config.KindSnapshot:
		return true
	}
	return false
}
