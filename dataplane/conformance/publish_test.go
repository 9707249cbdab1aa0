package conformance

import (
	"fmt"
	"testing"
	"time"
)

// recvOn reads publishes for up to d and returns those on topic
// (acknowledging all).
func (c *client) recvOn(topic string, want int, d time.Duration) []*packet {
	c.t.Helper()
	var got []*packet
	deadline := time.Now().Add(d)
	for len(got) < want || want < 0 {
		p, err := c.read(time.Until(deadline))
		if err != nil {
			if isTimeout(err) {
				return got
			}
			c.t.Fatalf("read: %v", err)
		}
		if c.completePubrel(p) || p.typ != tPublish {
			continue
		}
		c.ackPublish(p)
		if p.topic == topic {
			got = append(got, p)
		}
	}
	return got
}

func willChecks() []check {
	var cs []check
	for _, v := range []byte{4, 5} {
		watch := func(t testing.TB, b *broker, topic string) *client {
			s, _ := connectOK(t, b, v, connOpts{id: "w" + uniq(), clean: true})
			s.subscribeOK(1, sub{topic, 1})
			return s
		}
		cs = append(cs,
			check{v: v, ids: []string{"MQTT-3.1.2-7", "MQTT-3.1.2-8", vid(v, "MQTT-3.1.2-16", "MQTT-3.1.2-14")}, name: "will published on an abnormal close, not retained", run: func(t testing.TB, b *broker) {
				topic := "will/" + uniq()
				s := watch(t, b, topic)
				w, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true, will: &will{topic: topic, payload: "gone", qos: 1}})
				w.drop()
				got := s.recvOn(topic, 1, 3*time.Second)
				if len(got) != 1 || string(got[0].payload) != "gone" || got[0].retain {
					t.Fatalf("will: %v", got)
				}
			}},
			check{v: v, ids: []string{"MQTT-3.1.2-10", "MQTT-3.14.4-3"}, name: "will discarded on DISCONNECT", run: func(t testing.TB, b *broker) {
				topic := "will/" + uniq()
				s := watch(t, b, topic)
				w, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true, will: &will{topic: topic, payload: "gone", qos: 1}})
				w.disconnect()
				if got := s.recvOn(topic, 1, 700*time.Millisecond); len(got) != 0 {
					t.Fatalf("will published after DISCONNECT: %v", got)
				}
			}},
			check{v: v, ids: []string{vid(v, "MQTT-3.1.2-17", "MQTT-3.1.2-15")}, name: "will with retain published retained", run: func(t testing.TB, b *broker) {
				topic := "will/" + uniq()
				w, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true, will: &will{topic: topic, payload: "gone", qos: 1, retain: true}})
				w.drop()
				time.Sleep(300 * time.Millisecond)
				s := watch(t, b, topic)
				got := s.recvOn(topic, 1, 3*time.Second)
				if len(got) != 1 || !got[0].retain || string(got[0].payload) != "gone" {
					t.Fatalf("retained will: %v", got)
				}
				p, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
				p.publishOK(pub{topic: topic, retain: true, qos: 1, id: 1}) // clear it
			}},
			check{v: v, ids: []string{vid(v, "MQTT-3.1.2-13", "MQTT-3.1.2-11")}, name: "will QoS without will flag closes", run: func(t testing.TB, b *broker) {
				c := dial(t, b, v)
				fl := byte(2 | 1<<3)
				c.send(connectPacket(v, connOpts{id: "c" + uniq(), flags: &fl}))
				refusedClosed(t, c)
			}},
			check{v: v, ids: []string{vid(v, "MQTT-3.1.2-14", "MQTT-3.1.2-12")}, name: "will QoS 3 closes", run: func(t testing.TB, b *broker) {
				c := dial(t, b, v)
				c.send(connectPacket(v, connOpts{id: "c" + uniq(), clean: true, will: &will{topic: "w/x", payload: "x", qos: 3}}))
				refusedClosed(t, c)
			}},
			check{v: v, ids: []string{vid(v, "MQTT-3.1.2-15", "MQTT-3.1.2-13")}, name: "will retain without will flag closes", run: func(t testing.TB, b *broker) {
				c := dial(t, b, v)
				fl := byte(2 | 0x20)
				c.send(connectPacket(v, connOpts{id: "c" + uniq(), flags: &fl}))
				refusedClosed(t, c)
			}},
		)
	}
	cs = append(cs,
		check{v: 4, ids: []string{"MQTT-3.1.2-22"}, name: "password flag without user name flag closes", run: func(t testing.TB, b *broker) {
			c := dial(t, b, 4)
			c.send(connectPacket(4, connOpts{id: "c" + uniq(), clean: true, pass: strp("x")}))
			refusedClosed(t, c)
		}},
		check{v: 5, ids: []string{"MQTT-3.1.3-9", "MQTT-3.1.2-8"}, name: "will delay: a reconnect in time cancels the will; otherwise it follows the delay", run: func(t testing.TB, b *broker) {
			topic := "will/" + uniq()
			s, _ := connectOK(t, b, 5, connOpts{id: "w" + uniq(), clean: true})
			s.subscribeOK(1, sub{topic, 1})
			id := "c" + uniq()
			o := connOpts{id: id, clean: true, props: []prop{{pSessionExpiry, uint32(30)}},
				will: &will{topic: topic, payload: "late", qos: 1, props: []prop{{pWillDelay, uint32(2)}}}}
			w, _ := connectOK(t, b, 5, o)
			w.drop()
			time.Sleep(200 * time.Millisecond)
			o.clean = false
			o.will = nil
			w, _ = connectOK(t, b, 5, o)
			if got := s.recvOn(topic, 1, 2500*time.Millisecond); len(got) != 0 {
				t.Fatalf("[MQTT-3.1.3-9] will sent although the session reconnected: %v", got)
			}
			o.will = &will{topic: topic, payload: "late", qos: 1, props: []prop{{pWillDelay, uint32(1)}}}
			o.clean = true
			w.disconnect()
			w, _ = connectOK(t, b, 5, o)
			start := time.Now()
			w.drop()
			got := s.recvOn(topic, 1, 4*time.Second)
			if len(got) != 1 {
				t.Fatal("[MQTT-3.1.2-8] delayed will never published")
			}
			if d := time.Since(start); d < 700*time.Millisecond {
				t.Fatalf("[MQTT-3.1.2-8] will published after %v, before its delay of 1 s", d)
			}
			w, _ = connectOK(t, b, 5, connOpts{id: id, clean: true})
			w.disconnect()
		}},
		check{v: 5, ids: []string{"MQTT-3.1.2-8", "MQTT-3.14.2-1"}, name: "DISCONNECT 0x04 publishes the will", run: func(t testing.TB, b *broker) {
			topic := "will/" + uniq()
			s, _ := connectOK(t, b, 5, connOpts{id: "w" + uniq(), clean: true})
			s.subscribeOK(1, sub{topic, 1})
			w, _ := connectOK(t, b, 5, connOpts{id: "c" + uniq(), clean: true, will: &will{topic: topic, payload: "bye", qos: 1}})
			w.send(disconnectPacket(5, 0x04))
			if got := s.recvOn(topic, 1, 3*time.Second); len(got) != 1 {
				t.Fatal("will not published after DISCONNECT 0x04")
			}
		}},
	)
	return cs
}

func publishChecks() []check {
	var cs []check
	for _, v := range []byte{4, 5} {
		pair := func(t testing.TB, b *broker, subQoS byte) (s, p *client, topic string) {
			topic = "pub/" + uniq()
			s, _ = connectOK(t, b, v, connOpts{id: "s" + uniq(), clean: true})
			s.subscribeOK(1, sub{topic, subQoS})
			p, _ = connectOK(t, b, v, connOpts{id: "p" + uniq(), clean: true})
			return
		}
		closes := func(name string, ids []string, pk func() []byte) check {
			return check{v: v, ids: ids, name: name, run: func(t testing.TB, b *broker) {
				c, _ := connectOK(t, b, v, connOpts{id: "c" + uniq(), clean: true})
				c.send(pk())
				for _, p := range c.closedAfter(3 * time.Second) {
					if p.typ != tDisconnect || p.rc < 0x80 {
						t.Fatalf("answered %s instead of closing", p)
					}
				}
			}}
		}
		cs = append(cs,
			closes("PUBLISH QoS 3 closes", []string{"MQTT-3.3.1-4"}, func() []byte { return publishPacket(v, pub{topic: "a/b", qos: 3, id: 1}) }),
			closes("wildcard in a topic name closes", []string{"MQTT-3.3.2-2", vid(v, "MQTT-4.7.1-1", "MQTT-4.7.0-1")}, func() []byte { return publishPacket(v, pub{topic: "a/+/b", payload: "x"}) }),
			closes("empty topic name closes", []string{"MQTT-4.7.3-1"}, func() []byte { return publishPacket(v, pub{topic: "", payload: "x"}) }),
			closes("QoS 1 PUBLISH with packet id 0 closes", []string{vid(v, "MQTT-2.3.1-1", "MQTT-2.2.1-3")}, func() []byte { return publishPacket(v, pub{topic: "a/b", qos: 1, id: 0}) }),
			closes("PUBREL with wrong flags closes", []string{"MQTT-3.6.1-1"}, func() []byte { return frame(tPubrel, 0, enc(nil).u16(7)) }),
			closes("SUBSCRIBE with wrong flags closes", []string{"MQTT-3.8.1-1", vid(v, "MQTT-2.2.2-2", "MQTT-2.1.3-1")}, func() []byte { return frame(tSubscribe, 0, subscribePacket(v, 1, nil, sub{"a", 0})[2:]) }),
			closes("UNSUBSCRIBE with wrong flags closes", []string{"MQTT-3.10.1-1"}, func() []byte { return frame(tUnsubscribe, 0, unsubscribePacket(v, 1, "a")[2:]) }),
			closes("SUBSCRIBE without filters closes", []string{vid(v, "MQTT-3.8.3-3", "MQTT-3.8.3-2")}, func() []byte { return subscribePacket(v, 1, nil) }),
			closes("UNSUBSCRIBE without filters closes", []string{"MQTT-3.10.3-2"}, func() []byte { return unsubscribePacket(v, 1) }),
			closes("reserved subscription option bits close", []string{vid(v, "MQTT-3.8.3-4", "MQTT-3.8.3-5")}, func() []byte { return subscribePacket(v, 1, nil, sub{"a/b", 0xC0}) }),
			closes("DISCONNECT with reserved flags closes", []string{"MQTT-3.14.1-1"}, func() []byte { return frame(tDisconnect, 1, nil) }),
			check{v: v, ids: vids(v, []string{"MQTT-4.3.2-2", "MQTT-2.3.1-6", "MQTT-3.3.4-1"}, []string{"MQTT-4.3.2-4", "MQTT-2.2.1-5", "MQTT-3.3.4-1"}), name: "QoS 1: PUBACK with the packet id", run: func(t testing.TB, b *broker) {
				_, p, topic := pair(t, b, 1)
				p.send(publishPacket(v, pub{topic: topic, payload: "x", qos: 1, id: 77}))
				if a := p.expect(tPuback); a.id != 77 {
					t.Fatalf("PUBACK %s", a)
				}
			}},
			check{v: v, ids: vids(v, []string{"MQTT-4.3.3-2"}, []string{"MQTT-4.3.3-8", "MQTT-4.3.3-10", "MQTT-4.3.3-11"}), name: "QoS 2: PUBREC, duplicates acknowledged without a second delivery, PUBCOMP", run: func(t testing.TB, b *broker) {
				s, p, topic := pair(t, b, 2)
				p.send(publishPacket(v, pub{topic: topic, payload: "once", qos: 2, id: 9}))
				if r := p.expect(tPubrec); r.id != 9 {
					t.Fatalf("PUBREC %s", r)
				}
				p.send(publishPacket(v, pub{topic: topic, payload: "once", qos: 2, id: 9, dup: true}))
				if r := p.expect(tPubrec); r.id != 9 || r.rc >= 0x80 {
					t.Fatalf("PUBREC for the duplicate %s", r)
				}
				p.send(ackPacket(tPubrel, 9))
				if c := p.expect(tPubcomp); c.id != 9 {
					t.Fatalf("PUBCOMP %s", c)
				}
				if got := s.recvOn(topic, 2, 700*time.Millisecond); len(got) != 1 {
					t.Fatalf("delivered %d times, want once", len(got))
				}
			}},
			check{v: v, ids: vids(v, []string{"MQTT-4.3.2-1"}, []string{"MQTT-4.3.2-5", "MQTT-4.3.3-12"}), name: "a packet id acknowledged is a new message", run: func(t testing.TB, b *broker) {
				s, p, topic := pair(t, b, 2)
				p.publishOK(pub{topic: topic, payload: "a", qos: 1, id: 5})
				p.publishOK(pub{topic: topic, payload: "b", qos: 1, id: 5})
				p.publishOK(pub{topic: topic, payload: "c", qos: 2, id: 6})
				p.publishOK(pub{topic: topic, payload: "d", qos: 2, id: 6})
				if got := s.recvOn(topic, 4, 3*time.Second); len(got) != 4 {
					t.Fatalf("delivered %d, want 4", len(got))
				}
			}},
			check{v: v, ids: vids(v, []string{"MQTT-3.3.1-2", "MQTT-3.3.1-3", "MQTT-3.3.2-3", "MQTT-4.5.0-1"}, []string{"MQTT-3.3.1-2", "MQTT-3.3.1-3", "MQTT-3.3.2-3", "MQTT-4.5.0-1", "MQTT-4.3.1-1", "MQTT-4.3.2-2", "MQTT-4.3.3-2", "MQTT-2.2.1-4", "MQTT-3.8.4-8"}),
				name: "deliveries: topic as published, DUP 0, QoS min(published, granted), non-zero ids", run: func(t testing.TB, b *broker) {
					s, p, topic := pair(t, b, 2)
					p.publishOK(pub{topic: topic, payload: "0", qos: 0})
					p.publishOK(pub{topic: topic, payload: "1", qos: 1, id: 1, dup: true})
					p.publishOK(pub{topic: topic, payload: "2", qos: 2, id: 2})
					got := s.recvOn(topic, 3, 3*time.Second)
					if len(got) != 3 {
						t.Fatalf("got %d", len(got))
					}
					for i, m := range got {
						if m.qos != byte(i) || m.dup || (m.qos > 0) != (m.id != 0) || string(m.payload) != fmt.Sprint(i) {
							t.Fatalf("delivery %d: %s dup %v", i, m, m.dup)
						}
					}
					s2, _ := connectOK(t, b, v, connOpts{id: "s" + uniq(), clean: true})
					s2.subscribeOK(1, sub{topic, 1})
					p.publishOK(pub{topic: topic, payload: "x", qos: 2, id: 3})
					if m := s2.recvOn(topic, 1, 3*time.Second); len(m) != 1 || m[0].qos != 1 {
						t.Fatalf("QoS 2 to a QoS 1 subscription: %v", m)
					}
				}},
			check{v: v, ids: vids(v, []string{"MQTT-4.6.0-5", "MQTT-4.6.0-6"}, []string{"MQTT-4.6.0-5", "MQTT-4.6.0-6"}), name: "messages of a topic delivered in order", run: func(t testing.TB, b *broker) {
				s, p, topic := pair(t, b, 1)
				for i := 1; i <= 20; i++ {
					p.send(publishPacket(v, pub{topic: topic, payload: fmt.Sprint(i), qos: 1, id: uint16(i)}))
				}
				got := s.recvOn(topic, 20, 4*time.Second)
				if len(got) != 20 {
					t.Fatalf("got %d of 20", len(got))
				}
				for i, m := range got {
					if string(m.payload) != fmt.Sprint(i+1) {
						t.Fatalf("message %d is %q", i+1, m.payload)
					}
				}
			}},
			check{v: v, ids: []string{vid(v, "MQTT-3.3.5-1", "MQTT-3.3.4-2")}, mosquitto: map[byte]string{4: "3.1.1 sends one copy at the QoS of the first subscription"}[v], name: "overlapping subscriptions: delivered with the maximum QoS", run: func(t testing.TB, b *broker) {
				topic := "ov/" + uniq() + "/x"
				s, _ := connectOK(t, b, v, connOpts{id: "s" + uniq(), clean: true})
				s.subscribeOK(1, sub{topic, 0}, sub{topic[:len(topic)-1] + "+", 2})
				p, _ := connectOK(t, b, v, connOpts{id: "p" + uniq(), clean: true})
				p.publishOK(pub{topic: topic, payload: "x", qos: 2, id: 1})
				got := s.recvOn(topic, -1, 700*time.Millisecond)
				best := byte(0)
				for _, m := range got {
					best = max(best, m.qos)
				}
				if len(got) == 0 || best != 2 {
					t.Fatalf("deliveries %v, want one at QoS 2", got)
				}
			}},
		)
	}
	return cs
}
