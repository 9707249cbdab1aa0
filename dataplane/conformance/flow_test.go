package conformance

import (
	"fmt"
	"testing"
	"time"
)

func flowChecks() []check {
	return []check{
		{v: 5, ids: []string{"MQTT-3.3.4-9", "MQTT-3.3.4-10", "MQTT-4.9.0-1", "MQTT-4.9.0-2", "MQTT-4.9.0-3"}, name: "the server sends at most the client's Receive Maximum unacknowledged, and still answers PINGREQ", run: func(t testing.TB, b *broker) {
			s, p, topic := v5pair(t, b, 1, nil, connOpts{props: []prop{{pReceiveMaximum, uint16(2)}}})
			for i := 1; i <= 5; i++ {
				p.publishOK(pub{topic: topic, payload: fmt.Sprint(i), qos: 1, id: uint16(i)})
			}
			var held []*packet
			for i := 0; i < 2; i++ {
				held = append(held, s.recvPublish(true))
			}
			s.send(frame(tPingreq, 0, nil))
			if q := s.next(3 * time.Second); q.typ != tPingresp {
				t.Fatalf("[MQTT-3.3.4-9] with the quota used up, got %s (want PINGRESP only)", q)
			}
			s.nothing(300 * time.Millisecond)
			for _, m := range held {
				s.ackPublish(m)
			}
			if got := s.recvOn(topic, 3, 3*time.Second); len(got) != 3 {
				t.Fatalf("after acknowledging: %d of 3", len(got))
			}
		}},
		{v: 5, ids: []string{"MQTT-3.3.4-7"}, mosquitto: "refuses the extra PUBLISH with PUBREC 0x97 and keeps the connection", name: "a client over the server's Receive Maximum gets DISCONNECT 0x93 (issue 21 item 7)", run: func(t testing.TB, b *broker) {
			c, ack := connectOK(t, b, 5, connOpts{id: "c" + uniq(), clean: true})
			rm, _ := ack.prop(pReceiveMaximum).(uint16)
			if rm == 0 {
				rm = 65535
			}
			if rm > 5000 {
				t.Fatalf("receive maximum %d too large to test", rm)
			}
			topic := "rm/" + uniq()
			var buf []byte
			for i := 1; i <= int(rm)+1; i++ {
				buf = append(buf, publishPacket(5, pub{topic: topic, payload: "x", qos: 2, id: uint16(i)})...)
			}
			c.send(buf)
			var last *packet
			recs := 0
			for _, p := range c.closedAfter(5 * time.Second) {
				if p.typ == tPubrec {
					recs++
				}
				last = p
			}
			if last == nil || last.typ != tDisconnect || last.rc != 0x93 {
				t.Fatalf("after %d PUBRECs the connection closed with %v, want DISCONNECT 0x93", recs, last)
			}
		}},
	}
}
