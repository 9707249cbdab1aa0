package sessions

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/aeriemq/aerie/dataplane/store"
)

// node is a real mochi server with the sessions hook on a real store.
type node struct {
	dir  string
	st   *store.Store
	srv  *mqtt.Server
	hook *Hook
	addr string
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startNode opens the store in dir and serves MQTT on addr ("127.0.0.1:0"
// for any port).
func startNode(tb testing.TB, dir, addr string, sync store.SyncPolicy) *node {
	tb.Helper()
	n, err := openNode(dir, addr, sync)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(n.stop)
	return n
}

func openNode(dir, addr string, sync store.SyncPolicy) (*node, error) {
	st, err := store.Open(dir, store.Options{Sync: sync})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	srv := mqtt.New(&mqtt.Options{Logger: quietLogger()})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	h := New(st, srv, Options{ExpiryInterval: 100 * time.Millisecond, Logger: quietLogger()})
	if err := srv.AddHook(h, nil); err != nil {
		return nil, err
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})
	if err := srv.AddListener(tcp); err != nil {
		return nil, err
	}
	if err := srv.Serve(); err != nil {
		return nil, err
	}
	return &node{dir: dir, st: st, srv: srv, hook: h, addr: tcp.Address()}, nil
}

// stop closes the server and then the store (idempotent).
func (n *node) stop() {
	if n.srv == nil {
		return
	}
	_ = n.srv.Close()
	_ = n.hook.Stop()
	time.Sleep(50 * time.Millisecond) // let client goroutines run OnDisconnect
	_ = n.st.Close()
	n.srv = nil
}

// received is one message seen by a test client.
type received struct {
	topic   string
	payload string
	dup     bool
	qos     byte
}

// inbox collects messages.
type inbox struct {
	mu   sync.Mutex
	msgs []received
	ch   chan struct{}
}

func newInbox() *inbox { return &inbox{ch: make(chan struct{}, 1)} }

func (b *inbox) add(r received) {
	b.mu.Lock()
	b.msgs = append(b.msgs, r)
	b.mu.Unlock()
	select {
	case b.ch <- struct{}{}:
	default:
	}
}

func (b *inbox) snapshot() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

// waitDistinct waits until n distinct payloads arrived.
func (b *inbox) waitDistinct(tb testing.TB, n int, d time.Duration) []received {
	tb.Helper()
	deadline := time.After(d)
	for {
		got := b.snapshot()
		seen := map[string]bool{}
		for _, r := range got {
			seen[r.topic+" "+r.payload] = true
		}
		if len(seen) >= n {
			return got
		}
		select {
		case <-b.ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			tb.Fatalf("got %d distinct messages, want %d", len(seen), n)
		}
	}
}

// checkSequence asserts that msgs hold exactly seqs 0..n-1 of every topic,
// first deliveries in publish order per topic, and that every repeat is a
// DUP redelivery.
func checkSequence(tb testing.TB, msgs []received, topics []string, n int) {
	tb.Helper()
	next := map[string]int{}
	for _, r := range msgs {
		seq, err := strconv.Atoi(r.payload[strings.LastIndexByte(r.payload, '-')+1:])
		if err != nil {
			tb.Fatalf("payload %q: %v", r.payload, err)
		}
		switch {
		case seq == next[r.topic]:
			next[r.topic]++
		case seq < next[r.topic]:
			if !r.dup {
				tb.Fatalf("%s: duplicate of %d without DUP", r.topic, seq)
			}
		default:
			tb.Fatalf("%s: got %d, expected %d (out of order or lost)", r.topic, seq, next[r.topic])
		}
	}
	for _, t := range topics {
		if next[t] != n {
			tb.Fatalf("%s: got %d messages in order, want %d", t, next[t], n)
		}
	}
}

// v5 is a paho.golang MQTT 5 client.
type v5 struct {
	c       *paho.Client
	in      *inbox
	present bool // CONNACK session present
}

type v5opts struct {
	clean     bool
	expiry    uint32
	manualAck bool
	will      *paho.WillMessage
	willDelay uint32
	onMsg     func(*paho.Client, *paho.Publish)
	// onServerDisconnect is told of a DISCONNECT from the server.
	onServerDisconnect func(*paho.Disconnect)
}

// dialV5Manual connects a persistent v5 client that acknowledges only what
// onMsg acknowledges.
func dialV5Manual(tb testing.TB, addr, id string, onMsg func(*paho.Client, *paho.Publish)) *v5 {
	return dialV5(tb, addr, id, v5opts{expiry: 3600, manualAck: true, onMsg: onMsg})
}

// sessionOfID returns the online store-served session of a client ID.
func (h *Hook) sessionOfID(id string) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.online[key{DefaultInstance, id}]
}

func dialV5(tb testing.TB, addr, id string, o v5opts) *v5 {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	in := newInbox()
	c := paho.NewClient(paho.ClientConfig{
		Conn:                       conn,
		EnableManualAcknowledgment: o.manualAck,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			in.add(received{topic: pr.Packet.Topic, payload: string(pr.Packet.Payload), dup: pr.Packet.Duplicate(), qos: pr.Packet.QoS})
			if o.onMsg != nil {
				o.onMsg(pr.Client, pr.Packet)
			}
			return true, nil
		}},
		OnServerDisconnect: o.onServerDisconnect,
	})
	cp := &paho.Connect{ClientID: id, CleanStart: o.clean, KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &o.expiry}}
	if o.will != nil {
		cp.WillMessage = o.will
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &o.willDelay}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		tb.Fatalf("connect %s: %v", id, err)
	}
	if ca.ReasonCode != 0 {
		tb.Fatalf("connect %s: reason %d", id, ca.ReasonCode)
	}
	return &v5{c: c, in: in, present: ca.SessionPresent}
}

func (c *v5) subscribe(tb testing.TB, filter string, qos byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil {
		tb.Fatal(err)
	}
	if sa.Reasons[0] > 2 {
		tb.Fatalf("subscribe %s: reason %#x", filter, sa.Reasons[0])
	}
}

func (c *v5) publish(tb testing.TB, topic, payload string, qos byte, retain bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)}); err != nil {
		tb.Fatalf("publish %s: %v", topic, err)
	}
}

func (c *v5) unsubscribe(tb testing.TB, filter string) byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ua, err := c.c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{filter}})
	if err != nil {
		tb.Fatal(err)
	}
	return ua.Reasons[0]
}

func (c *v5) disconnect() { _ = c.c.Disconnect(&paho.Disconnect{}) }

// v3 is a paho.mqtt.golang MQTT 3.1.1 client.
type v3 struct {
	c  paho3.Client
	in *inbox
}

func dialV3(tb testing.TB, addr, id string, clean bool) *v3 {
	tb.Helper()
	in := newInbox()
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetOrderMatters(true).SetProtocolVersion(4).SetConnectRetry(false).
		SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) {
			in.add(received{topic: m.Topic(), payload: string(m.Payload()), dup: m.Duplicate(), qos: m.Qos()})
		})
	c := paho3.NewClient(o)
	if t := c.Connect(); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		tb.Fatalf("connect %s: %v", id, t.Error())
	}
	return &v3{c: c, in: in}
}

func (c *v3) subscribe(tb testing.TB, filter string, qos byte) {
	tb.Helper()
	t := c.c.Subscribe(filter, qos, nil)
	if !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		tb.Fatalf("subscribe %s: %v", filter, t.Error())
	}
}

func (c *v3) disconnect() { c.c.Disconnect(100) }

func (c *v5) publishBytes(tb testing.TB, topic string, payload []byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload}); err != nil {
		tb.Fatalf("publish %s: %v", topic, err)
	}
}
