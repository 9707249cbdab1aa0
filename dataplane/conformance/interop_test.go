package conformance

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// python finds a python3 with Debian's python3-paho-mqtt (make deps).
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		bin, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		if exec.Command(bin, "-c", "import paho.mqtt.client").Run() == nil {
			return bin
		}
	}
	t.Fatal("no python3 with paho-mqtt (make deps installs python3-paho-mqtt)")
	return ""
}

// TestInteropPahoPython runs the paho Python v5 client's scenario
// (testdata/paho_v5.py) against Aerie and Mosquitto.
func TestInteropPahoPython(t *testing.T) {
	py := python(t)
	for _, b := range []*broker{startAerie(t), startMosquitto(t)} {
		t.Run(b.name, func(t *testing.T) {
			host, port, _ := net.SplitHostPort(b.addr)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, py, "testdata/paho_v5.py", host, port, uniq()).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "OK") {
				t.Fatalf("paho Python scenario: %v\n%s", err, out)
			}
		})
	}
}

// v5client is a paho.golang client with what it received.
type v5client struct {
	c   *paho.Client
	mu  sync.Mutex
	got []*paho.Publish
}

func dialV5(t *testing.T, b *broker, id string, clean bool, expiry *uint32) (*v5client, *paho.Connack) {
	t.Helper()
	nc, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	v := &v5client{}
	v.c = paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			v.mu.Lock()
			v.got = append(v.got, pr.Packet)
			v.mu.Unlock()
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := v.c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: expiry}})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return v, ca
}

func (v *v5client) wait(t *testing.T, n int) []*paho.Publish {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		v.mu.Lock()
		got := append([]*paho.Publish(nil), v.got...)
		v.mu.Unlock()
		if len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("received fewer than %d messages", n)
	return nil
}

// TestInteropPahoGolang runs the publish/subscribe, user properties,
// retained and session-resume scenario with paho.golang (MQTT 5).
func TestInteropPahoGolang(t *testing.T) {
	for _, b := range []*broker{startAerie(t), startMosquitto(t)} {
		t.Run(b.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			tag := uniq()
			base := "interop/go5/" + tag
			expiry := uint32(300)
			pub, _ := dialV5(t, b, "go5-pub-"+tag, true, nil)
			defer pub.c.Disconnect(&paho.Disconnect{})
			sub, _ := dialV5(t, b, "go5-sub-"+tag, true, &expiry)
			if _, err := sub.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: base + "/#", QoS: 1}}}); err != nil {
				t.Fatal(err)
			}
			user := paho.UserProperties{{Key: "trace", Value: "a1"}, {Key: "k", Value: "v"}}
			for _, q := range []byte{1, 2} {
				if _, err := pub.c.Publish(ctx, &paho.Publish{Topic: base + "/up", QoS: q, Payload: []byte("x"), Properties: &paho.PublishProperties{User: user}}); err != nil {
					t.Fatalf("QoS %d publish with user properties: %v", q, err)
				}
			}
			for _, m := range sub.wait(t, 2) {
				if m.Properties == nil || len(m.Properties.User) != 2 || m.Properties.User[0] != user[0] || m.Properties.User[1] != user[1] {
					t.Fatalf("user properties %+v", m.Properties)
				}
			}
			if _, err := pub.c.Publish(ctx, &paho.Publish{Topic: base + "/ret", QoS: 1, Retain: true, Payload: []byte("kept")}); err != nil {
				t.Fatal(err)
			}
			late, _ := dialV5(t, b, "go5-late-"+tag, true, nil)
			if _, err := late.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: base + "/ret", QoS: 1}}}); err != nil {
				t.Fatal(err)
			}
			if m := late.wait(t, 1)[0]; !m.Retain || string(m.Payload) != "kept" {
				t.Fatalf("retained %q retain=%v", m.Payload, m.Retain)
			}
			_ = late.c.Disconnect(&paho.Disconnect{})
			_, _ = pub.c.Publish(ctx, &paho.Publish{Topic: base + "/ret", QoS: 1, Retain: true})
			_ = sub.c.Disconnect(&paho.Disconnect{})
			time.Sleep(300 * time.Millisecond)
			for _, p := range []string{"queued-1", "queued-2"} {
				if _, err := pub.c.Publish(ctx, &paho.Publish{Topic: base + "/q", QoS: 1, Payload: []byte(p)}); err != nil {
					t.Fatal(err)
				}
			}
			sub, ca := dialV5(t, b, "go5-sub-"+tag, false, nil) // Clean Start 0, no Session Expiry
			defer sub.c.Disconnect(&paho.Disconnect{})
			if !ca.SessionPresent {
				t.Fatal("session present 0 on the resume")
			}
			var queued []string
			deadline := time.Now().Add(5 * time.Second)
			for len(queued) < 2 && time.Now().Before(deadline) {
				queued = queued[:0]
				for _, m := range sub.wait(t, 0) {
					if m.Topic == base+"/q" {
						queued = append(queued, string(m.Payload))
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			if strings.Join(queued, ",") != "queued-1,queued-2" {
				t.Fatalf("resumed with %q", queued)
			}
		})
	}
}

// TestInteropPahoMQTTGolang runs the publish/subscribe, retained and
// session-resume scenario with paho.mqtt.golang (MQTT 3.1.1).
func TestInteropPahoMQTTGolang(t *testing.T) {
	for _, b := range []*broker{startAerie(t), startMosquitto(t)} {
		t.Run(b.name, func(t *testing.T) {
			tag := uniq()
			base := "interop/go3/" + tag
			var mu sync.Mutex
			var got []mqtt3.Message
			client := func(id string, clean bool) mqtt3.Client {
				o := mqtt3.NewClientOptions().AddBroker("tcp://" + b.addr).SetClientID(id).SetCleanSession(clean).
					SetAutoReconnect(false).SetProtocolVersion(4).SetOrderMatters(true).
					SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { mu.Lock(); got = append(got, m); mu.Unlock() })
				c := mqtt3.NewClient(o)
				if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					t.Fatalf("connect %s: %v", id, tok.Error())
				}
				return c
			}
			wait := func(n int) []mqtt3.Message {
				t.Helper()
				deadline := time.Now().Add(5 * time.Second)
				for time.Now().Before(deadline) {
					mu.Lock()
					var g []mqtt3.Message
					for _, m := range got {
						if !strings.HasSuffix(m.Topic(), "/ret") || m.Retained() {
							g = append(g, m) // a live copy of the retained publish is not what is awaited
						}
					}
					mu.Unlock()
					if len(g) >= n {
						return g
					}
					time.Sleep(10 * time.Millisecond)
				}
				t.Fatalf("received fewer than %d messages", n)
				return nil
			}
			ok := func(tok mqtt3.Token) {
				t.Helper()
				if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					t.Fatalf("%v", tok.Error())
				}
			}
			pub := client("go3-pub-"+tag, true)
			defer pub.Disconnect(0)
			sub := client("go3-sub-"+tag, false)
			ok(sub.Subscribe(base+"/#", 1, nil))
			ok(pub.Publish(base+"/a", 1, false, "one"))
			ok(pub.Publish(base+"/b", 2, false, "two"))
			if g := wait(2); string(g[0].Payload()) != "one" || string(g[1].Payload()) != "two" {
				t.Fatalf("got %q %q", g[0].Payload(), g[1].Payload())
			}
			ok(pub.Publish(base+"/ret", 1, true, "kept"))
			sub.Disconnect(100)
			time.Sleep(300 * time.Millisecond)
			ok(pub.Publish(base+"/q", 1, false, "queued"))
			mu.Lock()
			got = nil
			mu.Unlock()
			sub = client("go3-sub-"+tag, false)
			defer sub.Disconnect(0)
			if g := wait(1); string(g[0].Payload()) != "queued" {
				t.Fatalf("resumed with %q", g[0].Payload())
			}
			late := client("go3-late-"+tag, true)
			defer late.Disconnect(0)
			mu.Lock()
			got = nil
			mu.Unlock()
			ok(late.Subscribe(base+"/ret", 1, nil))
			if g := wait(1); !g[0].Retained() || string(g[0].Payload()) != "kept" {
				t.Fatalf("retained %q retained=%v", g[0].Payload(), g[0].Retained())
			}
			ok(pub.Publish(base+"/ret", 1, true, ""))
		})
	}
}
