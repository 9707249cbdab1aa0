package forward

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/dataplane/store/jsstore"
	"github.com/aeriemq/aerie/internal/freeport"
)

// cellNode is one node of a 3-node cell running the forwarder.
type cellNode struct {
	st   *jsstore.Store
	svc  *Service
	stop context.CancelFunc
	done chan struct{}
}

// startForwardCell starts a 3-server JetStream cluster, a cell store per
// server and a forwarding service per node running rules under leases.
func startForwardCell(t *testing.T, rc *receiver, ttl time.Duration, rules ...config.Rule) []*cellNode {
	t.Helper()
	var routes []string
	ports := freeport.Ports(t, 3)
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	conns := make([]*nats.Conn, 3)
	for i := range conns {
		ns, err := jsstore.StartServer(jsstore.ServerConfig{Name: fmt.Sprintf("n%d", i+1), Dir: t.TempDir(),
			ClusterName: "cell", ClusterPort: ports[i], Routes: routes})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ns.Shutdown)
		if conns[i], err = jsstore.Connect(ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(conns[i].Close)
	}
	nodes := make([]*cellNode, 3)
	for i, nc := range conns {
		nodes[i] = &cellNode{st: openCellStore(t, nc, fmt.Sprintf("n%d", i+1))}
	}
	pool := rc.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	for _, n := range nodes {
		state := configsync.NewState()
		if err := state.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &config.Snapshot{Revision: 1,
			Instances: []config.Instance{{ID: "i1", Status: config.StatusRunning, Rules: rules}}}}); err != nil {
			t.Fatal(err)
		}
		n.svc = New(Options{Store: n.st, Leases: n.st, LeaseTTL: ttl, State: state, Secret: testSecret,
			Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
			Sinks: SinkOptions{Transport: TransportOptions{RootCAs: pool, AllowPrivate: true}}})
		ctx, cancel := context.WithCancel(context.Background())
		n.stop, n.done = cancel, make(chan struct{})
		go func() { defer close(n.done); n.svc.Run(ctx) }()
		t.Cleanup(func() { n.stop(); <-n.done })
	}
	return nodes
}

func openCellStore(t *testing.T, nc *nats.Conn, name string) *jsstore.Store {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := jsstore.Open(ctx, nc, jsstore.Options{Prefix: "fwd", Replicas: 3, Timeout: 3 * time.Second,
			Node: name, NodeTimeout: 2 * time.Second})
		cancel()
		if err == nil {
			t.Cleanup(func() { st.Close() })
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("open %s: %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func testSecret(_ context.Context, _, rule string) ([]byte, error) {
	v, ok := secrets.Load(rule)
	if !ok {
		return nil, fmt.Errorf("no secret for %s", rule)
	}
	return v.([]byte), nil
}

// holders lists the nodes whose runner of rule holds its lease.
func holders(nodes []*cellNode, rule string) []int {
	var out []int
	for i, n := range nodes {
		if n.svc == nil {
			continue
		}
		if rn := n.svc.runner("i1", rule); rn != nil && rn.held.Load() {
			out = append(out, i)
		}
	}
	return out
}

// cellPublish appends count messages round-robin over 3 topics through
// node n, numbered from `from` (payload "<topic>:<seq>").
func cellPublish(t *testing.T, n *cellNode, from, count int) {
	t.Helper()
	var batch []store.Message
	for i := from; i < from+count; i++ {
		batch = append(batch, store.Message{Instance: "i1", Topic: fmt.Sprintf("i1/fleet/d%d/telemetry", i%3), QoS: 1,
			Payload: []byte(fmt.Sprintf(`{"d":%d,"seq":%d}`, i%3, i))})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := n.st.Append(context.Background(), batch)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("append: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCellRuleLease: a forwarding rule on a 3-node cell runs on exactly
// one node; when that node stops (its service ends and its store leaves
// the cell) another node takes the rule over within the lease window and
// resumes from the committed cursor: every message is delivered (at least
// once), in order per topic. A node that does not hold the rule answers
// its status from the holder's published figures.
func TestCellRuleLease(t *testing.T) {
	const ttl = 1200 * time.Millisecond
	rc := newReceiver(t, "cell-secret")
	r := rule(t, rc, "rc1", "cell-secret")
	nodes := startForwardCell(t, rc, ttl, r)
	waitFor(t, 20*time.Second, "one holder", func() bool { return len(holders(nodes, "rc1")) == 1 })
	owner := holders(nodes, "rc1")[0]
	waitFor(t, 10*time.Second, "rule started", func() bool {
		c, ok, err := nodes[owner].st.GroupCursor(context.Background(), "i1", "i1/fleet/+/telemetry", GroupName("rc1"))
		return err == nil && ok && c == nodes[owner].svc.runner("i1", "rc1").cursor.Load()
	})
	cellPublish(t, nodes[(owner+1)%3], 0, 150)
	waitFor(t, 20*time.Second, "first half delivered", func() bool { evs, _ := rc.snapshot(); return len(evs) >= 150 })
	if h := holders(nodes, "rc1"); len(h) != 1 || h[0] != owner {
		t.Fatalf("holders %v, want only n%d", h, owner+1)
	}
	other := nodes[(owner+1)%3]
	waitFor(t, 5*time.Second, "status from the holder's figures", func() bool {
		for _, st := range other.svc.Statuses(context.Background(), "i1") {
			if st.RuleID == "rc1" && st.Delivered >= 150 && st.State == "active" {
				return true
			}
		}
		return false
	})
	// The holder stops: its service ends, its store leaves the cell.
	nodes[owner].stop()
	<-nodes[owner].done
	nodes[owner].st.Close()
	stopped := time.Now()
	nodes[owner].svc = nil
	cellPublish(t, other, 150, 150)
	waitFor(t, 20*time.Second, "another holder", func() bool { return len(holders(nodes, "rc1")) == 1 })
	if d := time.Since(stopped); d > ttl+ttl/2 {
		t.Fatalf("takeover after %v, lease %v", d, ttl)
	}
	waitFor(t, 20*time.Second, "all delivered", func() bool { return len(distinctSeqs(rc)) == 300 })
	evs, bad := rc.snapshot()
	if len(bad) > 0 {
		t.Fatalf("bad requests: %v", bad)
	}
	last := map[string]int{}
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[string(e.data)] {
			continue // a redelivery
		}
		seen[string(e.data)] = true
		var d, seq int
		if _, err := fmt.Sscanf(string(e.data), `{"d":%d,"seq":%d}`, &d, &seq); err != nil {
			t.Fatal(err)
		}
		if p, ok := last[e.subject]; ok && seq <= p {
			t.Fatalf("topic %s: seq %d after %d", e.subject, seq, p)
		}
		last[e.subject] = seq
	}
	t.Logf("takeover: %d events for 300 messages", len(evs))
}

// distinctSeqs are the distinct payloads the receiver accepted.
func distinctSeqs(rc *receiver) map[string]bool {
	evs, _ := rc.snapshot()
	out := map[string]bool{}
	for _, e := range evs {
		if strings.HasPrefix(string(e.data), "{") {
			out[string(e.data)] = true
		}
	}
	return out
}
