package gateway

import (
	"bytes"
	"math"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
)

// Packet size bounds. Memory a connection can make the node allocate is
// bounded by the size of its packets, which mochi checks against the
// length in the fixed header before it reads or allocates anything (and
// reads in chunks that grow with the bytes that actually arrive):
//
//   - before authentication, the CONNECT may be at most Options.MaxConnectBytes
//     (64 KiB by default); a larger claim closes the socket unread. The
//     WebSocket listeners bound the HTTP upgrade request and each WebSocket
//     message to the same size until then;
//   - once the device is authenticated, its packets may be at most the
//     instance's max_payload_bytes plus packetHeaderRoom (no bound when the
//     quota is 0, unlimited), announced in the MQTT 5 CONNACK (Maximum
//     Packet Size) and brought up to date when the quota changes. A larger
//     packet is refused from its header: DISCONNECT 0x95 (MQTT 5), close
//     (3.1.1).

// DefaultMaxConnectBytes is the default bound on a connection's CONNECT.
const DefaultMaxConnectBytes = 64 << 10

// packetHeaderRoom is what a PUBLISH may carry besides its payload: fixed
// header, a topic name of up to 65,535 bytes, packet ID and properties.
const packetHeaderRoom = 64 << 10

// mqttMaxPacket is the largest packet MQTT can express (remaining length
// 268,435,455 plus a 5-byte fixed header).
const mqttMaxPacket = 268435455 + 5

// packetLimit is the largest packet a device of an instance with quotas q
// may send once connected (0: no limit but MQTT's own).
func packetLimit(q config.Quotas) uint32 {
	if q.MaxPayloadBytes <= 0 || q.MaxPayloadBytes > mqttMaxPacket-packetHeaderRoom {
		return 0
	}
	return uint32(q.MaxPayloadBytes + packetHeaderRoom)
}

// readLimiter is implemented by connections that bound the size of what
// they read in one piece (WebSocket messages).
type readLimiter interface{ SetReadLimit(int64) }

// packetSizeHook sets each authenticated client's packet bound from its
// instance's quota, before the CONNACK that announces it, and keeps it up
// to date when the quota changes.
type packetSizeHook struct {
	mqtt.HookBase
	tenant *tenantHook
}

func newPacketSizeHook(tenant *tenantHook) *packetSizeHook {
	h := &packetSizeHook{tenant: tenant}
	if tenant.state != nil {
		tenant.state.OnChange(h.onChange)
	}
	return h
}

func (h *packetSizeHook) ID() string { return "aerie-packet-size" }

func (h *packetSizeHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablish}, []byte{b})
}

// OnSessionEstablish runs once the client is authenticated, in its read
// goroutine, before the CONNACK is written.
func (h *packetSizeHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	c := h.tenant.get(cl)
	if c == nil || c.lim == nil {
		return
	}
	cl.SetMaximumPacketSize(packetLimit(c.lim.quotas()))
	if rl, ok := cl.Net.Conn.(readLimiter); ok {
		// A WebSocket message may carry several MQTT packets; mochi bounds
		// each of them, and the WebSocket reader streams a message without
		// buffering it, so once authenticated a message needs no bound of
		// its own.
		rl.SetReadLimit(0)
	}
}

// onChange brings the packet bound of the live connections of an instance
// whose quotas may have changed up to date. MQTT 5 devices were told the
// bound in their CONNACK; a lowered quota applies all the same.
func (h *packetSizeHook) onChange(ch configsync.Change) {
	if !quotaChange(ch) || h.tenant.state == nil {
		return
	}
	limits := map[string]uint32{}
	h.tenant.mu.RLock()
	defer h.tenant.mu.RUnlock()
	for cl, c := range h.tenant.conns {
		if ch.InstanceID != "" && c.instance != ch.InstanceID {
			continue
		}
		n, ok := limits[c.instance]
		if !ok {
			inst, found := h.tenant.state.Instance(c.instance)
			if !found {
				continue
			}
			n = packetLimit(effectiveQuotas(inst))
			limits[c.instance] = n
		}
		cl.SetMaximumPacketSize(n)
	}
}

// maxConnectBytes is the CONNECT bound of o (MaxConnectBytes, or its
// default), within what MQTT can express.
func maxConnectBytes(o Options) uint32 {
	switch {
	case o.MaxConnectBytes <= 0:
		return DefaultMaxConnectBytes
	case o.MaxConnectBytes > math.MaxInt32:
		return math.MaxInt32
	}
	return uint32(o.MaxConnectBytes)
}
