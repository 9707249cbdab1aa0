package conformance

import (
	"testing"
	"time"
)

// refusedClosed asserts the connection ends without a successful CONNACK
// (a refusing CONNACK may come first) and returns that CONNACK, if any.
func refusedClosed(t testing.TB, c *client) *packet {
	t.Helper()
	var ack *packet
	for _, p := range c.closedAfter(3 * time.Second) {
		if p.typ == tConnack {
			if p.rc == 0 {
				t.Fatalf("connection accepted (%s)", p)
			}
			ack = p
		} else {
			t.Fatalf("unexpected %s before the close", p)
		}
	}
	return ack
}

// vid picks the statement id of the version.
func vid(v byte, id4, id5 string) string {
	if v == 5 {
		return id5
	}
	return id4
}

// vids picks the statement ids of the version.
func vids(v byte, ids4, ids5 []string) []string {
	if v == 5 {
		return ids5
	}
	return ids4
}

func connectChecks() []check {
	var cs []check
	for _, v := range []byte{4, 5} {
		cs = append(cs,
			check{v: v, ids: []string{"MQTT-3.1.0-1"}, name: "first packet not CONNECT closes", run: func(t testing.TB, b *broker) {
				c := dial(t, b, v)
				c.send(frame(tPingreq, 0, nil))
				if got := c.closedAfter(3 * time.Second); len(got) != 0 {
					t.Fatalf("answered %v", got)
				}
			}},
			check{v: v, ids: []string{"MQTT-3.1.0-2"}, name: "second CONNECT closes", run: func(t testing.TB, b *broker) {
				c, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
				c.send(connectPacket(v, connOpts{id: "c" + uniq(), clean: true}))
				for _, p := range c.closedAfter(3 * time.Second) {
					if p.typ == tConnack {
						t.Fatalf("second CONNACK %s", p) // [MQTT-3.2.0-2] too
					}
				}
			}},
			check{v: v, ids: []string{"MQTT-3.1.2-3"}, name: "reserved connect flag closes", run: func(t testing.TB, b *broker) {
				c := dial(t, b, v)
				fl := byte(3) // clean + reserved
				c.send(connectPacket(v, connOpts{id: "c" + uniq(), flags: &fl}))
				refusedClosed(t, c)
			}},
			check{v: v, ids: []string{"MQTT-3.1.2-1"}, name: "wrong protocol name closes", run: func(t testing.TB, b *broker) {
				c := dial(t, b, v)
				c.send(connectPacket(v, connOpts{id: "c" + uniq(), clean: true, proto: "MQTX"}))
				refusedClosed(t, c)
			}},
			check{v: v, ids: []string{vid(v, "MQTT-1.5.3-1", "MQTT-1.5.4-1")}, name: "ill-formed UTF-8 closes", run: func(t testing.TB, b *broker) {
				c, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
				c.send(publishPacket(v, pub{topic: "t/\xff\xfe", payload: "x"}))
				if !c.closed(3 * time.Second) {
					t.Fatal("still open after ill-formed UTF-8 in a topic")
				}
			}},
			check{v: v, ids: []string{vid(v, "MQTT-1.5.3-2", "MQTT-1.5.4-2")}, name: "U+0000 in a string closes", run: func(t testing.TB, b *broker) {
				c, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
				c.send(subscribePacket(v, 1, nil, sub{filter: "a/\x00b", opts: 0}))
				for _, p := range c.closedAfter(3 * time.Second) {
					if p.typ == tSuback && p.codes[0] < 0x80 {
						t.Fatalf("NUL filter granted: %s", p)
					}
				}
			}},
			check{v: v, ids: []string{"MQTT-3.1.3-5"}, name: "23-character alphanumeric client id accepted", run: func(t testing.TB, b *broker) {
				id := ("Z9" + uniq() + "abcdefghijklmnopqrstuvwxyz")[:23]
				connectOK(t, b, v, connOpts{id: id, clean: true})
			}},
			check{v: v, ids: []string{"MQTT-3.1.4-1"}, name: "malformed CONNECT closed without CONNACK", run: func(t testing.TB, b *broker) {
				c := dial(t, b, v)
				id := "c" + uniq()
				pk := connectPacket(v, connOpts{id: id, clean: true})
				pk[len(pk)-len(id)-2] = 0x7f // a client id longer than the packet
				c.send(pk)
				for _, p := range c.closedAfter(3 * time.Second) {
					if p.typ == tConnack && p.rc == 0 {
						t.Fatalf("malformed CONNECT accepted")
					}
				}
			}},
			check{v: v, ids: []string{"MQTT-3.2.0-1", vid(v, "MQTT-3.1.4-4", "MQTT-3.1.4-5")}, name: "CONNACK success first", run: func(t testing.TB, b *broker) {
				c := dial(t, b, v)
				c.send(connectPacket(v, connOpts{id: "c" + uniq(), clean: true}))
				p := c.next(3 * time.Second)
				if p.typ != tConnack || p.rc != 0 {
					t.Fatalf("first packet %s, want CONNACK 0", p)
				}
			}},
			check{v: v, ids: []string{"MQTT-3.12.4-1"}, name: "PINGREQ answered", run: func(t testing.TB, b *broker) {
				c, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
				c.send(frame(tPingreq, 0, nil))
				c.expect(tPingresp)
			}},
			check{v: v, ids: []string{vid(v, "MQTT-3.1.2-24", "MQTT-3.1.2-22")}, name: "keepalive 1.5x closes a silent client", run: func(t testing.TB, b *broker) {
				c, ack := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true, keepalive: 1})
				if ka := ack.prop(pServerKeepAlive); ka != nil {
					t.Fatalf("server keep alive %v for a keepalive of 1 s", ka)
				}
				start := time.Now()
				if !c.closed(8 * time.Second) { // Mosquitto checks keepalives every few seconds
					t.Fatal("silent client kept for 8 s with keepalive 1 s")
				}
				if d := time.Since(start); d < 1400*time.Millisecond {
					t.Fatalf("closed after %v, before 1.5 × the keepalive", d)
				}
			}},
		)
	}
	return cs
}
