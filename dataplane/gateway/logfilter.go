package gateway

import (
	"context"
	"log/slog"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/internal/safelog"
)

// nodeLogHandler is what the gateway's, mochi's and the sessions hook's log
// lines go through: secrets, packets and payloads are redacted whatever a
// call site passes, and each client (instance/client ID, or remote host
// before CONNECT) causes at most lim.Burst lines per lim.Window plus one
// summary line.
func nodeLogHandler(h slog.Handler, lim safelog.LimitOptions) slog.Handler {
	return safelog.PerClient(safelog.Redact(h), lim)
}

// quietMochi drops mochi's per-client warnings that devices trigger at will
// (keepalive 0 is legal MQTT; one line per connection would flood the log)
// and names the instance of mochi's lines: their client is mochi's client
// ID, "<instance>/<client-id>".
type quietMochi struct{ slog.Handler }

func (q quietMochi) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "client keepalive is below minimum") {
		return nil
	}
	var client string
	hasInstance := false
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "client":
			client = a.Value.String()
		case "instance":
			hasInstance = true
		}
		return true
	})
	if inst, _, ok := strings.Cut(client, "/"); ok && !hasInstance {
		r = r.Clone()
		r.AddAttrs(slog.String("instance", inst))
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietMochi) WithAttrs(a []slog.Attr) slog.Handler { return quietMochi{q.Handler.WithAttrs(a)} }
func (q quietMochi) WithGroup(n string) slog.Handler      { return quietMochi{q.Handler.WithGroup(n)} }

// refusalLog logs each refusal the node sends a device (a CONNACK, PUBACK,
// PUBREC, SUBACK or UNSUBACK with an error code, a DISCONNECT with one),
// naming the client, its instance, the refused packet's type and the
// reason; never the packet.
type refusalLog struct {
	mqtt.HookBase
	tenant *tenantHook
	log    *slog.Logger
}

func (h *refusalLog) ID() string { return "aerie-refusal-log" }

func (h *refusalLog) Provides(b byte) bool { return b == mqtt.OnPacketSent }

// refusedType names the packet a response refuses.
var refusedType = map[byte]string{
	packets.Connack:    "CONNECT",
	packets.Puback:     "PUBLISH",
	packets.Pubrec:     "PUBLISH",
	packets.Suback:     "SUBSCRIBE",
	packets.Unsuback:   "UNSUBSCRIBE",
	packets.Disconnect: "DISCONNECT",
}

func (h *refusalLog) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	typ, ok := refusedType[pk.FixedHeader.Type]
	if !ok || cl.Net.Inline {
		return
	}
	code := pk.ReasonCode                // as sent
	reason := pk.Properties.ReasonString // mochi's, or refuseConnect's for 3.1.1
	switch pk.FixedHeader.Type {
	case packets.Connack:
		if cl.Properties.ProtocolVersion < 5 {
			if code == 0 {
				return
			}
			if reason == "" {
				reason = reasonName(v5FromV3Connack[code])
			}
		} else if code < 0x80 {
			return
		}
	case packets.Suback, packets.Unsuback:
		code = 0
		for _, c := range pk.ReasonCodes {
			if c >= 0x80 {
				code = c
				break
			}
		}
		if code < 0x80 {
			return
		}
		if reason == "" && cl.Properties.ProtocolVersion < 5 {
			reason = "refused" // MQTT 3.1.1 SUBACK's only failure code
		}
	default:
		// Not refusals: a node shutting down (one line per client) and a
		// session another connection took over.
		if code < 0x80 || code == packets.ErrServerShuttingDown.Code || code == packets.ErrSessionTakenOver.Code {
			return
		}
	}
	if reason == "" {
		reason = reasonName(code)
	}
	msg := "refused " + typ
	if pk.FixedHeader.Type == packets.Disconnect {
		msg = "disconnected the client"
	}
	instance, client := h.tenant.names(cl)
	h.log.Info(msg, "instance", instance, "client", client, "remote", cl.Net.Remote,
		"packet_type", typ, "reason", reason, "reason_code", code)
}

// names gives the instance (only one the node serves: device-chosen names
// are not echoed) and the client ID as the device knows it.
func (h *tenantHook) names(cl *mqtt.Client) (instance, client string) {
	if c := h.get(cl); c != nil {
		return c.instance, c.clientID
	}
	inst, _ := h.resolveInstance(cl, string(cl.Properties.Username))
	if h.state == nil {
		return "", cl.ID
	}
	if _, known := h.state.Instance(inst); !known {
		return "", cl.ID
	}
	return inst, strings.TrimPrefix(cl.ID, inst+"/")
}

// logRefused logs a refusal the device is not told of (MQTT 3.1.1 and
// QoS 0 publishes are acknowledged, or not, and dropped).
func (h *tenantHook) logRefused(cl *mqtt.Client, c *conn, packetType byte, code packets.Code) {
	h.log.Info("refused "+strings.ToUpper(packets.PacketNames[packetType]), "instance", c.instance, "client", c.clientID,
		"remote", cl.Net.Remote, "packet_type", strings.ToUpper(packets.PacketNames[packetType]), "reason", code.Reason, "reason_code", code.Code)
}

// v5FromV3Connack is the reverse of v3ConnackCodes, for naming reasons.
var v5FromV3Connack = map[byte]byte{0x01: 0x84, 0x02: 0x85, 0x03: 0x88, 0x04: 0x86, 0x05: 0x87}

// reasonName names an MQTT 5 reason code ≥ 0x80.
func reasonName(code byte) string {
	if n, ok := reasonNames[code]; ok {
		return n
	}
	return "error"
}

var reasonNames = map[byte]string{
	0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
	0x83: "implementation specific error", 0x84: "unsupported protocol version",
	0x85: "client identifier not valid", 0x86: "bad user name or password", 0x87: "not authorized",
	0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned", 0x8B: "server shutting down",
	0x8C: "bad authentication method", 0x8D: "keep alive timeout", 0x8E: "session taken over",
	0x8F: "topic filter invalid", 0x90: "topic name invalid", 0x91: "packet identifier in use",
	0x92: "packet identifier not found", 0x93: "receive maximum exceeded", 0x94: "topic alias invalid",
	0x95: "packet too large", 0x96: "message rate too high", 0x97: "quota exceeded",
	0x98: "administrative action", 0x99: "payload format invalid", 0x9A: "retain not supported",
	0x9B: "qos not supported", 0x9C: "use another server", 0x9D: "server moved",
	0x9E: "shared subscriptions not supported", 0x9F: "connection rate exceeded",
	0xA0: "maximum connect time", 0xA1: "subscription identifiers not supported",
	0xA2: "wildcard subscriptions not supported",
}
