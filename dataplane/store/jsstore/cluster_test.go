package jsstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/internal/freeport"
)

// startCluster starts three in-process servers forming one JetStream
// cluster over loopback routes.
func startCluster(t testing.TB) []*server.Server {
	t.Helper()
	ports := freeport.Ports(t, 3)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var srvs []*server.Server
	for i, p := range ports {
		ns, err := StartServer(ServerConfig{Name: fmt.Sprintf("n%d", i+1), Dir: t.TempDir(),
			ClusterName: "cell", ClusterPort: p, Routes: routes})
		if err != nil {
			t.Fatalf("StartServer n%d: %v", i+1, err)
		}
		srvs = append(srvs, ns)
		t.Cleanup(ns.Shutdown)
	}
	return srvs
}

// openR3 opens a Replicas=3 store on ns, retrying while the cluster elects
// its meta leader.
func openR3(t testing.TB, ns *server.Server) *Store {
	t.Helper()
	nc, err := Connect(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		s, err := Open(ctx, nc, Options{Replicas: 3, Timeout: 3 * time.Second})
		cancel()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("Open R3: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterR3Quorum: on a 3-server cluster a write is acknowledged once
// a quorum stored it, is readable through another server, still
// acknowledged with one server down, and refused with two down.
func TestClusterR3Quorum(t *testing.T) {
	srvs := startCluster(t)
	s1 := openR3(t, srvs[0])
	ctx := context.Background()
	m := store.Message{Instance: "i1", Topic: "q/a", QoS: 1, Payload: []byte("one")}
	var offs []uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if offs, err = s1.Append(ctx, []store.Message{m}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first R3 append: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	info, err := s1.js.Stream(ctx, s1.StreamName("i1"))
	if err != nil {
		t.Fatal(err)
	}
	si, err := info.Info(ctx)
	if err != nil || si.Config.Replicas != 3 || si.Cluster == nil || len(si.Cluster.Replicas) != 2 {
		t.Fatalf("stream info: %+v, %v; want 3 replicas", si, err)
	}
	leader := si.Cluster.Leader

	// Readable through another server of the cell.
	s2 := openR3(t, srvs[1])
	waitPull(t, s2, "q/+", 1)

	// One follower (not the server s1 is connected to) down: the
	// remaining two are a quorum.
	var victim *server.Server
	for _, ns := range srvs[1:] {
		if ns.Name() != leader {
			victim = ns
			break
		}
	}
	victim.Shutdown()
	m.Payload = []byte("two")
	if got, err := s1.Append(ctx, []store.Message{m}); err != nil || got[0] <= offs[0] {
		t.Fatalf("append with 2 of 3 servers: %v, %v", got, err)
	}
	// Only s1's server left: no quorum, no acknowledgement.
	for _, ns := range srvs[1:] {
		ns.Shutdown()
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	m.Payload = []byte("three")
	if got, err := s1.Append(short, []store.Message{m}); err == nil {
		t.Fatalf("append acknowledged without a quorum: offsets %v", got)
	}
}

func waitPull(t *testing.T, s *Store, q string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, err := s.Pull(context.Background(), "i1", q, 0, 10)
		if err == nil && len(ents) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pull %q through another server: %d entries, %v", q, len(ents), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
