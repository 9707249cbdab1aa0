package gateway

import (
	"github.com/mochi-mqtt/server/v2/packets"
)

// topicAllowed applies the instance's provisioned topics to a device's
// publish on topic t (unmounted): in strict mode the topic must match one
// of them; every matching topic's policy (maximum QoS, retained allowed,
// maximum payload) must allow the message. A refusal is answered like an
// ACL refusal (v5 PUBACK 0x87; otherwise acknowledged and not delivered).
func (h *tenantHook) topicAllowed(instance, t string, pk packets.Packet) bool {
	if h.state == nil {
		return true
	}
	topics, strict := h.state.Topics(instance)
	if len(topics) == 0 {
		return !strict
	}
	matched := false
	for i := range topics {
		tp := &topics[i]
		if !topicMatch(tp.Filter, t) {
			continue
		}
		matched = true
		if pk.FixedHeader.Qos > tp.MaxQoS || pk.FixedHeader.Retain && !tp.RetainAllowed ||
			tp.MaxPayloadBytes > 0 && len(pk.Payload) > tp.MaxPayloadBytes {
			return false
		}
	}
	return matched || !strict
}
