package gateway

import (
	"github.com/aeriemq/aerie/internal/mqtttopic"

	"context"
	"fmt"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/config"
)

// Publish publishes a message a tenant's server sent over HTTP (config
// KindPublish) into its instance, as if a device of the instance had
// published it: same namespace, retained handling, store, delivery and
// usage counting, and the instance's quotas (payload size, publish and
// byte rates, retained count), decided by the same admission as a
// device's publish (admit.go). Device ACLs do not apply.
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

// publishHTTP admits an HTTP publish (admit.go) and hands it to mochi
// through the instance's inline client.
func (h *tenantHook) publishHTTP(ctx context.Context, p config.Publish) config.PublishResult {
	res := config.PublishResult{ID: p.ID}
	pub := serverPublish(ctx, p)
	if r := h.admit(&pub); r != admitted {
		res.Code, res.Message = refuseHTTP(&pub, r)
		return res
	}
	cl := h.httpClient(p.InstanceID)
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: p.QoS, Retain: p.Retain},
		TopicName:   pub.mounted,
		Payload:     p.Payload,
	}
	if p.QoS > 0 {
		pk.PacketID = 1 // an inline client's publish is never acknowledged
	}
	if err := h.srv.InjectPacket(cl, pk); err != nil {
		return config.PublishResult{ID: p.ID, Code: config.PublishFailed, Message: fmt.Sprintf("publish: %v", err)}
	}
	return res
}

// refuseHTTP is an HTTP publish's answer to a refusal: its result code
// and message.
func refuseHTTP(p *publish, r refusal) (code, message string) {
	switch r {
	case refusedUnserved:
		return config.PublishUnavailable, fmt.Sprintf("instance %s is not served by this node", p.instance)
	case refusedStopped:
		return config.PublishUnavailable, fmt.Sprintf("instance %s is %s", p.instance, p.status)
	case refusedSuspended:
		return config.PublishUnavailable, fmt.Sprintf("instance %s is suspended: the org is over its spend limit", p.instance)
	case refusedTopic:
		return config.PublishInvalidTopic, fmt.Sprintf("%q is not a topic name devices of this instance may publish to", p.topic)
	case refusedQoS:
		return config.PublishInvalidTopic, fmt.Sprintf("qos %d: must be 0, 1 or 2", p.qos)
	case refusedTooLarge:
		return config.PublishTooLarge, fmt.Sprintf("payload of %d bytes is over the instance's max_payload_bytes (%d)", p.size, p.q.MaxPayloadBytes)
	case refusedRetained:
		return config.PublishRetainedFull, fmt.Sprintf("the instance holds its maximum of %d retained messages", p.q.MaxRetainedMessages)
	case refusedRate:
		return config.PublishRateLimited, "the instance's publish rate quota is used up; retry in a second"
	default: // gone: the request ended, the node is shutting down
		return config.PublishUnavailable, "node shutting down"
	}
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
