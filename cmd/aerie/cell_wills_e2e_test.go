package main_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// willProbe checks wills on a cell around the kill of a node (the "lead"):
// a watcher of the will topic runs on a survivor. Before the kill, on the
// lead, clean sessions with wills end while it lives: one subscribes and
// drops its connection (its will fires), one disconnects normally (no
// will), one is taken over by a new connection on the same node and one by
// a new connection on a survivor (the old connections' wills fire). Then a
// persistent session, a clean session and the same-node taker stay on the
// lead with wills: after the kill, a survivor fires each once. Nothing
// fires twice, and the survivor's taker fires nothing.
type willProbe struct {
	mu  sync.Mutex
	got []string
}

// wantWills is every will the probe must see, once each.
var wantWills = []string{"clean holder gone", "clean-dropper gone", "holder gone", "roamer first gone", "twice first gone", "twice second gone"}

// dialWill connects a client with a will on node i; expiry 0 is a clean
// session (it ends with its connection).
func dialWill(t *testing.T, ctx context.Context, cell *testCell, i int, cred credOut, id, will string, expiry uint32) (*paho.Client, net.Conn) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", cell.nodes[i].ports.mqtt, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, UsernameFlag: true, Username: cred.MQTTUsername,
		PasswordFlag: true, Password: []byte(cred.Password), WillMessage: &paho.WillMessage{Topic: "fleet/will", QoS: 1, Payload: []byte(will)}}
	if expiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	if ca, err := c.Connect(ctx, cp); err != nil {
		t.Fatalf("connect %s: %v %+v", id, err, ca)
	}
	return c, conn
}

func (w *willProbe) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.got)
}

func (w *willProbe) arm(t *testing.T, cell *testCell, lead int, cred credOut) {
	t.Helper()
	other := (lead + 2) % len(cell.nodes)
	watcher, _ := connect5(t, cell.nodes[other].ports.mqtt, "will-watcher", cred.MQTTUsername, cred.Password, func(p *paho.Publish) {
		w.mu.Lock()
		w.got = append(w.got, string(p.Payload))
		w.mu.Unlock()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := watcher.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "fleet/will", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	dropper, conn := dialWill(t, ctx, cell, lead, cred, "clean-dropper", "clean-dropper gone", 0)
	if _, err := dropper.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "fleet/dropper/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	leaver, _ := dialWill(t, ctx, cell, lead, cred, "clean-leaver", "clean-leaver gone", 0)
	_ = leaver.Disconnect(&paho.Disconnect{ReasonCode: 0})
	dialWill(t, ctx, cell, lead, cred, "clean-twice", "twice first gone", 0)
	dialWill(t, ctx, cell, lead, cred, "clean-twice", "twice second gone", 0) // same node: takes over
	dialWill(t, ctx, cell, lead, cred, "roamer", "roamer first gone", 0)
	roamer, _ := dialWill(t, ctx, cell, other, cred, "roamer", "roamer second gone", 0) // another node: takes over
	t.Cleanup(func() { _ = roamer.Disconnect(&paho.Disconnect{}) })
	if !within(10*time.Second, func() bool { return w.count() >= 3 }) {
		w.mu.Lock()
		defer w.mu.Unlock()
		t.Fatalf("wills of connections that dropped or were taken over: got %q, want clean-dropper, twice first and roamer first", w.got)
	}
	dialWill(t, ctx, cell, lead, cred, "will-holder", "holder gone", 600)
	dialWill(t, ctx, cell, lead, cred, "clean-will-holder", "clean holder gone", 0)
}

// check: every will fired exactly once, and no other.
func (w *willProbe) check(t *testing.T) {
	t.Helper()
	if !within(20*time.Second, func() bool { return w.count() >= len(wantWills) }) {
		w.mu.Lock()
		defer w.mu.Unlock()
		t.Fatalf("the wills of the killed node's clients did not fire: got %q", w.got)
	}
	time.Sleep(3 * time.Second) // the other survivor would have fired them again by now
	w.mu.Lock()
	defer w.mu.Unlock()
	if got := slices.Sorted(slices.Values(w.got)); !slices.Equal(got, wantWills) {
		t.Fatalf("wills fired: %q, want each of %q once", got, wantWills)
	}
}
