package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/dataplane/store/jsstore"
	"github.com/aeriemq/aerie/internal/freeport"
)

// Cell throughput run (issue 20): real paho MQTT 3.1.1 clients over
// loopback sockets, QoS 1, acknowledgements counted.
const (
	cellPublishers = 8
	cellWindow     = 64 // QoS 1 publishes in flight per publisher (sliding)
	cellPayload    = 100
	cellRun        = 8 * time.Second
	cellSecret     = "bench-cell-secret"
	cellInstance   = "i-cell"
)

// BenchmarkCellThroughput: QoS 1 publish throughput through a gateway on a
// single RocksDB store and through a gateway of a 3-node cell (its
// jsstore.Store on one of 3 in-process NATS servers clustered over
// loopback routes with a shared secret, Replicas 3, sync_always: a PUBACK
// means fsynced on a quorum), in the same run. 8 publishers keep 64
// publishes of 100 B in flight each, 4 s on each gateway, twice in turn;
// the rate is the PUBACKs received per second.
//
// Then, when the JetStream backend serves a cell (it implements
// store.Cell: queue events from other nodes' appends), a persistent
// subscriber on a second gateway of the cell (another NATS server, its
// own store) receives what is published on the first: the cross-node
// delivery rate and latency are reported too. Without store.Cell the
// cross-node part is skipped and said so (publish side only).
//
//	go test -run '^$' -bench BenchmarkCellThroughput -benchtime=1x ./dataplane/gateway/
func BenchmarkCellThroughput(b *testing.B) {
	for range b.N {
		rs, err := store.Open(b.TempDir(), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { rs.Close() }) // after the gateway's Close
		rocksGW := cellBenchGateway(b, rs, "n-rocks")
		srvs := startBenchCell(b)
		stA, stB := openBenchCellStore(b, srvs[0], "n1"), openBenchCellStore(b, srvs[1], "n2")
		gwA := cellBenchGateway(b, stA, "n1")
		// Alternate the two (A B A B, cellRun/2 each) so a change of the
		// machine's load during the run affects both alike.
		var rocks, cell pubResult
		for round := range 2 {
			r := publishFor(b, rocksGW.MQTTAddr(), fmt.Sprint("rocks", round), load{d: cellRun / 2})
			c := publishFor(b, gwA.MQTTAddr(), fmt.Sprint("cell", round), load{d: cellRun / 2})
			b.Logf("round %d: RocksDB node %s; cell R3 node %s", round+1, r, c)
			rocks, cell = rocks.add(r), cell.add(c)
		}
		b.Logf("RocksDB node: %s", rocks)
		b.Logf("cell R3 node: %s", cell)
		b.ReportMetric(rocks.rate, "rocksdb_msgs/s")
		b.ReportMetric(cell.rate, "cell_r3_msgs/s")
		b.ReportMetric(cell.rate/rocks.rate, "cell_vs_rocksdb")
		if _, ok := any(stB).(store.Cell); !ok {
			b.Log("cross-node subscriber skipped: jsstore.Store is not a store.Cell in this tree (no queue events from other nodes' appends); publish side only")
			continue
		}
		gwB := cellBenchGateway(b, stB, "n2")
		x := crossNode(b, gwA.MQTTAddr(), gwB.MQTTAddr())
		b.Logf("cell cross-node: %s", x)
		b.ReportMetric(x.rate, "cell_cross_node_msgs/s")
		b.ReportMetric(float64(x.p99.Microseconds())/1000, "cell_cross_node_p99_ms")
	}
}

// cellBenchGateway starts a gateway serving cellInstance (anonymous, all
// allowed) on be.
func cellBenchGateway(b *testing.B, be store.Backend, node string) *Gateway {
	b.Helper()
	st := configsync.NewState()
	snap := config.Snapshot{Revision: 1, NodeID: node, Instances: []config.Instance{{ID: cellInstance, OrgID: "o-cell", Status: config.StatusRunning, AllowAnonymous: true,
		ACL: []config.ACLRule{{ID: "r-all", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "#"}}}}}
	if err := st.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &snap}); err != nil {
		b.Fatal(err)
	}
	gw, err := New(Options{MQTTAddr: "127.0.0.1:0", Config: st, DefaultInstance: cellInstance, Store: be, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gw.Close() })
	return gw
}

// startBenchCell starts three NATS servers with JetStream clustered over
// loopback routes authenticated by cellSecret (as `aerie dataplane --cell`
// does).
func startBenchCell(b *testing.B) []*server.Server {
	b.Helper()
	ports := freeport.Ports(b, 3)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var srvs []*server.Server
	for i, p := range ports {
		ns, err := jsstore.StartServer(jsstore.ServerConfig{Name: fmt.Sprintf("n%d", i+1), Dir: b.TempDir(),
			ClusterName: "c1", ClusterPort: p, Routes: routes, Secret: cellSecret})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(ns.Shutdown)
		srvs = append(srvs, ns)
	}
	return srvs
}

// openBenchCellStore opens a Replicas 3 store on ns for node, waiting for
// the cluster's meta leader and the instance stream's first R3 write.
func openBenchCellStore(b *testing.B, ns *server.Server, node string) *jsstore.Store {
	b.Helper()
	nc, err := jsstore.ConnectSecret(ns, cellSecret)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	o := jsstore.Options{Replicas: 3, Timeout: 5 * time.Second, Node: node}
	ctx := context.Background()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := jsstore.Open(c, nc, o)
		if err == nil {
			_, err = st.Append(c, []store.Message{{Instance: cellInstance, Topic: "warmup/" + node, QoS: 1, Payload: []byte("w")}})
		}
		cancel()
		if err == nil {
			b.Cleanup(func() { st.Close() })
			return st
		}
		if time.Now().After(deadline) {
			b.Fatalf("R3 store on %s: %v", node, err)
		}
	}
}

// pubResult is what a publish run measured.
type pubResult struct {
	acked   int64
	elapsed time.Duration
	rate    float64 // PUBACKs per second
}

// add sums two runs.
func (r pubResult) add(o pubResult) pubResult {
	r.acked += o.acked
	r.elapsed += o.elapsed
	r.rate = float64(r.acked) / r.elapsed.Seconds()
	return r
}

func (r pubResult) String() string {
	return fmt.Sprintf("%d QoS 1 publishes acknowledged in %s: %.0f msg/s (%d publishers × %d in flight, %d B)",
		r.acked, r.elapsed.Round(time.Millisecond), r.rate, cellPublishers, cellWindow, cellPayload)
}

// benchClient connects a paho MQTT 3.1.1 client.
func benchClient(b *testing.B, addr, id string, clean bool, onMsg mqtt3.MessageHandler) mqtt3.Client {
	b.Helper()
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).SetAutoReconnect(false).
		SetKeepAlive(60 * time.Second).SetMessageChannelDepth(10000).SetWriteTimeout(30 * time.Second).SetOrderMatters(false)
	if onMsg != nil {
		o.SetDefaultPublishHandler(onMsg)
	}
	c := mqtt3.NewClient(o)
	if tk := c.Connect(); !tk.WaitTimeout(15*time.Second) || tk.Error() != nil {
		b.Fatalf("connect %s: %v", id, tk.Error())
	}
	return c
}

// load is a publish run: cellPublishers clients, each keeping up to
// cellWindow QoS 1 publishes in flight to "load/<p>" until d passed or it
// sent perPub (0: no count limit), one every pace (0: as fast as acks
// come).
type load struct {
	d      time.Duration
	perPub int
	pace   time.Duration
}

// publishFor runs l on addr and counts the PUBACKs. Payloads carry the
// publisher, a sequence number and the send time.
func publishFor(b *testing.B, addr, name string, l load) pubResult {
	b.Helper()
	var acked atomic.Int64
	var lastAck atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, cellPublishers)
	start := time.Now()
	stop := start.Add(l.d)
	for p := range cellPublishers {
		c := benchClient(b, addr, fmt.Sprintf("%s-pub-%d", name, p), true, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Disconnect(0)
			ring := make([]mqtt3.Token, 0, cellWindow)
			wait := func(tk mqtt3.Token) bool {
				if !tk.WaitTimeout(30*time.Second) || tk.Error() != nil {
					errs <- fmt.Errorf("publisher %d: PUBACK: %v", p, tk.Error())
					return false
				}
				acked.Add(1)
				lastAck.Store(time.Now().UnixNano())
				return true
			}
			for seq := 0; time.Now().Before(stop) && (l.perPub == 0 || seq < l.perPub); seq++ {
				if len(ring) == cellWindow {
					if !wait(ring[0]) {
						return
					}
					ring = append(ring[:0], ring[1:]...)
				}
				ring = append(ring, c.Publish(fmt.Sprintf("load/%d", p), 1, false, benchPayload(p, seq)))
				if l.pace > 0 {
					time.Sleep(l.pace)
				}
			}
			for _, tk := range ring {
				if !wait(tk) {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	el := time.Unix(0, lastAck.Load()).Sub(start)
	return pubResult{acked: acked.Load(), elapsed: el, rate: float64(acked.Load()) / el.Seconds()}
}

// benchPayload is cellPayload bytes: publisher (1 byte), sequence (4),
// send time in Unix nanoseconds (8).
func benchPayload(p, seq int) []byte {
	buf := make([]byte, cellPayload)
	buf[0] = byte(p)
	buf[1], buf[2], buf[3], buf[4] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
	t := time.Now().UnixNano()
	for i := range 8 {
		buf[5+i] = byte(t >> (56 - 8*i))
	}
	return buf
}

// crossResult is what a cross-node run measured.
type crossResult struct {
	burst    pubResult
	rate     float64 // burst: distinct deliveries per second, first publish to last delivery
	paced    int64   // messages of the paced phase
	p50, p99 time.Duration
}

func (r crossResult) String() string {
	return fmt.Sprintf("a persistent subscriber on node 2 received all of a burst published on node 1 (%s) at %.0f msg/s; paced %d msg at 100 msg/s: latency p50 %s p99 %s",
		r.burst, r.rate, r.paced, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
}

// crossReceiver is a persistent session (clean session false, QoS 1,
// load/#) counting distinct deliveries and their latency.
type crossReceiver struct {
	mu   sync.Mutex
	seen map[[5]byte]bool
	lat  []time.Duration
	last atomic.Int64
}

func (r *crossReceiver) handle(_ mqtt3.Client, m mqtt3.Message) {
	p := m.Payload()
	if len(p) < 13 {
		return
	}
	now := time.Now()
	var sent int64
	for i := range 8 {
		sent = sent<<8 | int64(p[5+i])
	}
	r.mu.Lock()
	if k := [5]byte(p[:5]); !r.seen[k] {
		r.seen[k] = true
		r.lat = append(r.lat, now.Sub(time.Unix(0, sent)))
	}
	r.mu.Unlock()
	r.last.Store(now.UnixNano())
}

// await waits (at most 60 s) until n distinct messages arrived and
// returns the latencies.
func (r *crossReceiver) await(b *testing.B, n int64) []time.Duration {
	b.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r.mu.Lock()
		got, lat := int64(len(r.seen)), r.lat
		if got >= n {
			r.seen, r.lat = map[[5]byte]bool{}, nil
		}
		r.mu.Unlock()
		if got >= n {
			return lat
		}
		if time.Now().After(deadline) {
			b.Fatalf("the subscriber on node 2 received %d of %d acknowledged messages", got, n)
		}
	}
}

// crossNode publishes on pubAddr while a persistent session on subAddr
// receives: first paced (100 msg/s for 5 s: latency), then a burst of
// 500 per publisher (delivery rate).
func crossNode(b *testing.B, pubAddr, subAddr string) crossResult {
	b.Helper()
	rcv := &crossReceiver{seen: map[[5]byte]bool{}}
	sub := benchClient(b, subAddr, "cell-sub", false, rcv.handle)
	defer sub.Disconnect(0)
	if tk := sub.Subscribe("load/#", 1, nil); !tk.WaitTimeout(15*time.Second) || tk.Error() != nil {
		b.Fatalf("subscribe on node 2: %v", tk.Error())
	}
	paced := publishFor(b, pubAddr, "paced", load{d: 5 * time.Second, pace: cellPublishers * 10 * time.Millisecond})
	lat := rcv.await(b, paced.acked)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := crossResult{paced: paced.acked, p50: lat[len(lat)/2], p99: lat[len(lat)*99/100]}
	start := time.Now()
	r.burst = publishFor(b, pubAddr, "burst", load{d: time.Minute, perPub: 500})
	rcv.await(b, r.burst.acked)
	r.rate = float64(r.burst.acked) / time.Unix(0, rcv.last.Load()).Sub(start).Seconds()
	return r
}
