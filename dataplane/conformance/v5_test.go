package conformance

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// v5pair connects a subscriber (with extra SUBSCRIBE properties and
// options) and a publisher.
func v5pair(t testing.TB, b *broker, subOpts byte, subProps []prop, conn connOpts) (s, p *client, topic string) {
	t.Helper()
	topic = "v5/" + uniq()
	conn.id, conn.clean = "s"+uniq(), true
	s, _ = connectOK(t, b, 5, conn)
	s.send(subscribePacket(5, 1, subProps, sub{topic, subOpts}))
	if a := s.expect(tSuback); len(a.codes) != 1 || a.codes[0] >= 0x80 {
		t.Fatalf("SUBACK %s", a)
	}
	p, _ = connectOK(t, b, 5, connOpts{id: "p" + uniq(), clean: true})
	return s, p, topic
}

// mosq marks a check Mosquitto 2.0.11 is known to fail.
func mosq(why string, c check) check { c.mosquitto = why; return c }

func v5Checks() []check {
	closes := func(name string, ids []string, pk func() []byte) check {
		return check{v: 5, ids: ids, name: name, run: func(t testing.TB, b *broker) {
			c, _ := connectOK(t, b, 5, connOpts{id: "c" + uniq(), clean: true, props: []prop{{pTopicAliasMax, uint16(10)}}})
			c.send(pk())
			for _, p := range c.closedAfter(3 * time.Second) {
				if p.typ != tDisconnect || p.rc < 0x80 {
					t.Fatalf("answered %s instead of closing", p)
				}
			}
		}}
	}
	return []check{
		{v: 5, ids: []string{"MQTT-3.2.2-1", "MQTT-2.2.2-1", "MQTT-4.12.0-6", "MQTT-3.2.0-2"}, name: "CONNACK: reserved flags 0, properties present, no authentication method", run: func(t testing.TB, b *broker) {
			c := dial(t, b, 5)
			c.send(connectPacket(5, connOpts{id: "c" + uniq(), clean: true}))
			p := c.expect(tConnack)
			if p.body[0]&0xFE != 0 {
				t.Fatalf("acknowledge flags %#x", p.body[0])
			}
			if p.prop(0x15) != nil {
				t.Fatal("authentication method without one in CONNECT")
			}
			c.send(frame(tPingreq, 0, nil))
			if q := c.next(3 * time.Second); q.typ != tPingresp {
				t.Fatalf("second packet %s", q)
			}
		}},
		{v: 5, ids: []string{"MQTT-3.3.2-4", "MQTT-3.3.2-15", "MQTT-3.3.2-16", "MQTT-3.3.2-17", "MQTT-3.3.2-18", "MQTT-3.3.2-20", "MQTT-3.1.3-10"}, name: "publish properties forwarded unaltered, user properties in order", run: func(t testing.TB, b *broker) {
			s, p, topic := v5pair(t, b, 2, nil, connOpts{props: []prop{{pSessionExpiry, uint32(30)}}})
			ps := []prop{{pPayloadFormat, byte(1)}, {pContentType, "text/plain"}, {pResponseTopic, "re/" + topic}, {pCorrelation, []byte{1, 2, 3}},
				{pUser, [2]string{"k", "1"}}, {pUser, [2]string{"a", "2"}}, {pUser, [2]string{"k", "3"}}}
			for q := byte(0); q <= 2; q++ {
				p.publishOK(pub{topic: topic, payload: "x", qos: q, id: 1, props: ps})
				m := s.recvPublish(false)
				if m.qos != q {
					t.Fatalf("QoS %d delivered at %d", q, m.qos)
				}
				if m.prop(pPayloadFormat) != byte(1) || m.prop(pContentType) != "text/plain" || m.prop(pResponseTopic) != "re/"+topic || !bytes.Equal(m.prop(pCorrelation).([]byte), []byte{1, 2, 3}) {
					t.Fatalf("properties %v", m.props)
				}
				if u := fmt.Sprint(m.propsOf(pUser)); u != "[[k 1] [a 2] [k 3]]" {
					t.Fatalf("QoS %d: user properties %s", q, u)
				}
			}
		}},
		{v: 5, ids: []string{"MQTT-3.1.2-29"}, name: "Request Problem Information 0: user properties still on PUBLISH, none on acknowledgements", run: func(t testing.TB, b *broker) {
			s, p, topic := v5pair(t, b, 1, nil, connOpts{props: []prop{{0x17, byte(0)}}})
			p.publishOK(pub{topic: topic, payload: "x", qos: 1, id: 1, props: []prop{{pUser, [2]string{"k", "v"}}}})
			m := s.recvPublish(true)
			if len(m.propsOf(pUser)) != 1 {
				t.Fatalf("PUBLISH user properties %v", m.props)
			}
			s.ackPublish(m)
			s.send(subscribePacket(5, 9, []prop{{pUser, [2]string{"k", "v"}}}, sub{topic + "/x", 1}))
			if a := s.expect(tSuback); a.prop(pReasonString) != nil || len(a.propsOf(pUser)) != 0 {
				t.Fatalf("SUBACK with problem information %v", a.props)
			}
		}},
		{v: 5, ids: []string{"MQTT-3.4.2-1", "MQTT-3.5.2-1", "MQTT-3.7.2-1"}, name: "PUBACK/PUBREC/PUBCOMP: valid reason codes, the publish's user properties not copied (issue 21 item 2)", run: func(t testing.TB, b *broker) {
			_, p, topic := v5pair(t, b, 2, nil, connOpts{})
			u := []prop{{pUser, [2]string{"trace", "abc"}}}
			p.send(publishPacket(5, pub{topic: topic, payload: "x", qos: 1, id: 1, props: u}))
			a := p.expect(tPuback)
			p.send(publishPacket(5, pub{topic: topic, payload: "x", qos: 2, id: 2, props: u}))
			r := p.expect(tPubrec)
			p.send(ackPacket(tPubrel, 2))
			c := p.expect(tPubcomp)
			for _, k := range []*packet{a, r, c} {
				if (k.rc != 0x00 && k.rc != 0x10) || len(k.propsOf(pUser)) != 0 {
					t.Fatalf("%s with properties %v: want reason 0x00 and none of the PUBLISH's properties", k, k.props)
				}
			}
		}},
		{v: 5, ids: []string{"MQTT-3.3.2-6"}, name: "Message Expiry Interval: absent when the publisher sent none (issue 21 item 8), lowered by the time waited", run: func(t testing.TB, b *broker) {
			id, topic := "s"+uniq(), "exp/"+uniq()
			o := connOpts{id: id, clean: true, props: []prop{{pSessionExpiry, uint32(60)}}}
			s, _ := connectOK(t, b, 5, o)
			s.subscribeOK(1, sub{topic, 1})
			p, _ := connectOK(t, b, 5, connOpts{id: "p" + uniq(), clean: true})
			p.publishOK(pub{topic: topic, payload: "none", qos: 1, id: 1})
			p.publishOK(pub{topic: topic, payload: "none0", qos: 0})
			for i := 0; i < 2; i++ {
				if m := s.recvPublish(false); m.prop(pMessageExpiry) != nil {
					t.Fatalf("%q delivered with Message Expiry Interval %v", m.payload, m.prop(pMessageExpiry))
				}
			}
			s.disconnect()
			p.publishOK(pub{topic: topic, payload: "ten", qos: 1, id: 2, props: []prop{{pMessageExpiry, uint32(10)}}})
			time.Sleep(2100 * time.Millisecond)
			o.clean = false
			s, _ = connectOK(t, b, 5, o)
			m := s.recvPublish(false)
			e, _ := m.prop(pMessageExpiry).(uint32)
			if string(m.payload) != "ten" || e < 1 || e > 8 {
				t.Fatalf("%q with expiry %d, want 10 minus the 2 s waited", m.payload, e)
			}
			s.disconnect()
			o.clean = true
			o.props = nil
			s, _ = connectOK(t, b, 5, o)
			s.disconnect()
		}},
		{v: 5, ids: []string{"MQTT-3.3.2-5"}, name: "an expired message is not delivered", run: func(t testing.TB, b *broker) {
			id, topic := "s"+uniq(), "exp/"+uniq()
			o := connOpts{id: id, clean: true, props: []prop{{pSessionExpiry, uint32(60)}}}
			s, _ := connectOK(t, b, 5, o)
			s.subscribeOK(1, sub{topic, 1})
			s.disconnect()
			p, _ := connectOK(t, b, 5, connOpts{id: "p" + uniq(), clean: true})
			p.publishOK(pub{topic: topic, payload: "short", qos: 1, id: 1, props: []prop{{pMessageExpiry, uint32(1)}}})
			p.publishOK(pub{topic: topic, payload: "long", qos: 1, id: 2, props: []prop{{pMessageExpiry, uint32(100)}}})
			time.Sleep(2100 * time.Millisecond)
			o.clean = false
			s, _ = connectOK(t, b, 5, o)
			got := s.recvOn(topic, 2, time.Second)
			if len(got) != 1 || string(got[0].payload) != "long" {
				t.Fatalf("after expiry: %d messages, want only %q", len(got), "long")
			}
			s.disconnect()
			o.clean, o.props = true, nil
			s, _ = connectOK(t, b, 5, o)
			s.disconnect()
		}},
		{v: 5, ids: []string{"MQTT-3.8.3-3"}, name: "No Local at QoS 0, 1 and 2 (issue 21 item 4)", run: func(t testing.TB, b *broker) {
			topic := "nl/" + uniq()
			c, _ := connectOK(t, b, 5, connOpts{id: "c" + uniq(), clean: true})
			c.subscribeOK(1, sub{topic, 2 | 4})
			o, _ := connectOK(t, b, 5, connOpts{id: "o" + uniq(), clean: true})
			for q := byte(0); q <= 2; q++ {
				c.publishOK(pub{topic: topic, payload: fmt.Sprint("own", q), qos: q, id: uint16(q + 1)})
			}
			for q := byte(0); q <= 2; q++ {
				o.publishOK(pub{topic: topic, payload: fmt.Sprint("other", q), qos: q, id: uint16(q + 1)})
			}
			got := c.recvOn(topic, -1, time.Second)
			var names []string
			for _, m := range got {
				names = append(names, string(m.payload))
			}
			if strings.Join(names, ",") != "other0,other1,other2" {
				t.Fatalf("No Local subscriber got %v, want only the other client's", names)
			}
		}},
		{v: 5, ids: []string{"MQTT-3.3.1-12", "MQTT-3.3.1-13"}, name: "Retain As Published", run: func(t testing.TB, b *broker) {
			topic := "rap/" + uniq()
			c, _ := connectOK(t, b, 5, connOpts{id: "c" + uniq(), clean: true})
			c.subscribeOK(1, sub{topic, 1 | 8})
			d, _ := connectOK(t, b, 5, connOpts{id: "d" + uniq(), clean: true})
			d.subscribeOK(1, sub{topic, 1})
			p, _ := connectOK(t, b, 5, connOpts{id: "p" + uniq(), clean: true})
			p.publishOK(pub{topic: topic, payload: "r", qos: 1, id: 1, retain: true})
			if m := c.recvOn(topic, 1, 3*time.Second); len(m) != 1 || !m[0].retain {
				t.Fatalf("[MQTT-3.3.1-13] RAP 1: %v", m)
			}
			if m := d.recvOn(topic, 1, 3*time.Second); len(m) != 1 || m[0].retain {
				t.Fatalf("[MQTT-3.3.1-12] RAP 0: %v", m)
			}
			p.publishOK(pub{topic: topic, qos: 1, id: 2, retain: true})
		}},
		{v: 5, ids: []string{"MQTT-3.3.1-9", "MQTT-3.3.1-10", "MQTT-3.3.1-11", "MQTT-3.8.4-4"}, name: "Retain Handling 0, 1, 2", run: func(t testing.TB, b *broker) {
			topic := "rh/" + uniq()
			p, _ := connectOK(t, b, 5, connOpts{id: "p" + uniq(), clean: true})
			p.publishOK(pub{topic: topic, payload: "r", qos: 1, id: 1, retain: true})
			c, _ := connectOK(t, b, 5, connOpts{id: "c" + uniq(), clean: true})
			n := func(opts byte) int {
				c.subscribeOK(1, sub{topic, opts})
				return len(c.recvOn(topic, 1, 500*time.Millisecond))
			}
			if got := n(1 | 2<<4); got != 0 {
				t.Fatal("[MQTT-3.3.1-11] RH 2 sent retained")
			}
			c.send(unsubscribePacket(5, 2, topic))
			c.expect(tUnsuback)
			if got := n(1 | 1<<4); got != 1 {
				t.Fatal("[MQTT-3.3.1-10] RH 1 on a new subscription: retained not sent")
			}
			if got := n(1 | 1<<4); got != 0 {
				t.Fatal("[MQTT-3.3.1-10] RH 1 on an existing subscription sent retained")
			}
			if got := n(1); got != 1 {
				t.Fatal("[MQTT-3.3.1-9][MQTT-3.8.4-4] RH 0: retained not sent")
			}
			p.publishOK(pub{topic: topic, qos: 1, id: 2, retain: true})
		}},
		{v: 5, ids: []string{"MQTT-3.3.4-3", "MQTT-3.3.4-4", "MQTT-3.3.4-5"}, name: "subscription identifiers on deliveries", run: func(t testing.TB, b *broker) {
			u := uniq()
			topic := "sid/" + u + "/x"
			c, _ := connectOK(t, b, 5, connOpts{id: "c" + uniq(), clean: true})
			c.send(subscribePacket(5, 1, []prop{{pSubID, 7}}, sub{topic, 1}))
			c.expect(tSuback)
			c.send(subscribePacket(5, 2, []prop{{pSubID, 300}}, sub{"sid/" + u + "/+", 1}))
			c.expect(tSuback)
			p, _ := connectOK(t, b, 5, connOpts{id: "p" + uniq(), clean: true})
			p.publishOK(pub{topic: topic, payload: "x", qos: 1, id: 1})
			ids := map[int]bool{}
			for _, m := range c.recvOn(topic, -1, 700*time.Millisecond) {
				for _, id := range m.propsOf(pSubID) {
					ids[id.(int)] = true
				}
			}
			if len(ids) != 2 || !ids[7] || !ids[300] {
				t.Fatalf("subscription identifiers %v, want 7 and 300", ids)
			}
		}},
		mosq("accepts a client's PUBLISH with a subscription identifier", closes("a client's PUBLISH with a subscription identifier closes", []string{"MQTT-3.3.4-6"}, func() []byte {
			return publishPacket(5, pub{topic: "a/b", payload: "x", props: []prop{{pSubID, 3}}})
		})),
		closes("Topic Alias 0 closes", []string{"MQTT-3.3.2-8"}, func() []byte {
			return publishPacket(5, pub{topic: "a/b", payload: "x", props: []prop{{pTopicAlias, uint16(0)}}})
		}),
		closes("a Topic Alias above the server's maximum closes", []string{"MQTT-3.3.2-9", "MQTT-3.2.2-17"}, func() []byte {
			return publishPacket(5, pub{topic: "a/b", payload: "x", props: []prop{{pTopicAlias, uint16(65535)}}})
		}),
		mosq("grants No Local on a shared subscription", closes("No Local on a shared subscription closes", []string{"MQTT-3.8.3-4"}, func() []byte {
			return subscribePacket(5, 1, nil, sub{"$share/g/a/b", 1 | 4})
		})),
		closes("an unknown alias with an empty topic closes", []string{"MQTT-3.3.2-7"}, func() []byte {
			return publishPacket(5, pub{topic: "", payload: "x", props: []prop{{pTopicAlias, uint16(1)}}})
		}),
		{v: 5, ids: []string{"MQTT-3.3.2-12", "MQTT-3.1.2-27", "MQTT-3.1.2-26"}, name: "topic aliases within the maximum work; none sent to a client without a maximum", run: func(t testing.TB, b *broker) {
			s, p, topic := v5pair(t, b, 1, nil, connOpts{})
			c, ack := connectOK(t, b, 5, connOpts{id: "c" + uniq(), clean: true})
			max, _ := ack.prop(pTopicAliasMax).(uint16)
			if max == 0 {
				t.Fatal("the server announces no Topic Alias Maximum")
			}
			c.publishOK(pub{topic: topic, payload: "1", qos: 1, id: 1, props: []prop{{pTopicAlias, max}}})
			c.publishOK(pub{topic: "", payload: "2", qos: 1, id: 2, props: []prop{{pTopicAlias, max}}})
			got := s.recvOn(topic, 2, 3*time.Second)
			if len(got) != 2 {
				t.Fatalf("got %d of 2 through the alias", len(got))
			}
			for _, m := range got {
				if m.prop(pTopicAlias) != nil {
					t.Fatal("[MQTT-3.1.2-27] topic alias sent to a client that allows none")
				}
			}
			_ = p
		}},
		{v: 5, ids: []string{"MQTT-3.1.2-24", "MQTT-3.1.2-25"}, name: "Maximum Packet Size: larger messages are not sent, later ones are", run: func(t testing.TB, b *broker) {
			s, p, topic := v5pair(t, b, 1, nil, connOpts{props: []prop{{pMaxPacketSize, uint32(128)}}})
			p.publishOK(pub{topic: topic, payload: strings.Repeat("x", 300), qos: 1, id: 1})
			p.publishOK(pub{topic: topic, payload: "small", qos: 1, id: 2})
			got := s.recvOn(topic, 2, time.Second)
			if len(got) != 1 || string(got[0].payload) != "small" {
				t.Fatalf("got %d messages, want only the small one", len(got))
			}
		}},
		{v: 5, ids: []string{"MQTT-4.8.2-1", "MQTT-4.8.2-2"}, name: "malformed shared subscriptions refused", run: func(t testing.TB, b *broker) {
			for _, f := range []string{"$share/a+b/x", "$share/a#/x"} {
				c, _ := connectOK(t, b, 5, connOpts{id: "c" + uniq(), clean: true})
				c.send(subscribePacket(5, 1, nil, sub{f, 1}))
				p, err := c.read(3 * time.Second)
				if err != nil {
					continue // closed
				}
				if p.typ == tDisconnect && p.rc >= 0x80 {
					continue
				}
				if p.typ != tSuback || len(p.codes) != 1 || p.codes[0] < 0x80 {
					t.Fatalf("%q: %s", f, p)
				}
			}
		}},
		{v: 5, ids: []string{"MQTT-4.8.2-3"}, name: "shared subscription: each message to one member, at the granted QoS", run: func(t testing.TB, b *broker) {
			u := uniq()
			topic := "sh/" + u
			var members []*client
			for i := 0; i < 2; i++ {
				c, _ := connectOK(t, b, 5, connOpts{id: "m" + uniq(), clean: true})
				c.subscribeOK(1, sub{"$share/g" + u + "/" + topic, 1})
				members = append(members, c)
			}
			p, _ := connectOK(t, b, 5, connOpts{id: "p" + uniq(), clean: true})
			for i := 1; i <= 10; i++ {
				p.publishOK(pub{topic: topic, payload: fmt.Sprint(i), qos: 2, id: uint16(i)})
			}
			seen := map[string]int{}
			for _, c := range members {
				for _, m := range c.recvOn(topic, -1, time.Second) {
					if m.qos != 1 {
						t.Fatalf("QoS %d through a QoS 1 shared subscription", m.qos)
					}
					seen[string(m.payload)]++
				}
			}
			if len(seen) != 10 {
				t.Fatalf("%d distinct messages of 10", len(seen))
			}
			for k, n := range seen {
				if n != 1 {
					t.Fatalf("%s delivered %d times", k, n)
				}
			}
		}},
		{v: 5, ids: []string{"MQTT-4.13.1-1", "MQTT-4.13.2-1"}, name: "a malformed packet ends the connection (DISCONNECT 0x81 at most)", run: func(t testing.TB, b *broker) {
			c, _ := connectOK(t, b, 5, connOpts{id: "c" + uniq(), clean: true})
			c.send(frame(tPublish, 2, enc(nil).str("a/b").u16(1).vbi(50).u8(0x01)))
			for _, p := range c.closedAfter(3 * time.Second) {
				if p.typ != tDisconnect || p.rc < 0x80 {
					t.Fatalf("answered %s", p)
				}
			}
		}},
	}
}
