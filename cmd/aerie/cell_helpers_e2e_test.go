package main_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aeriemq/aerie/internal/freeport"
)

// A cell of `aerie dataplane --cell` processes on loopback, for the
// failover test.

const cellSecret = "cell-test-secret-5d1e8c"

// cellNode is one `aerie dataplane` process of a test cell.
type cellNode struct {
	name, id, token string
	ports           ports
	cluster, nats   string
	dir             string
	p               *proc
	alive           bool
}

type testCell struct {
	t     *testing.T
	name  string
	base  string // control plane URL
	nodes []*cellNode
	env   []string // extra environment of the nodes
}

// freeAddrN returns n free loopback addresses (see internal/freeport).
func freeAddrN(t testing.TB, n int) []string {
	t.Helper()
	return freeport.Addrs(t, n)
}

// newTestCell registers n nodes in cell name through the admin API.
func newTestCell(t *testing.T, op api, base, name string, n int) *testCell {
	c := &testCell{t: t, name: name, base: base}
	for i := range n {
		var tok nodeOut
		op.call(t, "POST", "/v1/admin/nodes", map[string]any{"name": fmt.Sprintf("%s-n%d", name, i+1), "cell": name}, 201, &tok)
		addrs := freeAddrN(t, 2)
		c.nodes = append(c.nodes, &cellNode{name: fmt.Sprintf("%s-n%d", name, i+1), id: tok.ID, token: tok.Token, ports: freePorts(t),
			cluster: addrs[0], nats: addrs[1], dir: newDataDir(t)})
	}
	return c
}

// start starts node i (again, on the same data directory and ports).
func (c *testCell) start(i int) {
	n := c.nodes[i]
	var routes []string
	for j, o := range c.nodes {
		if j != i {
			routes = append(routes, o.cluster)
		}
	}
	args := append([]string{"dataplane", "--data-dir", n.dir, "--control-plane", c.base, "--node-token", n.token,
		"--cell", c.name, "--cluster-addr", n.cluster, "--cluster-routes", strings.Join(routes, ","),
		"--cell-nats-addr", n.nats, "--cell-node-ttl", "3s", "--usage-interval", "2s"}, n.ports.args()...)
	n.p = start(c.t, cleanEnv(append([]string{"AERIE_CLUSTER_SECRET=" + cellSecret}, c.env...)...), args...)
	n.alive = true
}

// kill kills node i with SIGKILL and waits for it to be gone.
func (c *testCell) kill(i int) {
	n := c.nodes[i]
	_ = n.p.cmd.Process.Signal(syscall.SIGKILL)
	n.p.wait(c.t, 10*time.Second)
	n.alive = false
}

// index returns the node with this ID (the NATS server name), or -1.
func (c *testCell) index(id string) int {
	for i, n := range c.nodes {
		if n.id == id {
			return i
		}
	}
	return -1
}

// js connects to the JetStream of a live node.
func (c *testCell) js() (*nats.Conn, jetstream.JetStream) {
	c.t.Helper()
	for _, n := range c.nodes {
		if !n.alive {
			continue
		}
		nc, err := nats.Connect("nats://"+n.nats, nats.UserInfo("aerie", cellSecret), nats.Timeout(2*time.Second))
		if err != nil {
			continue
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			continue
		}
		return nc, js
	}
	c.t.Fatal("no live node's NATS port answers")
	return nil, nil
}

// streamInfo is the instance stream's info, asked of a live node.
func (c *testCell) streamInfo(instance string) (*jetstream.StreamInfo, error) {
	nc, js := c.js()
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "AERIE_M_"+instance)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

// leader returns the index of the node leading the instance's stream.
func (c *testCell) leader(instance string) int {
	c.t.Helper()
	var last error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		info, err := c.streamInfo(instance)
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
			if i := c.index(info.Cluster.Leader); i >= 0 && c.nodes[i].alive {
				return i
			}
		}
		last = err
	}
	c.t.Fatalf("no leader for the stream of %s: %v", instance, last)
	return -1
}

// replicasAgree reports whether every replica of the instance's stream is
// current with no lag (they hold the same last sequence).
func (c *testCell) replicasAgree(instance string) bool {
	info, err := c.streamInfo(instance)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != len(c.nodes)-1 {
		return false
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Offline || r.Lag != 0 {
			return false
		}
	}
	return true
}

// stopPostgres stops the control plane's private Postgres (fast shutdown).
func stopPostgres(t *testing.T, cpDir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cpDir, "pg", "data", "postmaster.pid"))
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if !within(30*time.Second, func() bool { return len(postgresPids(cpDir)) == 0 }) {
		t.Fatal("postgres did not stop")
	}
}

// received is what a subscriber got: every copy per topic, in order.
type received struct {
	mu     sync.Mutex
	byTop  map[string][]int
	lat    []time.Duration // first copies only, while measuring
	seen   map[string]bool
	gauge  bool
	topics map[string]bool
}

func newReceived() *received {
	return &received{byTop: map[string][]int{}, seen: map[string]bool{}, topics: map[string]bool{}}
}

// add records a "<n>|<unix nanos>" payload on topic.
func (r *received) add(topic string, payload []byte) {
	seqS, tsS, _ := strings.Cut(string(payload), "|")
	n, err1 := strconv.Atoi(seqS)
	ts, err2 := strconv.ParseInt(tsS, 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byTop[topic] = append(r.byTop[topic], n)
	k := topic + "#" + seqS
	if !r.seen[k] {
		r.seen[k] = true
		if r.gauge {
			r.lat = append(r.lat, time.Since(time.Unix(0, ts)))
		}
	}
}

func (r *received) measure(on bool) { r.mu.Lock(); r.gauge = on; r.mu.Unlock() }

// check returns, per topic, the acked numbers missing, the duplicate
// copies and whether first copies are in publishing order.
func (r *received) check(topic string, acked []int) (missing []int, dups int, ordered bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := map[int]bool{}
	ordered, last := true, -1
	for _, n := range r.byTop[topic] {
		if got[n] {
			dups++
			continue
		}
		got[n] = true
		if n < last {
			ordered = false
		}
		last = n
	}
	for _, n := range acked {
		if !got[n] {
			missing = append(missing, n)
		}
	}
	return missing, dups, ordered
}

func (r *received) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// percentile of ds (sorted in place).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// persistentSub is a v5 persistent-session subscriber that the test
// moves between nodes; every receipt is recorded.
type persistentSub struct {
	t          *testing.T
	id, filter string
	user, pass string
	rec        *received
	mu         sync.Mutex
	c          *paho.Client
	node       int
}

const subReceiveMax = 32

// connect (re)connects to addr with clean start 0; it returns CONNACK's
// session-present flag. The first connection subscribes.
func (s *persistentSub) connect(addr string, node int, subscribe bool) (bool, error) {
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return false, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(p paho.PublishReceived) (bool, error) {
			s.rec.add(p.Packet.Topic, p.Packet.Payload)
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	expiry, rm := uint32(600), uint16(subReceiveMax)
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: s.id, CleanStart: false, KeepAlive: 5, UsernameFlag: true, Username: s.user,
		PasswordFlag: true, Password: []byte(s.pass), Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, ReceiveMaximum: &rm}})
	if err != nil {
		conn.Close()
		return false, err
	}
	if subscribe {
		if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: s.filter, QoS: 1}}}); err != nil {
			return false, err
		}
	}
	s.mu.Lock()
	s.c, s.node = c, node
	s.mu.Unlock()
	return ca.SessionPresent, nil
}

// leave disconnects normally (the session stays).
func (s *persistentSub) leave() {
	s.mu.Lock()
	c := s.c
	s.c = nil
	s.mu.Unlock()
	if c != nil {
		_ = c.Disconnect(&paho.Disconnect{})
	}
}

// cellPublisher publishes numbered QoS 1 messages ("<n>|<unix nanos>") on
// each of its topics, sequentially per topic (so per-topic order is the
// numbering), at perTopic messages a second, moving to another live node
// when its node goes.
type cellPublisher struct {
	t          *testing.T
	user, pass string
	pick       func() (addr string, node int) // a live node to (re)connect to

	mu       sync.Mutex
	c        *paho.Client
	node     int
	gen      int
	acked    map[string][]int
	ackTimes []time.Time
	refused  int

	stop chan struct{}
	wg   sync.WaitGroup
}

func (p *cellPublisher) connect() error {
	addr, node := p.pick()
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "cell-publisher", CleanStart: true, KeepAlive: 5, UsernameFlag: true,
		Username: p.user, PasswordFlag: true, Password: []byte(p.pass)}); err != nil {
		conn.Close()
		return err
	}
	p.c, p.node = c, node
	p.gen++
	return nil
}

// client returns the current connection and its generation.
func (p *cellPublisher) client() (*paho.Client, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.c, p.gen
}

// reconnect replaces the connection of generation gen (once).
func (p *cellPublisher) reconnect(gen int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen != gen {
		return
	}
	if p.c != nil {
		_ = p.c.Disconnect(&paho.Disconnect{})
	}
	for try := 0; try < 50; try++ {
		if p.connect() == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (p *cellPublisher) run(topics []string, perTopic int) {
	p.stop = make(chan struct{})
	p.acked = map[string][]int{}
	p.mu.Lock()
	if err := p.connect(); err != nil {
		p.mu.Unlock()
		p.t.Fatalf("publisher: %v", err)
	}
	p.mu.Unlock()
	for _, topic := range topics {
		p.wg.Add(1)
		go p.publishTopic(topic, time.Second/time.Duration(perTopic))
	}
}

func (p *cellPublisher) publishTopic(topic string, every time.Duration) {
	defer p.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := 0; ; {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		c, gen := p.client()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.Publish(ctx, &paho.Publish{QoS: 1, Topic: topic, Payload: []byte(fmt.Sprintf("%d|%d", n, time.Now().UnixNano()))})
		cancel()
		if err == nil && resp != nil && resp.ReasonCode < 0x80 {
			p.mu.Lock()
			p.acked[topic] = append(p.acked[topic], n)
			p.ackTimes = append(p.ackTimes, time.Now())
			p.mu.Unlock()
			n++
			continue
		}
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
		select {
		case <-c.Done():
			p.reconnect(gen)
		default:
			if err != nil && ctx.Err() != nil {
				p.reconnect(gen) // no answer within 5 s: the node is gone
			}
		}
	}
}

func (p *cellPublisher) halt() {
	close(p.stop)
	p.wg.Wait()
	c, _ := p.client()
	_ = c.Disconnect(&paho.Disconnect{})
}

// gapAround is the longest time without an acknowledgement in
// [at-1s, at+window]: how long publishing stalled around a failure.
func (p *cellPublisher) gapAround(at time.Time, window time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var gap time.Duration
	prev := at.Add(-time.Second)
	for _, ts := range p.ackTimes {
		if ts.Before(prev) {
			continue
		}
		if ts.After(at.Add(window)) {
			break
		}
		gap = max(gap, ts.Sub(prev))
		prev = ts
	}
	return gap
}

func (p *cellPublisher) ackedOn(topic string) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.acked[topic]...)
}

func (p *cellPublisher) ackCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ackTimes)
}
