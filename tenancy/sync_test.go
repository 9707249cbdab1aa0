package tenancy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// TestWaitAppliedAcrossReplicas: two control-plane replicas (services over
// separate pools on one database). A change made through replica 1 notes
// its revision; a request waiting on replica 2 is answered when the node
// acknowledges that revision to replica 1 — and not before.
func TestWaitAppliedAcrossReplicas(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool2, err := pgxpool.New(ctx, b.db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool2.Close)
	svc2 := tenancy.NewService(pool2, log, tenancy.WithPlans(billing.NewPlans(pool2)))
	feed2 := nodelink.NewFeed(svc2, log)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	go feed2.Run(fctx)

	n, _, err := b.svc.EnsureNode(ctx, "node-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := b.svc.CreateInstance(ctx, tenancy.Actor{UserID: b.userA.ID}, b.orgA.ID, tenancy.NewInstance{Name: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	rctx, revs := tenancy.RecordRevisions(ctx)
	if _, _, err := b.svc.CreateCredentials(rctx, tenancy.Actor{UserID: b.userA.ID}, b.orgA.ID, inst.ID, []tenancy.NewCredential{{Username: "dev"}}); err != nil {
		t.Fatal(err)
	}
	want := revs()
	if len(want) != 1 || want[n.ID] <= inst.ConfigRevision {
		t.Fatalf("recorded %v; want one revision for node %s after the instance's %d", want, n.ID, inst.ConfigRevision)
	}
	got, err := b.svc.Instance(ctx, b.orgA.ID, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ConfigRevision != want[n.ID] || got.InSync() {
		t.Fatalf("instance revision %d (node applied %d, in sync %v), want %d not applied", got.ConfigRevision, got.NodeAppliedRevision, got.InSync(), want[n.ID])
	}

	// Not applied: the wait runs out.
	short, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
	err = feed2.WaitApplied(short, want)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for an unapplied revision: %v, want the deadline", err)
	}
	// Applied below the revision: still waiting; at it: answered.
	done := make(chan error, 1)
	var answered time.Time
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := feed2.WaitApplied(wctx, want)
		answered = time.Now()
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if err := b.svc.NodeHeartbeat(ctx, n.ID, nodelink.Ack{Revision: want[n.ID] - 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("answered before the node applied the revision: %v", err)
	case <-time.After(600 * time.Millisecond):
	}
	ackAt := time.Now()
	if err := b.svc.NodeHeartbeat(ctx, n.ID, nodelink.Ack{Revision: want[n.ID]}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("waiter on replica 2 answered %s after the node acked to replica 1", answered.Sub(ackAt).Round(time.Millisecond))
	if d := answered.Sub(ackAt); d > 2*time.Second {
		t.Fatalf("answered %s after the ack", d)
	}
	// The ack made the instance running: one more change for the node.
	if got, _ = b.svc.Instance(ctx, b.orgA.ID, inst.ID); got.Status != tenancy.InstanceRunning {
		t.Fatalf("instance %s", got.Status)
	}
	last, _, err := b.svc.ConfigRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.svc.NodeHeartbeat(ctx, n.ID, nodelink.Ack{Revision: last}); err != nil {
		t.Fatal(err)
	}
	if got, _ = b.svc.Instance(ctx, b.orgA.ID, inst.ID); !got.InSync() {
		t.Fatalf("instance not in sync after the node applied %d: %+v", last, got)
	}
}
