package gateway

import (
	"context"
	"fmt"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/internal/mqtttopic"
)

// Publish publishes a message a tenant's server sent over HTTP (the node
// link's publish request) into its instance, as if a device of it had
// published it: same namespace, retained handling, store, delivery and
// usage counting, and the instance's quotas (payload size, publish and
// byte rates, retained count). Device ACLs do not apply.
func (g *Gateway) Publish(ctx context.Context, p config.Publish) config.PublishResult {
	return g.tenant.publishHTTP(ctx, p)
}

// httpClientID is the client ID (inside the instance's client-ID space) an
// instance's HTTP publishes come from. The inline client is not in mochi's
// client list, so a device choosing the same ID takes nothing over; its
// only effect is that a No Local subscription of that device skips them.
const httpClientID = "$http"

// httpMaxWait bounds how long an HTTP publish waits for its instance's rate
// quota before it is refused (429): the control plane holds the request
// open meanwhile.
const httpMaxWait = 500 * time.Millisecond

func (h *tenantHook) publishHTTP(ctx context.Context, p config.Publish) config.PublishResult {
	res := config.PublishResult{ID: p.ID}
	fail := func(code, format string, args ...any) config.PublishResult {
		res.Code, res.Message = code, fmt.Sprintf(format, args...)
		return res
	}
	if err := ctx.Err(); err != nil {
		return fail(config.PublishUnavailable, "node shutting down")
	}
	if h.state == nil {
		return fail(config.PublishUnavailable, "instance %s is not served by this node", p.InstanceID)
	}
	inst, ok := h.state.Instance(p.InstanceID)
	if !ok {
		return fail(config.PublishUnavailable, "instance %s is not served by this node", p.InstanceID)
	}
	if inst.Status != config.StatusRunning && inst.Status != config.StatusProvisioning {
		return fail(config.PublishUnavailable, "instance %s is %s", p.InstanceID, inst.Status)
	}
	if inst.Limited == config.LimitSuspend {
		return fail(config.PublishUnavailable, "instance %s is suspended: the org is over its spend limit", p.InstanceID)
	}
	q := effectiveQuotas(inst)
	if !mqtttopic.ValidTopic(p.Topic, q.MaxTopicLevels) {
		h.drop(p.InstanceID, DropACL)
		return fail(config.PublishInvalidTopic, "%q is not a topic name devices of this instance may publish to", p.Topic)
	}
	if p.QoS > 2 {
		return fail(config.PublishInvalidTopic, "qos %d: must be 0, 1 or 2", p.QoS)
	}
	if q.MaxPayloadBytes > 0 && len(p.Payload) > q.MaxPayloadBytes {
		h.drop(p.InstanceID, DropTooLarge)
		return fail(config.PublishTooLarge, "payload of %d bytes is over the instance's max_payload_bytes (%d)", len(p.Payload), q.MaxPayloadBytes)
	}
	mount := mqtttopic.MountOf(p.InstanceID)
	topic := mqtttopic.Mount(mount, p.Topic)
	if p.Retain && len(p.Payload) > 0 && q.MaxRetainedMessages > 0 {
		if _, exists := h.srv.Topics.Retained.Get(topic); !exists && h.retainedCount(mount) >= q.MaxRetainedMessages {
			h.drop(p.InstanceID, DropQuota)
			return fail(config.PublishRetainedFull, "the instance holds its maximum of %d retained messages", q.MaxRetainedMessages)
		}
	}
	// The instance's rate quotas: wait for the tokens (back-pressure, as for
	// devices) when they come within httpMaxWait, else refuse (429).
	lim := h.limits.of(p.InstanceID, q)
	now := h.now()
	rs, wait := reserve(now, len(p.Payload), lim.publish.Load(), lim.bytes.Load())
	if wait > httpMaxWait {
		cancelAll(now, rs)
		h.drop(p.InstanceID, DropQuota)
		return fail(config.PublishRateLimited, "the instance's publish rate quota is used up; retry in a second")
	}
	if wait > 0 {
		if h.metrics != nil {
			h.metrics.throttled(p.InstanceID, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			cancelAll(h.now(), rs)
			return fail(config.PublishUnavailable, "node shutting down")
		}
	}
	cl := h.httpClient(p.InstanceID)
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: p.QoS, Retain: p.Retain},
		TopicName:   topic,
		Payload:     p.Payload,
	}
	if p.QoS > 0 {
		pk.PacketID = 1 // an inline client's publish is never acknowledged
	}
	if err := h.srv.InjectPacket(cl, pk); err != nil {
		return fail(config.PublishFailed, "publish: %v", err)
	}
	return res
}

// httpClient returns the inline mochi client that carries an instance's
// HTTP publishes, registering it with the instance's namespace so the
// store files its messages under the instance.
func (h *tenantHook) httpClient(instance string) *mqtt.Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cl, ok := h.http[instance]; ok {
		return cl
	}
	if h.http == nil {
		h.http = map[string]*mqtt.Client{}
	}
	cl := h.srv.NewClient(nil, mqtt.LocalListener, instance+"/"+httpClientID, true)
	cl.Properties.ProtocolVersion = 5
	h.http[instance] = cl
	h.conns[cl] = &conn{instance: instance, mount: mqtttopic.MountOf(instance), clientID: httpClientID}
	return cl
}
