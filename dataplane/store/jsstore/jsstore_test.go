package jsstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/dataplane/store/storetest"
	"github.com/nats-io/nats-server/v2/server"
)

// startSingle starts a one-server JetStream (no listener) in a temp dir.
func startSingle(t testing.TB) *server.Server {
	t.Helper()
	ns, err := StartServer(ServerConfig{Name: "n1", Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func openOn(t testing.TB, ns *server.Server, opts Options) *Store {
	t.Helper()
	nc, err := Connect(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s, err := Open(context.Background(), nc, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the store.Backend suite on a single embedded server.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend {
		return openOn(t, startSingle(t), Options{})
	})
}

// TestFsyncPolicy: the embedded server syncs every write (an acknowledged
// message is on disk), not JetStream's default of every 2 minutes.
func TestFsyncPolicy(t *testing.T) {
	o, err := ServerOptions(ServerConfig{Name: "n1", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !o.SyncAlways {
		t.Fatal("ServerOptions: SyncAlways is off")
	}
	ns := startSingle(t)
	if cfg := ns.JetStreamConfig(); cfg == nil || !cfg.SyncAlways {
		t.Fatalf("running server's JetStream config: %+v, want SyncAlways", cfg)
	}
	_ = fmt.Sprint()
}
