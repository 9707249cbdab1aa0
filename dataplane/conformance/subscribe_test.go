package conformance

import (
	"errors"
	"testing"
	"time"
)

func retainChecks() []check {
	var cs []check
	for _, v := range []byte{4, 5} {
		cs = append(cs,
			check{v: v, ids: vids(v, []string{"MQTT-3.3.1-5", "MQTT-3.3.1-6", "MQTT-3.3.1-7", "MQTT-3.3.1-8", "MQTT-3.3.1-9", "MQTT-3.3.1-12"}, []string{"MQTT-3.3.1-5", "MQTT-3.3.1-8", "MQTT-3.3.1-9", "MQTT-3.3.1-12"}),
				name: "retained: replaced, sent to new subscribers with RETAIN 1, live with RETAIN 0, untouched by RETAIN 0", run: func(t testing.TB, b *broker) {
					topic := "ret/" + uniq()
					p, _ := connectOK(t, b, v, connOpts{id: "p" + uniq(), clean: true})
					p.publishOK(pub{topic: topic, payload: "old", qos: 1, id: 1, retain: true})
					p.publishOK(pub{topic: topic, payload: "new", qos: 0, retain: true})
					p.publishOK(pub{topic: topic, payload: "plain", qos: 1, id: 2})
					s, _ := connectOK(t, b, v, connOpts{id: "s" + uniq(), clean: true})
					s.subscribeOK(1, sub{topic, 1})
					got := s.recvOn(topic, 1, 3*time.Second)
					if len(got) != 1 || string(got[0].payload) != "new" || !got[0].retain {
						t.Fatalf("retained on subscribe: %v", got)
					}
					p.publishOK(pub{topic: topic, payload: "live", qos: 1, id: 3, retain: true})
					got = s.recvOn(topic, 1, 3*time.Second)
					if len(got) != 1 || got[0].retain {
						t.Fatalf("live retained message forwarded with RETAIN 1: %v", got)
					}
					p.publishOK(pub{topic: topic, qos: 1, id: 4, retain: true})
				}},
			check{v: v, ids: vids(v, []string{"MQTT-3.3.1-10", "MQTT-3.3.1-11"}, []string{"MQTT-3.3.1-6", "MQTT-3.3.1-7"}), name: "zero-byte retained message clears and is not stored", run: func(t testing.TB, b *broker) {
				topic := "ret/" + uniq()
				p, _ := connectOK(t, b, v, connOpts{id: "p" + uniq(), clean: true})
				p.publishOK(pub{topic: topic, payload: "x", qos: 1, id: 1, retain: true})
				p.publishOK(pub{topic: topic, qos: 1, id: 2, retain: true})
				s, _ := connectOK(t, b, v, connOpts{id: "s" + uniq(), clean: true})
				s.subscribeOK(1, sub{topic, 1})
				if got := s.recvOn(topic, 1, 500*time.Millisecond); len(got) != 0 {
					t.Fatalf("cleared retained message still sent: %v", got)
				}
			}},
			check{v: v, ids: []string{vid(v, "MQTT-3.8.4-3", "MQTT-3.8.4-4")}, name: "an identical filter replaces the subscription and resends retained", run: func(t testing.TB, b *broker) {
				topic := "ret/" + uniq()
				p, _ := connectOK(t, b, v, connOpts{id: "p" + uniq(), clean: true})
				p.publishOK(pub{topic: topic, payload: "r", qos: 1, id: 1, retain: true})
				s, _ := connectOK(t, b, v, connOpts{id: "s" + uniq(), clean: true})
				s.subscribeOK(1, sub{topic, 0})
				s.recvOn(topic, 1, 3*time.Second)
				s.subscribeOK(2, sub{topic, 1})
				if got := s.recvOn(topic, 1, 3*time.Second); len(got) != 1 {
					t.Fatal("retained message not re-sent")
				}
				p.publishOK(pub{topic: topic, payload: "x", qos: 1, id: 2})
				got := s.recvOn(topic, 2, 700*time.Millisecond)
				if len(got) != 1 || got[0].qos != 1 {
					t.Fatalf("after replacing: %v (want one copy at QoS 1)", got)
				}
				p.publishOK(pub{topic: topic, qos: 1, id: 3, retain: true})
			}},
		)
	}
	return cs
}

func subscribeChecks() []check {
	var cs []check
	for _, v := range []byte{4, 5} {
		cs = append(cs,
			check{v: v, ids: vids(v, []string{"MQTT-3.8.4-1", "MQTT-3.8.4-2", "MQTT-3.8.4-4", "MQTT-3.8.4-5", "MQTT-3.9.3-1", "MQTT-3.9.3-2", "MQTT-2.3.1-7", "MQTT-3.8.3-1"},
				[]string{"MQTT-3.8.4-1", "MQTT-3.8.4-2", "MQTT-3.8.4-5", "MQTT-3.8.4-6", "MQTT-3.8.4-7", "MQTT-3.9.3-1", "MQTT-3.9.3-2", "MQTT-2.2.1-6", "MQTT-3.8.3-1"}),
				name: "SUBACK: same id, one code per filter in order", run: func(t testing.TB, b *broker) {
					c, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
					u := uniq()
					c.send(subscribePacket(v, 4242, nil, sub{"a/" + u, 2}, sub{"b/" + u + "/#", 0}, sub{"d/+/" + u, 1}))
					a := c.expect(tSuback)
					if a.id != 4242 || len(a.codes) != 3 {
						t.Fatalf("SUBACK %s", a)
					}
					if a.codes[0] != 2 || a.codes[1] != 0 || a.codes[2] != 1 {
						t.Fatalf("codes %x, want 02 00 01", a.codes)
					}
				}},
			check{v: v, ids: vids(v, []string{"MQTT-3.10.4-1", "MQTT-3.10.4-2", "MQTT-3.10.4-4", "MQTT-3.10.4-5", "MQTT-3.10.4-6"}, []string{"MQTT-3.10.4-1", "MQTT-3.10.4-2", "MQTT-3.10.4-4", "MQTT-3.10.4-5", "MQTT-3.10.4-6", "MQTT-3.11.3-1", "MQTT-3.11.3-2"}),
				name: "UNSUBSCRIBE: exact filters only, one UNSUBACK, delivery stops", run: func(t testing.TB, b *broker) {
					u := uniq()
					topic := "un/" + u + "/x"
					c, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
					c.subscribeOK(1, sub{topic, 1}, sub{"un/" + u + "/+", 1})
					c.send(unsubscribePacket(v, 99, "un/"+u+"/#", topic))
					a := c.expect(tUnsuback)
					if a.id != 99 {
						t.Fatalf("UNSUBACK %s", a)
					}
					if v == 5 && (len(a.codes) != 2 || a.codes[0] != 0x11 || a.codes[1] != 0) {
						t.Fatalf("UNSUBACK codes %x, want 11 00", a.codes)
					}
					p, _ := connectOK(t, b, v, connOpts{id: "p" + uniq(), clean: true})
					p.publishOK(pub{topic: topic, payload: "x", qos: 1, id: 1})
					if got := c.recvOn(topic, 2, 700*time.Millisecond); len(got) != 1 {
						t.Fatalf("after unsubscribing one of two: %d deliveries, want 1 (through the + filter)", len(got))
					}
					c.send(unsubscribePacket(v, 100, "un/"+u+"/+"))
					c.expect(tUnsuback)
					p.publishOK(pub{topic: topic, payload: "y", qos: 1, id: 2})
					if got := c.recvOn(topic, 1, 500*time.Millisecond); len(got) != 0 {
						t.Fatal("delivered after UNSUBSCRIBE")
					}
				}},
		)
	}
	return cs
}

func topicChecks() []check {
	var cs []check
	for _, v := range []byte{4, 5} {
		cs = append(cs,
			check{v: v, ids: vids(v, []string{"MQTT-4.7.1-2", "MQTT-4.7.1-3", "MQTT-4.7.3-4"}, []string{"MQTT-4.7.1-1", "MQTT-4.7.1-2", "MQTT-4.7.3-4"}),
				name: "wildcards: # matches the parent and every level, + one level, no normalisation", run: func(t testing.TB, b *broker) {
					u := uniq()
					c, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
					c.subscribeOK(1, sub{"w/" + u + "/#", 0}, sub{"x/+/" + u, 0})
					p, _ := connectOK(t, b, v, connOpts{id: "p" + uniq(), clean: true})
					want := map[string]bool{"w/" + u: true, "w/" + u + "/a/b": true, "x/q/" + u: true, "x//" + u: true}
					for _, topic := range []string{"w/" + u, "w/" + u + "/a/b", "x/q/" + u, "x//" + u, "x/q/r/" + u, "W/" + u, "x/q/" + u + " "} {
						p.publishOK(pub{topic: topic, payload: "m", qos: 1, id: 1})
					}
					got := map[string]bool{}
					deadline := time.Now().Add(time.Second)
					for {
						m, err := c.read(time.Until(deadline))
						if err != nil {
							break
						}
						if m.typ == tPublish {
							got[m.topic] = true
						}
					}
					for topic := range want {
						if !got[topic] {
							t.Errorf("%q not delivered", topic)
						}
					}
					for topic := range got {
						if !want[topic] {
							t.Errorf("%q delivered", topic)
						}
					}
				}},
			check{v: v, ids: vids(v, []string{"MQTT-4.7.1-2", "MQTT-4.7.1-3", "MQTT-3.9.3-2", "MQTT-4.7.3-1"}, []string{"MQTT-4.7.1-1", "MQTT-4.7.1-2", "MQTT-3.9.3-2", "MQTT-4.7.3-1"}),
				name: "invalid filters: refused in SUBACK (or the connection closed)", run: func(t testing.TB, b *broker) {
					for _, f := range []string{"c/#/x", "y/a#", "y/a+/b", ""} {
						c, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
						c.send(subscribePacket(v, 3, nil, sub{f, 1}))
						p, err := c.read(3 * time.Second)
						if err != nil && !errors.Is(err, errClosed) {
							t.Fatalf("%q: %v", f, err)
						}
						if err == nil {
							valid := map[byte]bool{0x80: true, 0x83: true, 0x87: true, 0x8F: true}
							if p.typ == tDisconnect && v == 5 && p.rc >= 0x80 {
								continue
							}
							if p.typ != tSuback || len(p.codes) != 1 || !valid[p.codes[0]] {
								t.Fatalf("%q: %s, want a refusing SUBACK", f, p)
							}
						}
					}
				}},
			check{v: v, ids: []string{"MQTT-4.7.2-1"}, name: "$-topics work but are not matched by a leading wildcard (issue 21 item 5)", run: func(t testing.TB, b *broker) {
				u := uniq()
				topic := "$app" + u + "/x"
				c, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
				c.subscribeOK(1, sub{"$app" + u + "/#", 1})
				w, _ := connectOK(t, b, v, connOpts{id: "w" + uniq(), clean: true})
				w.subscribeOK(1, sub{"#", 1}, sub{"+/x", 1})
				p, _ := connectOK(t, b, v, connOpts{id: "p" + uniq(), clean: true})
				p.publishOK(pub{topic: topic, payload: "d", qos: 1, id: 1})
				p.publishOK(pub{topic: topic, payload: "r", qos: 0, retain: true})
				if got := c.recvOn(topic, 2, 3*time.Second); len(got) != 2 {
					t.Fatalf("$-topic subscriber got %d of 2", len(got))
				}
				c2, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
				c2.subscribeOK(1, sub{"$app" + u + "/+", 1})
				if got := c2.recvOn(topic, 1, 3*time.Second); len(got) != 1 || !got[0].retain {
					t.Fatalf("retained $-topic message: %v", got)
				}
				if got := w.recvOn(topic, 1, 300*time.Millisecond); len(got) != 0 {
					t.Fatalf("[MQTT-4.7.2-1] # or +/x matched a $-topic: %v", got)
				}
				p.publishOK(pub{topic: topic, qos: 0, retain: true})
			}},
		)
		cs = append(cs, check{v: v, ids: []string{"MQTT-4.7.2-1"}, name: "$SYS is the broker's: a device's publish there never reaches a subscriber",
			differs: "a device publishing to $SYS (the broker's namespace) is disconnected (3.1.1: closed; 5.0: DISCONNECT 0x90 Topic Name invalid), where Mosquitto refuses only the message (5.0 PUBACK 0x87; 3.1.1 acknowledged and dropped)",
			run: func(t testing.TB, b *broker) {
				topic := "$SYS/aerie-conformance/" + uniq()
				s, _ := connectOK(t, b, v, connOpts{id: "s" + uniq(), clean: true})
				c, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
				c.send(publishPacket(v, pub{topic: topic, payload: "x", qos: 1, id: 1}))
				if !b.aerie {
					// Mosquitto refuses too: 5.0 PUBACK 0x87, 3.1.1 acknowledged and dropped.
					a := c.expect(tPuback)
					if v == 5 && a.rc != 0x87 {
						t.Fatalf("PUBACK %s", a)
					}
				}
				if b.aerie {
					got := c.closedAfter(3 * time.Second)
					if v == 5 && (len(got) != 1 || got[0].typ != tDisconnect || got[0].rc != 0x90) {
						t.Fatalf("got %v, want DISCONNECT 0x90", got)
					}
					return
				}
				s.subscribeOK(1, sub{topic, 1})
				c.send(publishPacket(v, pub{topic: topic, payload: "y", qos: 1, id: 2}))
				c.expect(tPuback)
				if got := s.recvOn(topic, 1, 500*time.Millisecond); len(got) != 0 {
					t.Fatalf("a client's $SYS publish was delivered: %v", got)
				}
			}})
	}
	return cs
}
