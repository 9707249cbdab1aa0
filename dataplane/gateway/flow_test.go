package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/internal/mqttload"
)

// storeNode is a gateway with its message store (as every node runs) and
// one anonymous instance with no quotas.
func storeNode(t testing.TB) *Gateway { return storeNodeWith(t, config.Quotas{}, store.Options{}) }

func storeNodeWith(t testing.TB, q config.Quotas, so store.Options) *Gateway {
	t.Helper()
	st := configsync.NewState()
	snap := config.Snapshot{Revision: 1, NodeID: "n-flow", Instances: []config.Instance{{ID: "i-flow", OrgID: "o-flow", Status: config.StatusRunning, AllowAnonymous: true, Quotas: q,
		ACL: []config.ACLRule{{ID: "r-all", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "#"}}}}}
	if err := st.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &snap}); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(t.TempDir(), so)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(Options{MQTTAddr: "127.0.0.1:0", Config: st, DefaultInstance: "i-flow", Store: s, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close(); s.Close() })
	return gw
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func waitNoConnections(t *testing.T, gw *Gateway) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); gw.Connections() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", gw.Connections())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestQoS1TenToTenLosesNothing (issue 9): 10 publishers → 10 clean-session
// subscribers, 200,000 QoS 1 messages of 100 B through a node: every one is
// delivered, in order per topic, and the node's heap afterwards is within a
// few MiB of before (nothing was kept per subscriber).
func TestQoS1TenToTenLosesNothing(t *testing.T) {
	gw := storeNode(t)
	heap0 := heapAlloc()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := mqttload.Flow(ctx, gw.MQTTAddr(), mqttload.FlowOptions{Publishers: 10, Subscribers: 10, Messages: 20000, Payload: 100, QoS: 1,
		Settle: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("10 → 10 QoS 1: %s", r)
	if r.Sent != 200000 || r.Distinct != r.Sent || r.OutOfOrder != 0 {
		t.Fatalf("want all 200000 delivered in order: %s", r)
	}
	waitNoConnections(t, gw)
	heap1 := heapAlloc()
	t.Logf("node heap: %.1f MiB before, %.1f MiB after", float64(heap0)/(1<<20), float64(heap1)/(1<<20))
	if heap1 > heap0+6<<20 {
		t.Fatalf("heap grew from %d to %d bytes over the run", heap0, heap1)
	}
}

// TestSlowSubscriberGetsEverything (issue 9, scaled to fit `make test`): a
// subscriber that handles 1,000 messages a second is sent 10,000 QoS 1
// messages of 1 KiB as fast as the publisher can (≥ 5 MiB of backlog). It
// gets every one in order; the node's heap does not hold the backlog (it
// lives in the store: live heap growth stays under the store's tail-cache
// budget, 2 MiB here, plus 4 MiB); and three other
// subscribers fed at a steady 200 msg/s each lose no rate meanwhile (each
// at least 90 % of its rate before the burst). make bench runs the full
// size (20,000 msg/s for 20 s).
func TestSlowSubscriberGetsEverything(t *testing.T) {
	// The store's tail cache (recent entries of queues being read, shared
	// by all sessions) is capped at 2 MiB here, so that memory beyond it
	// would be backlog held per session.
	const cache = 2 << 20
	gw := storeNodeWith(t, config.Quotas{}, store.Options{TailCacheBytes: cache})
	addr := gw.MQTTAddr()
	client := func(id string, ordered bool) mqtt3.Client {
		opts := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(true).SetAutoReconnect(false).
			SetOrderMatters(ordered).SetKeepAlive(60 * time.Second).SetMaxResumePubInFlight(64)
		c := mqtt3.NewClient(opts)
		if tk := c.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatalf("connect %s: %v", id, tk.Error())
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c
	}
	const slowTotal = 10000
	var slowGot, slowOutOfOrder atomic.Int64
	lastSeq := int64(-1)
	slow := client("slow-sub", true)
	if tk := slow.Subscribe("slow/t", 1, func(_ mqtt3.Client, m mqtt3.Message) {
		p := m.Payload()
		seq := int64(p[0])<<24 | int64(p[1])<<16 | int64(p[2])<<8 | int64(p[3])
		if seq <= lastSeq {
			slowOutOfOrder.Add(1)
		} else {
			lastSeq = seq
			slowGot.Add(1)
		}
		time.Sleep(time.Millisecond) // ~1,000 messages a second
	}); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	const fast = 3
	var fastGot [fast]atomic.Int64
	for i := range fast {
		c := client(fmt.Sprintf("fast-sub-%d", i), false)
		if tk := c.Subscribe(fmt.Sprintf("fast/%d", i), 1, func(mqtt3.Client, mqtt3.Message) { fastGot[i].Add(1) }); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
	}
	// Steady feeders: 200 msg/s to each fast subscriber for the whole test.
	stop := make(chan struct{})
	var feeders sync.WaitGroup
	for i := range fast {
		c := client(fmt.Sprintf("feeder-%d", i), false)
		feeders.Add(1)
		go func() {
			defer feeders.Done()
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					c.Publish(fmt.Sprintf("fast/%d", i), 1, false, []byte("tick"))
				}
			}
		}()
	}
	defer func() { close(stop); feeders.Wait() }()
	rates := func(d time.Duration) [fast]float64 {
		var before, out [fast]float64
		for i := range fast {
			before[i] = float64(fastGot[i].Load())
		}
		time.Sleep(d)
		for i := range fast {
			out[i] = (float64(fastGot[i].Load()) - before[i]) / d.Seconds()
		}
		return out
	}
	time.Sleep(time.Second) // warm up
	baseline := rates(3 * time.Second)

	heap0 := heapAlloc()
	pub := client("burst-pub", false)
	payload := make([]byte, 1024)
	start := time.Now()
	var window []mqtt3.Token
	for i := range slowTotal {
		buf := append([]byte(nil), payload...)
		buf[0], buf[1], buf[2], buf[3] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		window = append(window, pub.Publish("slow/t", 1, false, buf))
		if len(window) == 64 {
			for _, tk := range window {
				if !tk.WaitTimeout(30*time.Second) || tk.Error() != nil {
					t.Fatalf("publish: %v", tk.Error())
				}
			}
			window = window[:0]
		}
	}
	for _, tk := range window {
		tk.WaitTimeout(30 * time.Second)
	}
	published := time.Since(start)
	// The backlog is largest now: the node's live heap must not hold it.
	live, backlog := heapAlloc(), slowTotal-slowGot.Load()
	during := rates(3 * time.Second) // the slow subscriber is far behind now
	t.Logf("published %d × 1 KiB in %s (%.0f msg/s); slow subscriber has %d", slowTotal, published.Round(time.Millisecond),
		slowTotal/published.Seconds(), slowGot.Load())
	for deadline := time.Now().Add(60 * time.Second); slowGot.Load() < slowTotal; {
		if time.Now().After(deadline) {
			t.Fatalf("slow subscriber got %d of %d", slowGot.Load(), slowTotal)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("slow subscriber: all %d in %s, %d out of order or repeated; node live heap %.1f MiB before the burst, %.1f MiB with %d messages (%.1f MiB) behind",
		slowTotal, time.Since(start).Round(time.Millisecond), slowOutOfOrder.Load(), float64(heap0)/(1<<20), float64(live)/(1<<20), backlog, float64(backlog)/1024)
	if slowOutOfOrder.Load() != 0 {
		t.Fatalf("%d deliveries out of order or repeated", slowOutOfOrder.Load())
	}
	if backlog < 5000 {
		t.Fatalf("only %d messages behind when publishing ended: the test did not build a backlog", backlog)
	}
	if live > heap0+cache+4<<20 {
		t.Fatalf("live heap %d bytes with %d KiB behind, %d before: the backlog is held in memory", live, backlog, heap0)
	}
	for i := range fast {
		t.Logf("fast subscriber %d: %.0f msg/s before the burst, %.0f during", i, baseline[i], during[i])
		if during[i] < 0.9*baseline[i] {
			t.Fatalf("fast subscriber %d slowed from %.0f to %.0f msg/s behind the slow one", i, baseline[i], during[i])
		}
	}
}

// TestBacklogLimitDisconnects (issue 9): a client that stays behind longer
// than its instance's max_backlog_seconds is disconnected — MQTT 5 with
// DISCONNECT 0x97, MQTT 3.1.1 by closing — while a client that keeps up
// stays connected.
func TestBacklogLimitDisconnects(t *testing.T) {
	gw := storeNodeWith(t, config.Quotas{MaxBacklogSeconds: 1}, store.Options{})
	addr := gw.MQTTAddr()

	// MQTT 5, never acknowledges.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	reason := make(chan byte, 1)
	v5 := paho.NewClient(paho.ClientConfig{Conn: conn, EnableManualAcknowledgment: true,
		OnServerDisconnect: func(d *paho.Disconnect) { reason <- d.ReasonCode }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := v5.Connect(ctx, &paho.Connect{ClientID: "stuck-v5", CleanStart: true, KeepAlive: 60}); err != nil {
		t.Fatal(err)
	}
	if _, err := v5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "backlog/t", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	// MQTT 3.1.1 over a raw socket: reads deliveries, never acknowledges.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	connect := []byte{0x10, 20, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 8, 's', 't', 'u', 'c', 'k', '-', 'v', '3'}
	subscribe := []byte{0x82, 16, 0, 1, 0, 9, 'b', 'a', 'c', 'k', 'l', 'o', 'g', '/', 't', 1}
	connect[1] = byte(len(connect) - 2)
	subscribe[1] = byte(len(subscribe) - 2)
	if _, err := raw.Write(append(connect, subscribe...)); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 9)
	if _, err := io.ReadFull(raw, hdr); err != nil || hdr[0] != 0x20 || hdr[4] != 0x90 || hdr[8] != 1 {
		t.Fatalf("CONNACK+SUBACK %x: %v", hdr, err)
	}
	lost := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, raw) // until the server closes it
		close(lost)
	}()
	// A client that keeps up, fed all along.
	var kept atomic.Int64
	ok := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("keeps-up").SetAutoReconnect(false))
	if tk := ok.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	defer ok.Disconnect(0)
	if tk := ok.Subscribe("live/t", 1, func(mqtt3.Client, mqtt3.Message) { kept.Add(1) }); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	pub := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("backlog-pub").SetAutoReconnect(false))
	if tk := pub.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	defer pub.Disconnect(0)
	for i := range 3 {
		pub.Publish("backlog/t", 1, false, fmt.Sprint("m", i)).WaitTimeout(5 * time.Second)
	}
	start := time.Now()
	done := time.After(15 * time.Second)
	gotV5, gotV3 := false, false
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !gotV5 || !gotV3 {
		select {
		case code := <-reason:
			if code != 0x97 {
				t.Fatalf("MQTT 5 client disconnected with 0x%02x, want 0x97", code)
			}
			gotV5 = true
			t.Logf("MQTT 5 client disconnected (0x97) after %s", time.Since(start).Round(time.Millisecond))
		case <-lost:
			lost = nil
			gotV3 = true
			t.Logf("MQTT 3.1.1 client closed after %s", time.Since(start).Round(time.Millisecond))
		case <-tick.C:
			pub.Publish("live/t", 1, false, "tick")
		case <-done:
			t.Fatalf("after 15 s: MQTT 5 disconnected %v, MQTT 3.1.1 closed %v", gotV5, gotV3)
		}
	}
	// The limit runs from the first delivery, a few milliseconds before start.
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("disconnected after %s, before the 1 s limit", el)
	}
	if !ok.IsConnectionOpen() || kept.Load() == 0 {
		t.Fatalf("the client that keeps up: connected %v, received %d", ok.IsConnectionOpen(), kept.Load())
	}
}

// TestRetentionFollowsQuotas (issue 6): the node keeps an instance's
// messages as long as its session expiry cap, drops older ones, and reports
// the bytes it stores in the usage (for storage billing).
func TestRetentionFollowsQuotas(t *testing.T) {
	gw := storeNodeWith(t, config.Quotas{MaxSessionExpirySeconds: 60}, store.Options{})
	pub := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + gw.MQTTAddr()).SetClientID("ret-pub").SetAutoReconnect(false))
	if tk := pub.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	defer pub.Disconnect(0)
	for i := range 100 {
		if tk := pub.Publish("ret/t", 1, false, fmt.Sprintf("m-%03d", i)); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
	}
	stored := gw.store.Stats("i-flow").LogBytes
	if stored < 100*5 {
		t.Fatalf("store holds %d bytes for 100 messages", stored)
	}
	var reported int64 = -1
	for _, u := range gw.Metrics().DrainUsage() {
		if u.InstanceID == "i-flow" {
			reported = u.StoredBytes
		}
	}
	if reported != stored {
		t.Fatalf("usage reports %d stored bytes, the store holds %d", reported, stored)
	}
	ctx := context.Background()
	if err := gw.store.EnforceRetention(ctx, time.Now().Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := gw.store.Stats("i-flow").LogBytes; got != stored {
		t.Fatalf("within the 60 s cap: %d bytes left of %d", got, stored)
	}
	if err := gw.store.EnforceRetention(ctx, time.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := gw.store.Stats("i-flow").LogBytes; got != 0 {
		t.Fatalf("past the 60 s cap: %d bytes left of %d", got, stored)
	}
}
