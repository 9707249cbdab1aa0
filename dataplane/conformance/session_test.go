package conformance

import (
	"testing"
	"time"
)

// sessOpts returns CONNECT options for a session that outlives its
// connection (3.1.1 Clean Session 0; 5.0 Clean Start 0 with an expiry).
func sessOpts(v byte, id string, clean bool) connOpts {
	o := connOpts{id: id, clean: clean}
	if v == 5 {
		o.props = []prop{{pSessionExpiry, uint32(300)}}
	}
	return o
}

func sessionChecks() []check {
	var cs []check
	for _, v := range []byte{4, 5} {
		cs = append(cs,
			check{v: v, ids: vids(v, []string{"MQTT-3.1.2-4", "MQTT-3.1.2-5", "MQTT-3.2.2-2", "MQTT-4.4.0-1", "MQTT-3.3.1-1"}, []string{"MQTT-3.1.2-5", "MQTT-3.2.2-3", "MQTT-4.4.0-1", "MQTT-3.3.1-1", "MQTT-3.1.2-23"}),
				name: "a resumed session gets its subscriptions, queued messages and unacknowledged ones again with DUP", run: func(t testing.TB, b *broker) {
					id, topic := "s"+uniq(), "sess/"+uniq()
					c, ack := connectOK(t, b, v, sessOpts(v, id, v == 5)) // 3.1.1: Clean Session 0 from the start
					if ack.sessionPresent {
						t.Fatal("session present for a new session")
					}
					c.subscribeOK(1, sub{topic, 1})
					c.disconnect()
					p, _ := connectOK(t, b, v, connOpts{id: "p" + uniq(), clean: true})
					p.publishOK(pub{topic: topic, payload: "queued-1", qos: 1, id: 1})
					p.publishOK(pub{topic: topic, payload: "queued-2", qos: 1, id: 2})
					c, ack = connectOK(t, b, v, sessOpts(v, id, false))
					if !ack.sessionPresent {
						t.Fatal("[MQTT-3.2.2-2/3] session present 0 for an existing session")
					}
					m := c.recvPublish(true) // not acknowledged
					if string(m.payload) != "queued-1" || m.qos != 1 || m.dup {
						t.Fatalf("[MQTT-3.1.2-5] first queued message %s %q", m, m.payload)
					}
					c.drop()
					c, ack = connectOK(t, b, v, sessOpts(v, id, false))
					if !ack.sessionPresent {
						t.Fatal("session present 0 on the second resume")
					}
					m = c.recvPublish(false)
					if string(m.payload) != "queued-1" || !m.dup {
						t.Fatalf("[MQTT-4.4.0-1][MQTT-3.3.1-1] unacknowledged message not resent with DUP: %s %q", m, m.payload)
					}
					m = c.recvPublish(false)
					if string(m.payload) != "queued-2" {
						t.Fatalf("second queued message %q", m.payload)
					}
					// the subscription survived too
					p.publishOK(pub{topic: topic, payload: "live", qos: 1, id: 3})
					if m = c.recvPublish(false); string(m.payload) != "live" {
						t.Fatalf("[MQTT-3.1.2-4] subscription lost: %q", m.payload)
					}
					c.disconnect()
					c, _ = connectOK(t, b, v, sessOpts(v, id, true))
					c.disconnect()
				}},
			check{v: v, ids: vids(v, []string{"MQTT-3.1.2-6", "MQTT-3.2.2-1"}, []string{"MQTT-3.1.2-4", "MQTT-3.2.2-2"}), name: "clean start discards the session", run: func(t testing.TB, b *broker) {
				id, topic := "s"+uniq(), "sess/"+uniq()
				c, _ := connectOK(t, b, v, sessOpts(v, id, false))
				c.subscribeOK(1, sub{topic, 1})
				c.disconnect()
				c, ack := connectOK(t, b, v, sessOpts(v, id, true))
				if ack.sessionPresent {
					t.Fatal("session present after clean start")
				}
				p, _ := connectOK(t, b, v, connOpts{id: "p" + uniq(), clean: true})
				p.publishOK(pub{topic: topic, payload: "x", qos: 1, id: 1})
				c.nothing(300 * time.Millisecond)
				c.disconnect()
			}},
			check{v: v, ids: []string{vid(v, "MQTT-3.2.2-3", "MQTT-3.1.2-6")}, name: "no session: session present 0", run: func(t testing.TB, b *broker) {
				c, ack := connectOK(t, b, v, sessOpts(v, "s"+uniq(), false))
				if ack.sessionPresent {
					t.Fatal("session present for a new client id")
				}
				c.disconnect()
			}},
			check{v: v, ids: vids(v, []string{"MQTT-3.1.4-2"}, []string{"MQTT-3.1.4-3", "MQTT-3.14.2-2"}), name: "a second connection with the same client id takes over", run: func(t testing.TB, b *broker) {
				id := "s" + uniq()
				a, _ := connectOK(t, b, v, connOpts{id: id, clean: true})
				connectOK(t, b, v, connOpts{id: id, clean: true})
				// Closed; a DISCONNECT first (5.0) must say 0x8E and carry
				// no session expiry. Mosquitto 2.0.11 closes without one.
				for _, p := range a.closedAfter(3 * time.Second) {
					if p.typ != tDisconnect || p.rc != 0x8E {
						t.Fatalf("[MQTT-3.1.4-3] taken-over client got %s, want DISCONNECT 0x8E", p)
					}
					if p.prop(pSessionExpiry) != nil {
						t.Fatal("[MQTT-3.14.2-2] server DISCONNECT with a session expiry")
					}
				}
			}},
			check{v: v, ids: vids(v, []string{"MQTT-3.1.3-6"}, []string{"MQTT-3.1.3-6", "MQTT-3.1.3-7", "MQTT-3.2.2-16"}), name: "zero-length client id with clean start accepted", run: func(t testing.TB, b *broker) {
				_, ack := connectOK(t, b, v, connOpts{clean: true})
				if v == 5 {
					if id, _ := ack.prop(pAssignedClientID).(string); id == "" {
						t.Fatal("[MQTT-3.1.3-7][MQTT-3.2.2-16] no assigned client identifier")
					}
				}
			}},
		)
	}
	cs = append(cs,
		check{v: 4, ids: []string{"MQTT-3.1.3-8", "MQTT-3.2.2-4", "MQTT-3.2.2-5"}, name: "3.1.1 zero-length client id with Clean Session 0: CONNACK 0x02 and close (issue 21 item 1)", run: func(t testing.TB, b *broker) {
			c := dial(t, b, 4)
			c.send(connectPacket(4, connOpts{clean: false}))
			ack := refusedClosed(t, c)
			if ack == nil || ack.rc != 0x02 || ack.sessionPresent {
				t.Fatalf("CONNACK %v, want return code 0x02 (identifier rejected), session present 0", ack)
			}
		}},
		check{v: 4, ids: []string{"MQTT-3.1.2-2"}, name: "unsupported protocol level: CONNACK 0x01 and close", run: func(t testing.TB, b *broker) {
			c := dial(t, b, 4)
			c.send(connectPacket(4, connOpts{id: "c" + uniq(), clean: true, level: 9}))
			ack := refusedClosed(t, c)
			if ack == nil || ack.rc != 0x01 {
				t.Fatalf("CONNACK %v, want 0x01", ack)
			}
		}},
		check{v: 5, ids: []string{"MQTT-3.2.2-3", "MQTT-3.1.2-5", "MQTT-4.1.0-1"}, name: "5.0 resume with Clean Start 0 and no Session Expiry on the reconnect gets the queued messages (issue 21 item 3)", run: func(t testing.TB, b *broker) {
			id, topic := "s"+uniq(), "sess/"+uniq()
			c, _ := connectOK(t, b, 5, sessOpts(5, id, true))
			c.subscribeOK(1, sub{topic, 2})
			c.disconnect()
			p, _ := connectOK(t, b, 5, connOpts{id: "p" + uniq(), clean: true})
			p.publishOK(pub{topic: topic, payload: "q1", qos: 1, id: 1})
			p.publishOK(pub{topic: topic, payload: "q2", qos: 2, id: 2})
			c, ack := connectOK(t, b, 5, connOpts{id: id}) // no Session Expiry: the session ends with this connection
			if !ack.sessionPresent {
				t.Fatal("session present 0")
			}
			for _, want := range []string{"q1", "q2"} {
				if m := c.recvPublish(false); string(m.payload) != want {
					t.Fatalf("got %q, want %q", m.payload, want)
				}
			}
			p.publishOK(pub{topic: topic, payload: "live", qos: 1, id: 3})
			if m := c.recvPublish(false); string(m.payload) != "live" {
				t.Fatalf("subscription not resumed: %q", m.payload)
			}
			c.disconnect()
			time.Sleep(300 * time.Millisecond) // the server handles the DISCONNECT
			// the new expiry (0) applied at the end of that connection
			c, ack = connectOK(t, b, 5, connOpts{id: id})
			if ack.sessionPresent {
				t.Fatal("[MQTT-4.1.0-2] session kept after a connection with expiry 0 ended")
			}
			c.disconnect()
		}},
		check{v: 5, ids: []string{"MQTT-3.1.2-23", "MQTT-4.1.0-2"}, name: "session kept for its expiry, then discarded", run: func(t testing.TB, b *broker) {
			id := "s" + uniq()
			o := connOpts{id: id, clean: true, props: []prop{{pSessionExpiry, uint32(1)}}}
			c, _ := connectOK(t, b, 5, o)
			c.subscribeOK(1, sub{"x/" + uniq(), 1})
			c.disconnect()
			o.clean = false
			c, ack := connectOK(t, b, 5, o)
			if !ack.sessionPresent {
				t.Fatal("[MQTT-3.1.2-23] session not stored")
			}
			c.disconnect()
			time.Sleep(3 * time.Second)
			c, ack = connectOK(t, b, 5, o)
			if ack.sessionPresent {
				t.Fatal("[MQTT-4.1.0-2] session kept past its expiry")
			}
			c.disconnect()
		}},
	)
	return cs
}
