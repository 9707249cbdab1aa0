package gateway

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// v3ConnackCodes maps MQTT 5 CONNACK reason codes to MQTT 3.1.1 return
// codes. mochi's own table (packets.V5CodesToV3) misses "not authorised"
// and maps "bad username or password" to 0x05 instead of 0x04.
var v3ConnackCodes = map[byte]byte{
	0x84: 0x01, // unsupported protocol version
	0x85: 0x02, // client identifier not valid
	0x86: 0x04, // bad user name or password
	0x87: 0x05, // not authorised
	0x88: 0x03, // server unavailable
	0x89: 0x03, // server busy
	0x8A: 0x05, // banned
	0x8C: 0x04, // bad authentication method
	0x97: 0x03, // quota exceeded
	0x9F: 0x03, // connection rate exceeded
}

// refuseConnect sends a refusing CONNACK with the right code for the
// client's protocol version and returns the v5 code as the error that ends
// the connection.
func refuseConnect(srv *mqtt.Server, cl *mqtt.Client, code packets.Code) error {
	if cl.Properties.ProtocolVersion < 5 {
		v3, ok := v3ConnackCodes[code.Code]
		if !ok {
			v3 = 0x03
		}
		// A code below 0x80 takes mochi's success path, which writes it as
		// is. The reason string is not sent to a 3.1.1 device; it names the
		// refusal in the log (refusalLog).
		_ = srv.SendConnack(cl, packets.Code{Code: v3, Reason: code.Reason}, false, &packets.Properties{ReasonString: code.Reason})
		return code
	}
	_ = srv.SendConnack(cl, code, false, nil)
	return code
}
