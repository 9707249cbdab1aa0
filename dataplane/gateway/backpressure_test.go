package gateway

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/store"
)

// Plans' quotas as migrations 00005, 00009 and 00012 grant them.
var (
	freePlan = config.Quotas{MaxConnections: 100, MaxConnectsPerSecond: 10, MaxPublishPerSecond: 100, MaxPublishPerSecondPerClient: 20,
		MaxBytesPerSecond: 1048576, MaxPayloadBytes: 65536, MaxSubscriptionsPerClient: 20, MaxTopicLevels: 8, MaxRetainedMessages: 100,
		MaxSessionExpirySeconds: 86400, MaxInflight: 32, MaxBacklogSeconds: 3600, MaxThrottleSeconds: 30}
	enterprisePlan = config.Quotas{MaxConnections: 200000, MaxConnectsPerSecond: 2000, MaxPublishPerSecond: 200000, MaxPublishPerSecondPerClient: 1000,
		MaxBytesPerSecond: 1073741824, MaxPayloadBytes: 4194304, MaxSubscriptionsPerClient: 200, MaxTopicLevels: 64, MaxRetainedMessages: 1000000,
		MaxSessionExpirySeconds: 31536000, MaxInflight: 256, MaxBacklogSeconds: 2592000, MaxThrottleSeconds: 30}
)

// quotaFlow drives publishers at full speed against a node's rate quota:
// publisher p sends msgs messages (payload: publisher, sequence) to
// "load/<p>"; subscriber s receives the topics of publishers s, s+S, …
type quotaFlow struct {
	addr       string
	v5         bool
	pubs, subs int
	msgs       int
	qos        byte
	payload    int
	window     int  // v3.1.1 QoS ≥ 1: publishes in flight before waiting for their acks
	persistent bool // subscribers keep a session (clean false / session expiry)
}

// flowResult is what a quotaFlow measured.
type flowResult struct {
	sent, delivered, distinct, outOfOrder int64
	start                                 time.Time
	last                                  time.Time // last delivery
	published                             time.Time // every publisher done (v3.1.1: acknowledged)
	pubs, msgs                            int
	half, end                             []int64 // per publisher: delivery of its message msgs/2 and of its last (unix ns)
}

// rate is the aggregate steady publish rate: the sum over the publishers
// of the rate at which the second half of their messages arrived. By then
// the bucket's initial burst (and whatever refilled while the burst was
// read) is long spent, so this is the rate the quota lets through; a
// publisher not held back would show the node's full speed instead.
func (r flowResult) rate() float64 {
	var sum float64
	for p := range r.pubs {
		if d := time.Duration(r.end[p] - r.half[p]).Seconds(); d > 0 && r.half[p] > 0 {
			sum += float64(r.msgs-1-r.msgs/2) / d
		}
	}
	return sum
}

func (r flowResult) String() string {
	return fmt.Sprintf("sent %d, delivered %d (%d distinct, %d out of order) in %s (published in %s)",
		r.sent, r.delivered, r.distinct, r.outOfOrder, r.last.Sub(r.start).Round(time.Millisecond), r.published.Sub(r.start).Round(time.Millisecond))
}

func (f quotaFlow) run(ctx context.Context) (flowResult, error) {
	if f.window <= 0 {
		f.window = 100
	}
	res := flowResult{pubs: f.pubs, msgs: f.msgs}
	half := make([]atomic.Int64, f.pubs)
	end := make([]atomic.Int64, f.pubs)
	var delivered, distinct, ooo atomic.Int64
	var lastAt atomic.Int64
	seen := make([][]atomic.Bool, f.pubs)
	lastSeq := make([]atomic.Int64, f.pubs)
	for p := range seen {
		seen[p] = make([]atomic.Bool, f.msgs)
		lastSeq[p].Store(-1)
	}
	onMsg := func(b []byte) {
		now := time.Now().UnixNano()
		delivered.Add(1)
		lastAt.Store(now)
		if len(b) < 6 {
			return
		}
		p, seq := int(b[0])<<8|int(b[1]), int(b[2])<<24|int(b[3])<<16|int(b[4])<<8|int(b[5])
		if p >= f.pubs || seq >= f.msgs {
			return
		}
		if !seen[p][seq].Swap(true) {
			distinct.Add(1)
		}
		switch seq {
		case f.msgs / 2:
			half[p].Store(now)
		case f.msgs - 1:
			end[p].Store(now)
		}
		if int64(seq) < lastSeq[p].Load() {
			ooo.Add(1)
		} else {
			lastSeq[p].Store(int64(seq))
		}
	}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for s := range f.subs {
		var topics []string
		for p := s; p < f.pubs; p += f.subs {
			topics = append(topics, fmt.Sprintf("load/%d", p))
		}
		id := fmt.Sprintf("qf-sub-%d", s)
		if f.v5 {
			c, err := dial5(ctx, f.addr, id, f.persistent, func(p *paho.Publish) { onMsg(p.Payload) })
			if err != nil {
				return res, err
			}
			closers = append(closers, func() { _ = c.Disconnect(&paho.Disconnect{}) })
			sub := &paho.Subscribe{}
			for _, t := range topics {
				sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: t, QoS: f.qos})
			}
			if _, err := c.Subscribe(ctx, sub); err != nil {
				return res, fmt.Errorf("subscribe: %w", err)
			}
		} else {
			c, err := dial3(f.addr, id, f.persistent, func(b []byte) { onMsg(b) })
			if err != nil {
				return res, err
			}
			closers = append(closers, func() { c.Disconnect(0) })
			for _, t := range topics {
				if tok := c.Subscribe(t, f.qos, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					return res, fmt.Errorf("subscribe: %v", tok.Error())
				}
			}
		}
	}
	type publisher func(p, i int, b []byte) error
	pubs := make([]publisher, f.pubs)
	flush := make([]func() error, f.pubs)
	for p := range f.pubs {
		id := fmt.Sprintf("qf-pub-%d", p)
		topic := fmt.Sprintf("load/%d", p)
		if f.v5 {
			c, err := dial5(ctx, f.addr, id, false, nil)
			if err != nil {
				return res, err
			}
			closers = append(closers, func() { _ = c.Disconnect(&paho.Disconnect{}) })
			// Asynchronous sends from one goroutine keep the order; the
			// client's session holds at most the server's receive maximum
			// in flight.
			pubs[p] = func(_, _ int, b []byte) error {
				_, err := c.PublishWithOptions(ctx, &paho.Publish{Topic: topic, QoS: f.qos, Payload: b}, paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
				return err
			}
			flush[p] = func() error { return nil }
		} else {
			c, err := dial3(f.addr, id, false, nil)
			if err != nil {
				return res, err
			}
			closers = append(closers, func() { c.Disconnect(0) })
			var window []mqtt3.Token
			wait := func() error {
				for _, t := range window {
					if !t.WaitTimeout(60*time.Second) || t.Error() != nil {
						return fmt.Errorf("publish not acknowledged: %v", t.Error())
					}
				}
				window = window[:0]
				return nil
			}
			pubs[p] = func(_, _ int, b []byte) error {
				window = append(window, c.Publish(topic, f.qos, false, b))
				if len(window) >= f.window {
					return wait()
				}
				return nil
			}
			flush[p] = wait
		}
	}
	res.start = time.Now()
	var wg sync.WaitGroup
	var sent atomic.Int64
	errs := make(chan error, f.pubs)
	for p := range f.pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range f.msgs {
				b := make([]byte, max(f.payload, 6))
				b[0], b[1] = byte(p>>8), byte(p)
				b[2], b[3], b[4], b[5] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
				if err := pubs[p](p, i, b); err != nil {
					errs <- err
					return
				}
				sent.Add(1)
			}
			if err := flush[p](); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	res.published = time.Now()
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	res.sent = sent.Load()
	// Wait for the deliveries: until all arrived, or nothing arrived for 5 s.
	for distinct.Load() < res.sent {
		before := delivered.Load()
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(5 * time.Second):
		}
		if delivered.Load() == before {
			break
		}
	}
	res.delivered, res.distinct, res.outOfOrder = delivered.Load(), distinct.Load(), ooo.Load()
	res.last = time.Unix(0, lastAt.Load())
	for p := range f.pubs {
		res.half = append(res.half, half[p].Load())
		res.end = append(res.end, end[p].Load())
	}
	return res, nil
}

func dial3(addr, id string, persistent bool, onMsg func([]byte)) (mqtt3.Client, error) {
	opts := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(!persistent).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).SetProtocolVersion(4).
		SetKeepAlive(60 * time.Second).SetMessageChannelDepth(10000).SetWriteTimeout(60 * time.Second)
	if onMsg != nil {
		opts.SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { onMsg(m.Payload()) })
	}
	c := mqtt3.NewClient(opts)
	if t := c.Connect(); !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v", id, t.Error())
	}
	return c, nil
}

func dial5(ctx context.Context, addr, id string, persistent bool, onMsg func(*paho.Publish)) (*paho.Client, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	cfg := paho.ClientConfig{Conn: nc, PacketTimeout: time.Minute}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			onMsg(pr.Packet)
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	cp := &paho.Connect{ClientID: id, CleanStart: !persistent, KeepAlive: 60}
	if persistent {
		expiry := uint32(600)
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if ca, err := c.Connect(cctx, cp); err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect %s: %w (%+v)", id, err, ca)
	}
	return c, nil
}

// nodeUsage is what the node's usage counters say for an instance (without
// draining them).
func nodeUsage(gw *Gateway, inst string) (in, out, quotaDrops int64) {
	c := gw.metrics.of(inst)
	if v, ok := c.drops.Load(DropQuota); ok {
		quotaDrops = v.(*atomic.Int64).Load()
	}
	return c.msgsIn.Load(), c.msgsOut.Load(), quotaDrops
}

// TestFreePlanBackpressure (issue 14): on the Free plan (20 publishes/s per
// client), one MQTT 3.1.1 client publishing as fast as it can to a
// persistent subscriber is slowed down to the plan's rate, and every
// message arrives, in order: 200 at QoS 1, 100 at QoS 0. The node counts
// exactly what was sent and delivered, and no drop.
func TestFreePlanBackpressure(t *testing.T) {
	for _, tc := range []struct {
		qos  byte
		msgs int
	}{{1, 200}, {0, 100}} {
		t.Run(fmt.Sprintf("QoS %d", tc.qos), func(t *testing.T) {
			gw := storeNodeWith(t, freePlan, store.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r, err := quotaFlow{addr: gw.MQTTAddr(), pubs: 1, subs: 1, msgs: tc.msgs, qos: tc.qos, persistent: true}.run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(r)
			if r.distinct != int64(tc.msgs) || r.delivered != int64(tc.msgs) || r.outOfOrder != 0 {
				t.Fatalf("want all %d delivered once, in order: %s", tc.msgs, r)
			}
			// After the bucket's burst (one second's worth) the rate is the
			// plan's.
			q := float64(freePlan.MaxPublishPerSecondPerClient)
			if rate := r.rate(); rate < q*0.8 || rate > q*1.2 {
				t.Fatalf("steady rate %.1f msg/s, want %.0f ± 20 %%", rate, q)
			}
			// And over the whole run, less the burst the bucket grants.
			if rate := float64(r.sent-int64(q)) / r.last.Sub(r.start).Seconds(); rate < q*0.8 || rate > q*1.2 {
				t.Fatalf("rate beyond the burst %.1f msg/s, want %.0f ± 20 %%", rate, q)
			}
			t.Logf("steady rate %.1f msg/s (quota %.0f)", r.rate(), q)
			if !waitFor(t, 3*time.Second, func() bool {
				in, out, _ := nodeUsage(gw, "i-flow")
				return in == int64(tc.msgs) && out == int64(tc.msgs)
			}) {
				in, out, _ := nodeUsage(gw, "i-flow")
				t.Fatalf("node counted %d in, %d out; devices sent and received %d", in, out, tc.msgs)
			}
			if _, _, drops := nodeUsage(gw, "i-flow"); drops != 0 {
				t.Fatalf("%d quota drops", drops)
			}
		})
	}
}

// TestEnterpriseBackpressure (issue 14, scaled to fit `make test`): an
// Enterprise instance whose per-client quota is lowered to 100 msg/s, 10
// publishers × 600 QoS 1 messages → 10 subscribers, for MQTT 3.1.1 and
// MQTT 5: every message is delivered, in order, the steady aggregate
// publish rate is within 10 % of 10 × 100 msg/s, and the node counts
// exactly what was sent and delivered. (The plan's own 1,000 msg/s per
// client, 10 × 20,000, is BenchmarkQuotaBackpressure: 10,000 msg/s of QoS 1
// is more than a test may ask of a shared 2-core machine — measured
// unthrottled there at 8,100 msg/s (3.1.1) and 5,500 msg/s (MQTT 5) under
// load.)
func TestEnterpriseBackpressure(t *testing.T) {
	q := enterprisePlan
	q.MaxPublishPerSecondPerClient = 100
	for _, v5 := range []bool{false, true} {
		t.Run(map[bool]string{false: "MQTT 3.1.1", true: "MQTT 5"}[v5], func(t *testing.T) {
			gw := storeNodeWith(t, q, store.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			const pubs, msgs = 10, 600
			r, err := quotaFlow{addr: gw.MQTTAddr(), v5: v5, pubs: pubs, subs: pubs, msgs: msgs, qos: 1, payload: 100}.run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(r)
			checkQuotaFlow(t, gw, r, pubs*msgs, q.MaxPublishPerSecondPerClient, 0.1)
		})
	}
}

// checkQuotaFlow asserts a quotaFlow's promise: want messages delivered
// exactly once each, in order; the steady aggregate rate within
// tol of the publishers' quotas (perClient each); the node's counters equal
// to what the devices sent and received, with no quota drop.
func checkQuotaFlow(t testing.TB, gw *Gateway, r flowResult, want, perClient int, tol float64) {
	t.Helper()
	if r.sent != int64(want) || r.distinct != int64(want) || r.delivered != int64(want) || r.outOfOrder != 0 {
		t.Fatalf("want all %d delivered once, in order: %s", want, r)
	}
	quota := float64(r.pubs * perClient)
	if rate := r.rate(); rate < quota*(1-tol) || rate > quota*(1+tol) {
		t.Fatalf("steady aggregate rate %.0f msg/s, want %.0f ± %.0f %%", rate, quota, tol*100)
	}
	t.Logf("steady aggregate rate %.0f msg/s (quota %.0f)", r.rate(), quota)
	deadline := time.Now().Add(3 * time.Second)
	for {
		in, out, drops := nodeUsage(gw, "i-flow")
		if in == r.sent && out == r.delivered && drops == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node counted %d in, %d out, %d quota drops; devices sent %d and received %d", in, out, drops, r.sent, r.delivered)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// percentile is a small helper for the benchmark's figures.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[int(p*float64(len(s)-1))]
}
