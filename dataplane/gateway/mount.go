package gateway

// Topic namespacing: topics and filters gain the instance's mount on the
// way in (OnPacketRead, which also checks a PUBLISH's topic name and
// applies the subscription and topic-level quotas to SUBSCRIBE) and lose it
// on the way out (OnPacketEncode, which also writes quota SUBACK codes and
// the capped session expiry).

import (
	"github.com/aeriemq/aerie/internal/mqtttopic"

	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// disconnectLinger bounds how long a connection ended for a refused packet
// is read (and discarded) after its DISCONNECT, so the DISCONNECT reaches
// a client still sending.
const disconnectLinger = time.Second

// deniedMount marks a filter the device may not use: it is left outside the
// device's mount, so OnACLCheck refuses it with the right SUBACK code.
const deniedMount = "\x00denied/"

// OnPacketRead moves topics and filters into the device's namespace.
func (h *tenantHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	c := h.get(cl)
	if c == nil {
		return pk, nil // CONNECT itself, before OnConnect
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.TopicName == "" {
			return pk, nil // alias-only: mochi resolves the alias to an already mounted topic
		}
		if !mqtttopic.ValidTopic(pk.TopicName, c.levels()) {
			// mochi ignores any other error from this hook and would go on
			// with the topic unmounted: reject the packet, which ends the
			// connection (MQTT 5 devices are told why first).
			h.drop(c.instance, DropACL)
			h.logRefused(cl, c, packets.Publish, packets.ErrTopicNameInvalid)
			if cl.Properties.ProtocolVersion == 5 {
				_ = h.srv.DisconnectClient(cl, packets.ErrTopicNameInvalid)
			}
			return pk, packets.ErrRejectPacket
		}
		pk.TopicName = mqtttopic.Mount(c.mount, pk.TopicName)
	case packets.Subscribe:
		h.mountSubscribe(cl, c, &pk)
	case packets.Unsubscribe:
		for i := range pk.Filters {
			pk.Filters[i].Filter = h.mountFilter(c, pk.Filters[i].Filter)
		}
	}
	return pk, nil
}

func (h *tenantHook) mountFilter(c *conn, f string) string {
	if group, inner, shared := mqtttopic.SplitShared(f); shared {
		if group == "" || !mqtttopic.ValidFilter(inner, c.levels()) {
			return deniedMount + f
		}
		return "$share/" + group + "/" + mqtttopic.Mount(c.mount, inner)
	}
	if !mqtttopic.ValidFilter(f, c.levels()) {
		return deniedMount + f
	}
	return mqtttopic.Mount(c.mount, f)
}

// mountSubscribe mounts a SUBSCRIBE's filters and refuses those beyond the
// client's subscription quota (their SUBACK code is set in OnPacketEncode).
func (h *tenantHook) mountSubscribe(cl *mqtt.Client, c *conn, pk *packets.Packet) {
	limit := 0
	if c.cl != nil {
		limit = int(c.cl.maxSubs.Load())
	}
	have := cl.State.Subscriptions.Len()
	var refused []int
	for i := range pk.Filters {
		f := h.mountFilter(c, pk.Filters[i].Filter)
		if limit > 0 && !strings.HasPrefix(f, deniedMount) {
			if _, exists := cl.State.Subscriptions.Get(f); !exists {
				if have >= limit {
					refused = append(refused, i)
					f = deniedMount + pk.Filters[i].Filter
				} else {
					have++
				}
			}
		}
		pk.Filters[i].Filter = f
	}
	if len(refused) > 0 {
		c.cl.mu.Lock()
		if c.cl.quotaRefused == nil {
			c.cl.quotaRefused = map[uint16][]int{}
		}
		c.cl.quotaRefused[pk.PacketID] = refused
		c.cl.mu.Unlock()
		h.drop(c.instance, DropQuota)
	}
}

// OnPacketEncode takes the mount off topics going to the device.
func (h *tenantHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.TopicName == "" {
			return pk
		}
		if c := h.get(cl); c != nil {
			if t, ok := mqtttopic.Unmount(c.mount, pk.TopicName); ok {
				pk.TopicName = t
			}
		}
	case packets.Suback:
		// Filters refused for the subscription quota: 0x97 (v5); 3.1.1
		// has only 0x80, which mochi already wrote.
		if c := h.get(cl); c != nil && c.cl != nil && cl.Properties.ProtocolVersion == 5 {
			c.cl.mu.Lock()
			refused := c.cl.quotaRefused[pk.PacketID]
			delete(c.cl.quotaRefused, pk.PacketID)
			c.cl.mu.Unlock()
			if len(refused) > 0 {
				codes := append([]byte(nil), pk.ReasonCodes...)
				for _, i := range refused {
					if i < len(codes) {
						codes[i] = packets.ErrQuotaExceeded.Code
					}
				}
				pk.ReasonCodes = codes
			}
		}
	case packets.Connack:
		// Announce a session expiry the instance's quota lowered.
		if c := h.get(cl); c != nil && c.cl != nil && pk.ReasonCode == 0 {
			if v := c.cl.expiryCapped.Load(); v >= 0 {
				pk.Properties.SessionExpiryInterval = uint32(v)
				pk.Properties.SessionExpiryIntervalFlag = true
			}
		}
	}
	return pk
}
