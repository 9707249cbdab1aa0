package jsstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
)

// TestCellTopics runs the topic-log cases of a cell on one 3-server cluster.
func TestCellTopics(t *testing.T) {
	srvs := startCluster(t)
	t.Run("GroupCAS", func(t *testing.T) { testCellGroupCAS(t, openCellOn(t, srvs, "cgroups")) })
	t.Run("Lease", func(t *testing.T) { testCellLease(t, openCellOn(t, srvs, "clease")) })
}

// testCellGroupCAS: three nodes commit one group's cursor concurrently
// with interleaved offsets; the cursor ends at the highest and never
// moves back, as every node reads it; Changed fires on the other nodes.
func testCellGroupCAS(t *testing.T, nodes []*Store) {
	ctx := context.Background()
	ch := nodes[1].Changed()
	retry(t, "append", func() error {
		_, err := nodes[0].Append(ctx, []store.Message{{Instance: "i", Topic: "t/a", QoS: 1, Payload: []byte("x")}})
		return err
	})
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed of another node not closed by an append")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3*40)
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 1; k <= 40; k++ {
				off := uint64(k*3 + i) // the nodes' offsets interleave
				if err := n.CommitGroup(ctx, "i", "t/+", "app", off); err != nil {
					errs <- err
					return
				}
				cur, ok, err := n.GroupCursor(ctx, "i", "t/+", "app")
				if err != nil || !ok || cur < off {
					errs <- fmt.Errorf("n%d: cursor %d (ok %v, %v) after committing %d", i+1, cur, ok, err, off)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, n := range nodes {
		if cur, _, err := n.GroupCursor(ctx, "i", "t/+", "app"); err != nil || cur != 40*3+2 {
			t.Fatalf("n%d reads the cursor at %d (%v), want %d", i+1, cur, err, 40*3+2)
		}
	}
	if err := nodes[2].CommitGroup(ctx, "i", "t/+", "app", 5); err != nil {
		t.Fatal(err)
	}
	if cur, _, _ := nodes[0].GroupCursor(ctx, "i", "t/+", "app"); cur != 40*3+2 {
		t.Fatalf("a lower commit moved the cursor back to %d", cur)
	}
	if gs, err := nodes[1].Groups(ctx, "i", "t/+"); err != nil || len(gs) != 1 || gs[0].Committed != 40*3+2 {
		t.Fatalf("Groups = %+v, %v", gs, err)
	}
}

// testCellLease: of three nodes trying at once exactly one holds a lease;
// the holder renews it; when the holder's node leaves the cell another
// takes it over at once, and an expired lease is free; pokes count.
func testCellLease(t *testing.T, nodes []*Store) {
	ctx := context.Background()
	const ttl = 3 * time.Second
	held := make([]bool, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			retry(t, "acquire", func() error {
				_, h, err := n.AcquireLease(ctx, "rule.i.r1", ttl, []byte(n.NodeName()))
				held[i] = h
				return err
			})
		}()
	}
	wg.Wait()
	owner := -1
	for i, h := range held {
		if h {
			if owner >= 0 {
				t.Fatalf("n%d and n%d both hold the lease", owner+1, i+1)
			}
			owner = i
		}
	}
	if owner < 0 {
		t.Fatal("no node holds the lease")
	}
	other := nodes[(owner+1)%3]
	if l, h, err := nodes[owner].AcquireLease(ctx, "rule.i.r1", ttl, []byte("renewed")); err != nil || !h || string(l.Info) != "renewed" {
		t.Fatalf("renewal: %+v %v %v", l, h, err)
	}
	if l, h, err := other.AcquireLease(ctx, "rule.i.r1", ttl, nil); err != nil || h || l.Owner != nodes[owner].NodeName() {
		t.Fatalf("a live holder's lease was taken: %+v %v %v", l, h, err)
	}
	if err := other.PokeLease(ctx, "rule.i.r1"); err != nil {
		t.Fatal(err)
	}
	if l, _ := nodes[owner].ReadLease(ctx, "rule.i.r1"); l.Pokes != 1 || l.Owner != nodes[owner].NodeName() {
		t.Fatalf("after a poke: %+v", l)
	}
	// The holder's node leaves the cell (its heartbeat goes): taken over
	// long before the lease would expire.
	start := time.Now()
	nodes[owner].Close()
	if l, h, err := other.AcquireLease(ctx, "rule.i.r1", ttl, nil); err != nil || !h || l.Pokes != 1 {
		t.Fatalf("takeover from a departed node: %+v %v %v", l, h, err)
	}
	if d := time.Since(start); d > ttl/2 {
		t.Fatalf("takeover took %v", d)
	}
	// An expired lease is free even while its holder is live.
	third := nodes[(owner+2)%3]
	if _, h, err := other.AcquireLease(ctx, "rule.i.r2", 200*time.Millisecond, nil); err != nil || !h {
		t.Fatalf("acquire r2: %v %v", h, err)
	}
	if _, h, _ := third.AcquireLease(ctx, "rule.i.r2", ttl, nil); h {
		t.Fatal("a running lease was taken")
	}
	time.Sleep(300 * time.Millisecond)
	if _, h, err := third.AcquireLease(ctx, "rule.i.r2", ttl, nil); err != nil || !h {
		t.Fatalf("an expired lease was not taken: %v %v", h, err)
	}
	if err := third.ReleaseLease(ctx, "rule.i.r2"); err != nil {
		t.Fatal(err)
	}
	if l, err := other.ReadLease(ctx, "rule.i.r2"); err != nil || l.Owner != "" {
		t.Fatalf("released lease: %+v %v", l, err)
	}
}
