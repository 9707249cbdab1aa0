package gateway

import (
	"context"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
)

// The store owns what it keeps: retention by age and size (its own loop,
// store.Options.RetentionInterval) and the retained-message count and
// quota (store.RetainedFull, asked by admit). The gateway is the one place
// that tells it of changes, as they happen:
//   - an instance's limits, at start and at each config change that may
//     change its quotas (storeLimits);
//   - a retained message mochi expired (retainedExpiry);
//   - an instance deleted from the node: its retained messages go
//     (forgetInstance).

// retentionLimits are the store limits an instance's quotas imply: a
// message is kept as long as an offline session may wait for it (the
// session expiry cap), and the retained-message count is the quota's.
func retentionLimits(q config.Quotas) store.Limits {
	return store.Limits{MaxAge: time.Duration(q.MaxSessionExpirySeconds) * time.Second, MaxRetained: q.MaxRetainedMessages}
}

// storeLimits tells the store the limits of an instance (of every
// instance when id is "").
func (g *Gateway) storeLimits(id string) {
	ids := []string{id}
	if id == "" {
		ids = g.tenant.state.InstanceIDs()
	}
	for _, id := range ids {
		if inst, ok := g.tenant.state.Instance(id); ok {
			g.store.SetLimits(id, retentionLimits(inst.Quotas))
		}
	}
}

// onStoreChange follows the config changes the store must hear of.
func (g *Gateway) onStoreChange(ch configsync.Change) {
	if quotaChange(ch) {
		g.storeLimits(ch.InstanceID)
	}
	if ch.Kind == config.KindInstanceDelete {
		g.forgetInstance(ch.InstanceID)
	}
}

// forgetInstance drops the retained messages of an instance no longer on
// the node (an instance only stopped or suspended keeps them), from the
// store and from mochi's retained index.
func (g *Gateway) forgetInstance(id string) {
	if _, ok := g.tenant.state.Instance(id); ok || id == "" {
		return
	}
	topics, err := g.store.DeleteRetained(context.Background(), id)
	if err != nil {
		g.log.Warn("delete retained messages of a deleted instance", "instance", id, "error", err)
	}
	for _, t := range topics {
		g.srv.Topics.RetainMessage(packets.Packet{TopicName: t}) // empty payload: cleared
	}
}

// retainedExpiry tells the store of each retained message mochi expired
// (its message expiry, or mochi's maximum message expiry), so that the
// store holds what devices are served and its count stays exact.
type retainedExpiry struct {
	mqtt.HookBase
	g *Gateway
}

func (h *retainedExpiry) ID() string { return "aerie-retained-expiry" }

func (h *retainedExpiry) Provides(b byte) bool { return b == mqtt.OnRetainedExpired }

// OnRetainedExpired clears the expired topic's retained message in the
// store (topics carry the instance's mount).
func (h *retainedExpiry) OnRetainedExpired(topic string) {
	inst, _, ok := strings.Cut(topic, "/")
	if !ok || strings.HasPrefix(inst, "$") {
		return
	}
	if err := h.g.store.Retain(context.Background(), store.Message{Instance: inst, Topic: topic}); err != nil {
		h.g.log.Warn("clear an expired retained message", "instance", inst, "error", err)
	}
}
