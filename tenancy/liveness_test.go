package tenancy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// TestPlacementSkipsDeadNodes: a node that has not reported within the
// liveness window takes no new instance (they land on the live node even
// though the dead one is emptier); with no live node creation fails with
// ErrNoNode (503 no-capacity); the instances of a node silent for longer
// than the window show as unavailable, and running again once it reports.
func TestPlacementSkipsDeadNodes(t *testing.T) {
	db := pgtest.New(t)
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	svc := tenancy.NewService(db.Pool, slog.New(slog.NewTextHandler(io.Discard, nil)), tenancy.WithClock(now), tenancy.WithPlans(billing.NewPlans(db.Pool)),
		tenancy.WithNodeLiveWindow(30*time.Second),
		tenancy.WithPasswordParams(tenancy.PasswordParams{Memory: 1024, Iterations: 1, Parallelism: 1}))
	ctx := context.Background()
	u, org, err := svc.Signup(ctx, tenancy.SignupInput{Email: "live@example.com", Password: "password-live-1", OrgName: "Live"}, tenancy.Actor{})
	if err != nil {
		t.Fatal(err)
	}
	act := tenancy.Actor{UserID: u.ID}
	live, _, err := svc.EnsureNode(ctx, "live", map[string]string{"mqtt": "mqtt://live:1883"})
	if err != nil {
		t.Fatal(err)
	}
	dead, _, err := svc.EnsureNode(ctx, "dead", map[string]string{"mqtt": "mqtt://dead:1883"})
	if err != nil {
		t.Fatal(err)
	}
	beat := func(n string, conns int64) {
		t.Helper()
		last, _, err := svc.ConfigRevision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.NodeHeartbeat(ctx, n, nodelink.Ack{Revision: last, Connections: conns}); err != nil {
			t.Fatal(err)
		}
	}
	// The live node is busier (connections), so least-loaded placement
	// prefers the other one whenever instance counts tie.
	beat(live.ID, 100)
	beat(dead.ID, 0)
	first, err := svc.CreateInstance(ctx, act, org.ID, tenancy.NewInstance{Name: "first"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := svc.CreateInstance(ctx, act, org.ID, tenancy.NewInstance{Name: "second"})
	if err != nil {
		t.Fatal(err)
	}
	if first.NodeID != dead.ID || second.NodeID != live.ID {
		t.Fatalf("placement while both nodes live: %s then %s", first.NodeID, second.NodeID)
	}
	advance(31 * time.Second) // "dead" stops reporting
	beat(live.ID, 100)
	for i := 0; i < 2; i++ { // 4 instances: below the unverified limit (5)
		in, err := svc.CreateInstance(ctx, act, org.ID, tenancy.NewInstance{Name: "n" + string(rune('a'+i))})
		if err != nil {
			t.Fatal(err)
		}
		if in.NodeID != live.ID {
			t.Fatalf("instance %d placed on the dead node", i)
		}
	}
	beat(live.ID, 100) // applies the new instances: running
	got, err := svc.Instance(ctx, org.ID, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != tenancy.InstanceUnavailable {
		t.Fatalf("instance on the dead node is %s, want unavailable", got.Status)
	}
	list, _, err := svc.ListInstances(ctx, org.ID, tenancy.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		want := tenancy.InstanceRunning
		if in.NodeID == dead.ID {
			want = tenancy.InstanceUnavailable
		}
		if in.Status != want {
			t.Errorf("instance %s on %s: %s, want %s", in.Name, in.NodeID, in.Status, want)
		}
	}

	advance(31 * time.Second) // now neither reports
	if _, err := svc.CreateInstance(ctx, act, org.ID, tenancy.NewInstance{Name: "nowhere"}); !errors.Is(err, tenancy.ErrNoNode) {
		t.Fatalf("with every node dead: %v, want ErrNoNode", err)
	}
	beat(dead.ID, 0) // back
	if got, _ = svc.Instance(ctx, org.ID, first.ID); got.Status != tenancy.InstanceRunning {
		t.Fatalf("instance of the node that reported again is %s, want running", got.Status)
	}
	// Reads never stored the shown status.
	var stored string
	if err := db.Pool.QueryRow(ctx, `SELECT status FROM instances WHERE id = $1`, first.ID).Scan(&stored); err != nil || stored != "running" {
		t.Fatalf("stored status %q (%v)", stored, err)
	}
}
