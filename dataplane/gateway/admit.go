package gateway

import (
	"github.com/aeriemq/aerie/internal/mqtttopic"

	"context"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"

	"github.com/aeriemq/aerie/dataplane/config"
)

// Publish admission. One function, admit, decides every publish that
// enters an instance, whoever sends it: a device over MQTT (OnPublish
// below), the instance's own server over HTTP (publish.go), and the
// consumer and forwarding paths to come. Its stages, in order:
//
//	status → topic (ACL, token scopes, strict topics) → quotas (size, retained, rate) → counted
//
//   - status: a device's connection stands for its instance's status (it
//     is checked at CONNECT, and the connection is closed when the
//     instance stops, is suspended or deleted: tenant.go onChange); the
//     instance's server is checked at each publish.
//   - topic: device rules (ACL, token scopes, strict topics and topic
//     policies, acl.go and topicpolicy.go) bind devices; their topic name
//     was checked when the packet was read (mount.go). The instance's
//     server publishes as the instance: only its topic name is checked.
//   - quotas: max_payload_bytes; max_retained_messages, asked of the store,
//     which owns the count (store.RetainedFull); the rate quotas, met with
//     back-pressure on the publisher's goroutine (takeTokens).
//   - counted: a refusal is counted here as a drop by reason; an admitted
//     message is counted once stored or fanned out (metrics.go).
//
// Callers differ only in how they report a refusal: an MQTT reason code
// (or a silent drop to a device that cannot be told, refuseDevice) or a
// config.PublishResult (refuseHTTP).

// refusal is why admit did not admit a publish.
type refusal uint8

const (
	admitted         refusal = iota
	refusedUnserved          // the instance is not on this node
	refusedStopped           // the instance is not running
	refusedSuspended         // the instance's org is over its spend limit
	refusedTopic             // not a topic name of the instance
	refusedQoS               // a QoS other than 0, 1, 2
	refusedACL               // ACL, token scope, strict topics or a topic's policy
	refusedTooLarge          // max_payload_bytes
	refusedRetained          // max_retained_messages (a publisher that can be told)
	refusedRate              // held back by the rate quotas for longer than it may be
	refusedGone              // the publisher went away (connection closed, request ended)
)

// publish is one publish asking to enter an instance.
type publish struct {
	instance string
	topic    string // as the publisher names it (for a device: set by admit)
	mounted  string // inside the node, under the instance's mount (for the server: set by admit)
	qos      byte
	retain   bool
	size     int // payload bytes

	// A device: its client and connection.
	cl *mqtt.Client
	c  *conn
	// The instance's server: its request.
	ctx context.Context

	// Set by admit.
	lim      *instanceLimits // nil: no quotas (a connection without quota state)
	q        config.Quotas   // the quotas admit applied
	status   string          // the instance's status (refusedStopped)
	unretain bool            // over the retained quota, and the publisher cannot be told: deliver, do not retain
}

// devicePublish is a device's PUBLISH as admit sees it.
func devicePublish(cl *mqtt.Client, c *conn, pk *packets.Packet) publish {
	return publish{instance: c.instance, mounted: pk.TopicName, qos: pk.FixedHeader.Qos, retain: pk.FixedHeader.Retain,
		size: len(pk.Payload), cl: cl, c: c}
}

// serverPublish is an HTTP publish of the instance's server.
func serverPublish(ctx context.Context, p config.Publish) publish {
	return publish{instance: p.InstanceID, topic: p.Topic, qos: p.QoS, retain: p.Retain, size: len(p.Payload), ctx: ctx}
}

// admit decides whether a publish may enter its instance (see above). It
// may wait for rate tokens on the caller's goroutine.
func (h *tenantHook) admit(p *publish) refusal {
	if r := h.admitStatus(p); r != admitted {
		return r
	}
	if r := h.admitTopic(p); r != admitted {
		return r
	}
	if p.lim == nil {
		return admitted
	}
	if p.q.MaxPayloadBytes > 0 && p.size > p.q.MaxPayloadBytes {
		h.drop(p.instance, DropTooLarge)
		return refusedTooLarge
	}
	if p.retain && p.size > 0 && h.retainedFull(p.instance, p.mounted) {
		if !p.toldOfRetained() {
			p.unretain = true // delivered, not retained: never acknowledged and then dropped
		} else {
			h.drop(p.instance, DropQuota)
			return refusedRetained // not stored, not counted as in
		}
	}
	return h.takeTokens(p)
}

// admitStatus checks the instance serves publishes and picks the quotas
// that apply.
func (h *tenantHook) admitStatus(p *publish) refusal {
	if p.c != nil {
		if p.lim = p.c.lim; p.lim != nil {
			p.q = p.lim.quotas()
		}
		return admitted
	}
	if p.ctx.Err() != nil {
		return refusedGone
	}
	if h.state == nil {
		return refusedUnserved
	}
	inst, ok := h.state.Instance(p.instance)
	switch {
	case !ok:
		return refusedUnserved
	case inst.Status != config.StatusRunning && inst.Status != config.StatusProvisioning:
		p.status = inst.Status
		return refusedStopped
	case inst.Limited == config.LimitSuspend:
		return refusedSuspended
	}
	p.q = effectiveQuotas(inst)
	p.lim = h.limits.of(p.instance, p.q)
	return admitted
}

// admitTopic applies the device rules to a device's topic, and checks the
// topic name and QoS of the instance's server.
func (h *tenantHook) admitTopic(p *publish) refusal {
	if p.c == nil {
		if !mqtttopic.ValidTopic(p.topic, p.q.MaxTopicLevels) {
			h.drop(p.instance, DropACL)
			return refusedTopic
		}
		if p.qos > 2 {
			return refusedQoS
		}
		p.mounted = mqtttopic.Mount(p.instance+"/", p.topic)
		return admitted
	}
	t, ok := mqtttopic.Unmount(p.c.mount, p.mounted)
	if !ok || !h.allowed(p.c, config.ActionPublish, t, false) || !h.topicAllowed(p.instance, t, p.qos, p.retain, p.size) {
		h.drop(p.instance, DropACL)
		return refusedACL
	}
	p.topic = t
	return admitted
}

// retainedFull asks the store, which owns the retained count and quota,
// whether a new retained topic would exceed it. Without a store (tests)
// retained messages live in mochi's memory only and are not counted.
func (h *tenantHook) retainedFull(instance, mounted string) bool {
	return h.store != nil && h.store.RetainedFull(instance, mounted)
}

// toldOfRetained reports whether the publisher can be told its retained
// publish was refused: MQTT 5 QoS ≥ 1 (PUBACK 0x97) and the instance's
// server. MQTT 3.1.1 and QoS 0 cannot.
func (p *publish) toldOfRetained() bool {
	return p.c == nil || p.cl.Properties.ProtocolVersion == 5 && p.qos > 0
}

// takeTokens meets the rate quotas with back-pressure: it reserves the
// publish's tokens (a device's own messages, the instance's messages and
// bytes) and waits until they are due, on the publisher's goroutine. A
// publisher that would be held back for longer than it may be is refused
// (a device: continuously for max_throttle_seconds; the instance's server:
// httpMaxWait), and so is one gone while it waited.
func (h *tenantHook) takeTokens(p *publish) refusal {
	now := h.now()
	var rs []*rate.Reservation
	var wait time.Duration
	if p.c != nil {
		rs, wait = reserve(now, p.size, p.c.cl.publish.Load(), p.lim.publish.Load(), p.lim.bytes.Load())
	} else {
		rs, wait = reserve(now, p.size, p.lim.publish.Load(), p.lim.bytes.Load())
	}
	if wait <= 0 {
		if p.c != nil {
			p.c.cl.heldSince = time.Time{}
		}
		return admitted
	}
	if p.heldTooLong(now, wait) {
		cancelAll(now, rs)
		if p.gone() {
			return refusedGone // its publish was never acknowledged: it sends it again
		}
		h.drop(p.instance, DropQuota)
		return refusedRate
	}
	if h.metrics != nil {
		h.metrics.throttled(p.instance, wait)
	}
	if !p.hold(wait) {
		cancelAll(h.now(), rs)
		return refusedGone
	}
	return admitted
}

// heldTooLong reports whether waiting wait more would hold the publisher
// back for longer than it may be.
func (p *publish) heldTooLong(now time.Time, wait time.Duration) bool {
	if p.c == nil {
		return wait > httpMaxWait
	}
	cl := p.c.cl // only the client's own reader touches heldSince
	if cl.heldSince.IsZero() {
		cl.heldSince = now
	}
	return now.Add(wait).Sub(cl.heldSince) > throttleBound(p.q)
}

// hold waits for wait, and reports false if the publisher went away
// meanwhile.
func (p *publish) hold(wait time.Duration) bool {
	if p.c == nil {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-p.ctx.Done():
			return false
		}
	}
	// Sleep in slices so that a connection closed meanwhile stops waiting.
	for end := time.Now().Add(wait); ; {
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		if p.cl.Closed() {
			return false
		}
		time.Sleep(min(left, 100*time.Millisecond))
	}
}

// gone reports whether the publisher went away.
func (p *publish) gone() bool {
	if p.c == nil {
		return p.ctx.Err() != nil
	}
	return p.cl.Closed()
}

// OnPublish admits a device's publish. A refusal is answered by
// refuseDevice; an admitted publish over the retained quota that the
// device cannot be told of is delivered without being retained.
func (h *tenantHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || h.replayed != nil && h.replayed(cl, pk) {
		return pk, nil // checked when first read (or the node's own)
	}
	c := h.get(cl)
	if c == nil {
		return pk, packets.ErrRejectPacket
	}
	p := devicePublish(cl, c, &pk)
	if r := h.admit(&p); r != admitted {
		return pk, h.refuseDevice(cl, c, &pk, r)
	}
	if p.unretain {
		pk.FixedHeader.Retain = false
	}
	return pk, nil
}

// refuseDevice answers a device's refused publish:
//   - ACL, token scope, strict topics: MQTT 5 QoS ≥ 1 PUBACK 0x87; anything
//     else is acknowledged and dropped;
//   - max_retained_messages: PUBACK 0x97;
//   - max_payload_bytes: DISCONNECT 0x95, rate held back too long: 0x96
//     (MQTT 3.1.1: closed); the publish is neither acknowledged nor stored.
func (h *tenantHook) refuseDevice(cl *mqtt.Client, c *conn, pk *packets.Packet, r refusal) error {
	v5ack := cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0
	var code packets.Code
	switch r {
	case refusedACL:
		if v5ack {
			return packets.ErrNotAuthorized
		}
		h.logRefused(cl, c, packets.Publish, packets.ErrNotAuthorized)
		return packets.CodeSuccessIgnore
	case refusedRetained:
		code = packets.ErrQuotaExceeded
	case refusedTooLarge:
		code = packets.ErrPacketTooLarge
	case refusedRate:
		code = packets.ErrMessageRateTooHigh
	default: // gone
		return packets.ErrRejectPacket
	}
	if cl.Closed() {
		return packets.ErrRejectPacket
	}
	if r == refusedRetained {
		if v5ack {
			return code
		}
		h.logRefused(cl, c, packets.Publish, code)
		return packets.CodeSuccessIgnore
	}
	h.log.Info("closing a connection over its quota", "instance", c.instance, "client", c.clientID, "packet_type", "PUBLISH", "reason", code.Reason)
	if cl.Properties.ProtocolVersion == 5 {
		// On the client's read goroutine: the DISCONNECT must not be lost
		// to a reset while the client is still sending.
		_ = h.srv.DisconnectClientLingering(cl, code, disconnectLinger)
	} else {
		cl.Stop(code)
	}
	return packets.ErrRejectPacket
}
