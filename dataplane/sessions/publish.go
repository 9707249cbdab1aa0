package sessions

import (
	"errors"
	"sort"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/store"
)

// OnPublish stores a QoS≥1 message (once, whatever its subscribers) and a
// retained message before mochi acknowledges it: PUBACK/PUBREC follow a
// durable write (through the client's publish queue, pipeline.go), and a
// publisher stops being read while the store is behind.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl == h.inline || h.Replayed(cl, pk) {
		return pk, nil // stored by publishWill, or already stored (pipeline.go)
	}
	m := storeMessage(h.opts.InstanceOf(cl), pk)
	if pk.FixedHeader.Qos > 0 && !cl.Net.Inline {
		h.queueOf(cl).enqueue(queuedPublish{pk: pk, m: m})
		return pk, packets.ErrRejectPacket // acknowledged and fanned out once stored
	}
	if pk.FixedHeader.Retain {
		if err := h.st.Retain(h.ctx, m); err != nil {
			if !errors.Is(err, store.ErrRetainedQuota) {
				h.log.Error("store retained", "client", cl.ID, "topic", pk.TopicName, "error", err)
				return pk, reject(cl, pk)
			}
			if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
				return pk, packets.ErrQuotaExceeded
			}
			pk.FixedHeader.Retain = false // v3 cannot be told: deliver, do not retain
			m.Retain = false
		}
	}
	if pk.FixedHeader.Qos > 0 {
		if _, err := h.st.Append(h.ctx, []store.Message{m}); err != nil {
			h.log.Error("store publish", "client", cl.ID, "topic", pk.TopicName, "error", err)
			return pk, reject(cl, pk)
		}
	} else {
		h.pushQoS0(cl, pk)
		h.relayQoS0(m)
	}
	return pk, nil
}

// pushQoS0 writes a QoS0 message (which is not stored) to the online
// persistent sessions subscribed to its topic.
func (h *Hook) pushQoS0(from *mqtt.Client, pk packets.Packet) {
	h.mu.Lock()
	subs := h.live.Subscribers(pk.TopicName)
	type target struct {
		s   *session
		sub packets.Subscription
	}
	var ts []target
	for id, sub := range subs.Subscriptions {
		if s := h.liveByID[id]; s != nil && !(sub.NoLocal && s.cl == from) {
			ts = append(ts, target{s, sub})
		}
	}
	h.mu.Unlock()
	for _, t := range ts {
		if h.opts.MayReceive != nil && !h.opts.MayReceive(t.s.cl, pk.TopicName) {
			continue // no longer authorized (counted by the gateway)
		}
		out := pk.Copy(false)
		out.FixedHeader.Qos, out.FixedHeader.Dup = 0, false
		out.PacketID = 0
		if t.s.cl.Properties.ProtocolVersion < 5 || !t.sub.RetainAsPublished {
			out.FixedHeader.Retain = false
		}
		if t.s.cl.Properties.ProtocolVersion == 5 && len(t.sub.Identifiers) > 0 {
			out.Properties.SubscriptionIdentifier = nil
			for _, id := range t.sub.Identifiers {
				out.Properties.SubscriptionIdentifier = append(out.Properties.SubscriptionIdentifier, id)
			}
			sort.Ints(out.Properties.SubscriptionIdentifier)
		}
		// Queued like mochi's own fan-out, never blocking the publisher: a
		// client whose queue is full misses QoS 0 messages (counted).
		if !t.s.cl.Enqueue(out) && !t.s.cl.Closed() && h.opts.OnDrop != nil {
			h.opts.OnDrop(t.s.cl)
		}
	}
}

// reject refuses a publish the store could not take: an MQTT 5 QoS≥1
// publisher gets an error reason code, anyone else no acknowledgement (so a
// QoS≥1 publisher retries).
func reject(cl *mqtt.Client, pk packets.Packet) error {
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		return packets.ErrUnspecifiedError
	}
	return packets.ErrRejectPacket
}

func storeMessage(inst string, pk packets.Packet) store.Message {
	m := store.Message{Instance: inst, Topic: pk.TopicName, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain, Payload: pk.Payload, Origin: pk.Origin}
	p := &pk.Properties
	if p.PayloadFormatFlag {
		m.Properties.SetPayloadFormat(p.PayloadFormat)
	}
	m.Properties.MessageExpiry = p.MessageExpiryInterval
	m.Properties.ContentType = p.ContentType
	m.Properties.ResponseTopic = p.ResponseTopic
	m.Properties.CorrelationData = p.CorrelationData
	for _, u := range p.User {
		m.Properties.User = append(m.Properties.User, store.UserProperty{Key: u.Key, Value: u.Val})
	}
	return m
}

func publishPacket(m *store.Message) packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS},
		TopicName:   m.Topic,
		Payload:     m.Payload,
	}
	p := &pk.Properties
	if m.Properties.HasPayloadFormat() {
		p.PayloadFormat, p.PayloadFormatFlag = m.Properties.PayloadFormat, true
	}
	p.ContentType = m.Properties.ContentType
	p.ResponseTopic = m.Properties.ResponseTopic
	p.CorrelationData = m.Properties.CorrelationData
	for _, u := range m.Properties.User {
		p.User = append(p.User, packets.UserProperty{Key: u.Key, Val: u.Value})
	}
	if e := m.Properties.MessageExpiry; e > 0 {
		pk.Expiry = m.Time.Unix() + int64(e)
		p.MessageExpiryInterval = e // lowered to what remains when written [MQTT-3.3.2-6]
	}
	return pk
}

func isRetainedQuota(err error) bool { return errors.Is(err, store.ErrRetainedQuota) }
