package sessions

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/store"
)

func packetSubscription(sub store.Subscription) packets.Subscription {
	return packets.Subscription{Filter: sub.Filter, Qos: sub.QoS, NoLocal: sub.NoLocal,
		RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, Identifier: int(sub.Identifier)}
}

// OnSubscribed records a persistent session's granted subscriptions in the
// store and takes them out of mochi's topic index, so mochi never fans out
// (or keeps in-flight copies) for persistent sessions. Shared subscriptions
// stay with mochi.
func (h *Hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	s := h.sessionOf(cl)
	if s == nil {
		for i, f := range pk.Filters {
			if i < len(codes) && codes[i] < packets.ErrUnspecifiedError.Code && !mqtt.IsSharedFilter(f.Filter) {
				s = h.attachClean(cl)
				break
			}
		}
		if s == nil {
			return
		}
	}
	maxQoS := h.srv.Options.Capabilities.MaximumQos
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code || mqtt.IsSharedFilter(f.Filter) {
			continue
		}
		sub := store.Subscription{Filter: f.Filter, QoS: min(f.Qos, maxQoS), NoLocal: f.NoLocal,
			RetainAsPublished: f.RetainAsPublished, RetainHandling: f.RetainHandling, Identifier: uint32(f.Identifier)}
		// Store first, then leave mochi's index: a message in between is at
		// worst delivered twice (QoS1 semantics), never lost.
		since, err := h.st.Subscribe(h.ctx, s.key.inst, s.key.id, sub)
		if err != nil {
			h.log.Error("store subscription", "client", s.key.id, "filter", f.Filter, "error", err)
			continue
		}
		h.srv.Topics.Unsubscribe(f.Filter, cl.ID)
		s.mu.Lock()
		if old, ok := s.subs[sub.Filter]; ok {
			since = old.Since // an update keeps its start; Subscribe returned the cursor
		}
		sub.Since = since
		s.addSubLocked(sub)
		s.mu.Unlock()
	}
	s.kick()
}

// OnUnsubscribe removes a persistent session's subscriptions from the store.
func (h *Hook) OnUnsubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	s := h.sessionOf(cl)
	if s == nil {
		return pk
	}
	for _, f := range pk.Filters {
		s.mu.Lock()
		sub, ok := s.subs[f.Filter]
		s.mu.Unlock()
		if !ok {
			continue
		}
		if err := h.st.Unsubscribe(h.ctx, s.key.inst, s.key.id, f.Filter); err != nil {
			h.log.Error("store unsubscribe", "client", s.key.id, "filter", f.Filter, "error", err)
		}
		s.mu.Lock()
		s.delSubLocked(f.Filter)
		s.mu.Unlock()
		// Put it back in mochi's index for mochi to remove, so that UNSUBACK
		// reports success.
		h.srv.Topics.Subscribe(cl.ID, packetSubscription(sub))
	}
	return pk
}
