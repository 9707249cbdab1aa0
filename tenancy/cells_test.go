package tenancy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// cellBed is a service on a clock the test moves, with one user and org.
type cellBed struct {
	svc     *tenancy.Service
	act     tenancy.Actor
	org     string
	advance func(time.Duration)
}

func newCellBed(t *testing.T) *cellBed {
	db := pgtest.New(t)
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	svc := tenancy.NewService(db.Pool, slog.New(slog.NewTextHandler(io.Discard, nil)), tenancy.WithClock(now), tenancy.WithPlans(billing.NewPlans(db.Pool)),
		tenancy.WithNodeLiveWindow(15*time.Second),
		tenancy.WithPasswordParams(tenancy.PasswordParams{Memory: 1024, Iterations: 1, Parallelism: 1}))
	u, org, err := svc.Signup(context.Background(), tenancy.SignupInput{Email: "cells@example.com", Password: "password-cells-1", OrgName: "Cells"}, tenancy.Actor{})
	if err != nil {
		t.Fatal(err)
	}
	return &cellBed{svc: svc, act: tenancy.Actor{UserID: u.ID}, org: org.ID,
		advance: func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }}
}

func (b *cellBed) node(t *testing.T, name, cell string) tenancy.Node {
	t.Helper()
	n, _, err := b.svc.CreateNodeInCell(context.Background(), name, cell)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// beat acknowledges rev (-1: unchanged) for the node.
func (b *cellBed) beat(t *testing.T, nodeID string, rev int64) {
	t.Helper()
	if err := b.svc.NodeHeartbeat(context.Background(), nodeID, nodelink.Ack{Revision: rev, Endpoints: map[string]string{"mqtt": "mqtt://" + nodeID + ":1883"}}); err != nil {
		t.Fatal(err)
	}
}

func (b *cellBed) create(t *testing.T, name string) tenancy.Instance {
	t.Helper()
	in, err := b.svc.CreateInstance(context.Background(), b.act, b.org, tenancy.NewInstance{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func instanceIDs(evs []nodelink.Event) map[string]bool {
	out := map[string]bool{}
	for _, ev := range evs {
		out[ev.InstanceID] = true
	}
	return out
}

// TestCellConfigPush: every config event of an instance of a 3-node cell
// reaches every node of the cell, in the same revision order, and no node
// of another cell; a node joining the cell later gets a snapshot with all
// of the cell's instances; placement picks the cell with a live node and
// the fewest instances (ties by name); one node applying the creation
// makes the instance running; a read-your-writes wait covers every live
// node of the cell and skips a down one.
func TestCellConfigPush(t *testing.T) {
	b := newCellBed(t)
	ctx := context.Background()
	c1 := []tenancy.Node{b.node(t, "a1", "c1"), b.node(t, "a2", "c1"), b.node(t, "a3", "c1")}
	other := b.node(t, "b1", "c2")
	if c1[0].Cell != "c1" || c1[0].CellID != c1[2].CellID || other.CellID == c1[0].CellID {
		t.Fatalf("cells: %+v %+v", c1[0], other)
	}
	for _, n := range c1 {
		b.beat(t, n.ID, -1)
	}
	// c2 has no live node: both instances go to c1.
	first, second := b.create(t, "first"), b.create(t, "second")
	if first.CellID != c1[0].CellID || second.CellID != c1[0].CellID || first.Cell.Name != "c1" {
		t.Fatalf("placed on %s and %s, want c1 (%s)", first.CellID, second.CellID, c1[0].CellID)
	}
	b.beat(t, other.ID, -1)
	elsewhere := b.create(t, "elsewhere") // c2: fewer instances
	if elsewhere.CellID != other.CellID {
		t.Fatalf("third instance on %s, want c2 (the emptier cell)", elsewhere.CellID)
	}
	if _, _, err := b.svc.CreateCredentials(ctx, b.act, b.org, second.ID, []tenancy.NewCredential{{Username: "dev"}}); err != nil {
		t.Fatal(err)
	}

	t.Run("every node of the cell gets every event, in order; the other cell none", func(t *testing.T) {
		var want []nodelink.Event
		for i, n := range c1 {
			evs, err := b.svc.ConfigChanges(ctx, n.ID, first.ConfigRevision, 100)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				want = evs
				continue
			}
			if !reflect.DeepEqual(evs, want) {
				t.Fatalf("node %s got %d events, node a1 %d: they differ", n.Name, len(evs), len(want))
			}
		}
		ids := instanceIDs(want)
		if !ids[second.ID] || ids[elsewhere.ID] || len(want) < 2 {
			t.Fatalf("c1's events: %+v", want)
		}
		for i := 1; i < len(want); i++ {
			if want[i].Revision <= want[i-1].Revision {
				t.Fatalf("revisions out of order: %d after %d", want[i].Revision, want[i-1].Revision)
			}
		}
		evs, err := b.svc.ConfigChanges(ctx, other.ID, 1, 100)
		if err != nil {
			t.Fatal(err)
		}
		if ids := instanceIDs(evs); ids[first.ID] || ids[second.ID] || !ids[elsewhere.ID] {
			t.Fatalf("c2's node got %v", ids)
		}
	})

	t.Run("a node joining later gets a snapshot of the whole cell", func(t *testing.T) {
		late := b.node(t, "a4", "c1")
		snap, err := b.svc.ConfigSnapshot(ctx, late.ID)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]nodelink.Instance{}
		for _, in := range snap.Instances {
			got[in.ID] = in
		}
		if len(got) != 2 || len(got[second.ID].Credentials) != 1 || len(got[first.ID].ACL) != 1 || len(got[first.ID].TokenKeys) != 1 {
			t.Fatalf("late node's snapshot: %+v", snap.Instances)
		}
		snap, err = b.svc.ConfigSnapshot(ctx, other.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Instances) != 1 || snap.Instances[0].ID != elsewhere.ID {
			t.Fatalf("other cell's snapshot: %+v", snap.Instances)
		}
		if err := b.svc.RevokeNode(ctx, late.ID); err != nil { // out of the next subtests' count
			t.Fatal(err)
		}
	})

	t.Run("one node applying the creation makes the instance running", func(t *testing.T) {
		b.beat(t, c1[1].ID, second.ConfigRevision)
		got, err := b.svc.Instance(ctx, b.org, second.ID)
		if err != nil || got.Status != tenancy.InstanceRunning {
			t.Fatalf("status %q, %v", got.Status, err)
		}
	})

	t.Run("read-your-writes waits for every live node of the cell, not a down one", func(t *testing.T) {
		feed := nodelink.NewFeed(b.svc, nil)
		rctx, revs := tenancy.RecordRevisions(ctx)
		if _, _, err := b.svc.CreateCredentials(rctx, b.act, b.org, first.ID, []tenancy.NewCredential{{Username: "rw"}}); err != nil {
			t.Fatal(err)
		}
		want := revs()
		if len(want) != 3 || want[c1[0].ID] == 0 || want[c1[0].ID] != want[c1[2].ID] {
			t.Fatalf("noted %v, want one revision for each of c1's 3 nodes", want)
		}
		rev := want[c1[0].ID]
		wait := func() error {
			wctx, cancel := context.WithTimeout(ctx, 600*time.Millisecond)
			defer cancel()
			return feed.WaitApplied(wctx, want)
		}
		b.beat(t, c1[0].ID, rev)
		b.beat(t, c1[1].ID, rev)
		if err := wait(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("answered with a live node (a3) behind: %v", err)
		}
		b.advance(10 * time.Second)
		b.beat(t, c1[0].ID, -1)
		b.beat(t, c1[1].ID, -1)
		b.advance(6 * time.Second) // a3 silent for 16 s: down
		if err := wait(); err != nil {
			t.Fatalf("held up by the down node: %v", err)
		}
	})
}

// TestCellHealth: a node silent for longer than the window is down; its
// cell is healthy, degraded or down from its nodes' heartbeats (injected
// clock), in ListNodes, ListCells, the instance, OpsStats and
// InstanceNodes (requests go to live nodes, freshest first); an instance
// of a cell with no node up is unavailable; the operator's endpoints
// override the nodes'.
func TestCellHealth(t *testing.T) {
	b := newCellBed(t)
	ctx := context.Background()
	ns := []tenancy.Node{b.node(t, "h1", "hc"), b.node(t, "h2", "hc"), b.node(t, "h3", "hc")}
	for _, n := range ns {
		b.beat(t, n.ID, -1)
		b.advance(time.Second)
	}
	in := b.create(t, "watched")
	cellOf := func() tenancy.Cell {
		t.Helper()
		cs, err := b.svc.ListCells(ctx)
		if err != nil || len(cs) != 1 {
			t.Fatalf("cells %+v, %v", cs, err)
		}
		return cs[0]
	}
	inst := func() tenancy.Instance {
		t.Helper()
		got, err := b.svc.Instance(ctx, b.org, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if c := cellOf(); c.Status != tenancy.CellHealthy || c.Nodes != 3 || c.NodesUp != 3 || c.Instances != 1 {
		t.Fatalf("cell %+v", c)
	}
	if got, err := b.svc.InstanceNodes(ctx, in.ID); err != nil || !reflect.DeepEqual(got, []string{ns[2].ID, ns[1].ID, ns[0].ID}) {
		t.Fatalf("request targets %v (%v), want freshest first", got, err)
	}

	b.advance(13500 * time.Millisecond) // h1 last seen 16.5 s ago, h2 15.5 s, h3 14.5 s
	c := cellOf()
	if c.Status != tenancy.CellDegraded || c.NodesUp != 1 {
		t.Fatalf("cell after 2 nodes went silent: %+v", c)
	}
	list, err := b.svc.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range list {
		if up := n.Name == "h3"; n.Up != up || n.Cell != "hc" {
			t.Fatalf("node %s up=%v cell %s", n.Name, n.Up, n.Cell)
		}
	}
	got := inst()
	if got.Status != tenancy.InstanceProvisioning || got.Cell.Status != tenancy.CellDegraded || len(got.Cell.Nodes) != 3 ||
		got.Cell.Nodes[0].Name != "h3" || !got.Cell.Nodes[0].Up || got.Cell.Nodes[1].Up || got.Endpoints["mqtt"] != "mqtt://"+ns[2].ID+":1883" {
		t.Fatalf("instance with a degraded cell: %+v cell %+v", got, got.Cell)
	}
	if ids, _ := b.svc.InstanceNodes(ctx, in.ID); !reflect.DeepEqual(ids, []string{ns[2].ID}) {
		t.Fatalf("request targets %v, want only the live node", ids)
	}
	st, err := b.svc.OpsStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Cells) != 1 || st.Cells[0] != (tenancy.CellStats{Name: "hc", Nodes: 3, NodesUp: 1, Status: tenancy.CellDegraded}) {
		t.Fatalf("ops cells %+v", st.Cells)
	}

	b.advance(2 * time.Second)
	if c := cellOf(); c.Status != tenancy.CellDown || c.NodesUp != 0 {
		t.Fatalf("cell with no node up: %+v", c)
	}
	if got := inst(); got.Status != tenancy.InstanceUnavailable || got.Cell.Status != tenancy.CellDown {
		t.Fatalf("instance of a down cell: %s / %s", got.Status, got.Cell.Status)
	}
	if _, err := b.svc.CreateInstance(ctx, b.act, b.org, tenancy.NewInstance{Name: "nowhere"}); !errors.Is(err, tenancy.ErrNoNode) {
		t.Fatalf("placement with no live cell: %v", err)
	}
	b.beat(t, ns[0].ID, -1)
	if c := cellOf(); c.Status != tenancy.CellDegraded {
		t.Fatalf("cell after a node came back: %+v", c)
	}

	eps, err := b.svc.SetCellEndpoints(ctx, "hc", map[string]string{"mqtt": "lb.example.net:1883"})
	if err != nil || eps["mqtt"] != "mqtt://lb.example.net:1883" {
		t.Fatalf("set endpoints: %v, %v", eps, err)
	}
	if got := inst(); got.Endpoints["mqtt"] != "mqtt://lb.example.net:1883" || got.Cell.Nodes[0].Endpoints["mqtt"] != "mqtt://"+ns[0].ID+":1883" {
		t.Fatalf("instance with the override: %v, nodes %+v", got.Endpoints, got.Cell.Nodes)
	}
	if _, err := b.svc.SetCellEndpoints(ctx, "hc", map[string]string{"smtp": "x:1"}); err == nil {
		t.Fatal("an unknown endpoint kind was accepted")
	}
	if _, err := b.svc.SetCellEndpoints(ctx, "nope", nil); !errors.Is(err, tenancy.ErrNotFound) {
		t.Fatalf("unknown cell: %v", err)
	}
}

// TestNodeWrongCellRefused: a node stating a cell other than its
// registered one is refused (ErrConflict, nodelink.ErrAckRefused, a
// message naming both cells) and not counted alive; stating its own cell
// or none is accepted; a node without --cell gets a cell of its own, and
// a cell named after a new node must not exist already.
func TestNodeWrongCellRefused(t *testing.T) {
	b := newCellBed(t)
	ctx := context.Background()
	n := b.node(t, "w1", "west")
	b.node(t, "e1", "east")
	err := b.svc.NodeHeartbeat(ctx, n.ID, nodelink.Ack{Revision: -1, Cell: "east"})
	var mis *tenancy.CellMismatchError
	if !errors.As(err, &mis) || !errors.Is(err, tenancy.ErrConflict) || !errors.Is(err, nodelink.ErrAckRefused) ||
		mis.Stated != "east" || mis.Registered != "west" {
		t.Fatalf("wrong cell: %v", err)
	}
	if got, _ := b.svc.NodeByID(ctx, n.ID); got.LastSeenAt != nil || got.Up || got.Cell != "west" {
		t.Fatalf("refused node recorded or re-homed: %+v", got)
	}
	for _, cell := range []string{"west", ""} {
		if err := b.svc.NodeHeartbeat(ctx, n.ID, nodelink.Ack{Revision: -1, Cell: cell}); err != nil {
			t.Fatalf("cell %q: %v", cell, err)
		}
	}
	if got, _ := b.svc.NodeByID(ctx, n.ID); !got.Up {
		t.Fatalf("accepted node not up: %+v", got)
	}
	own, _, err := b.svc.CreateNode(ctx, "solo")
	if err != nil || own.Cell != "solo" {
		t.Fatalf("node without a cell: %+v, %v", own, err)
	}
	if _, _, err := b.svc.CreateNode(ctx, "east"); err == nil {
		t.Fatal("a node was silently put into the existing cell named after it")
	}
	if _, _, err := b.svc.CreateNodeInCell(ctx, "w1", "east"); !errors.Is(err, tenancy.ErrConflict) {
		t.Fatalf("duplicate node name: %v", err)
	}
	for _, bad := range []string{"two words", "a.b", "c*", "x>", strings.Repeat("c", 65)} {
		var ve *tenancy.ValidationError
		if _, _, err := b.svc.CreateNodeInCell(ctx, "n-"+strings.ReplaceAll(bad, " ", "_"), bad); !errors.As(err, &ve) {
			t.Fatalf("cell name %q (not a NATS cluster name): %v", bad, err)
		}
	}
	var body map[string]any
	if raw, _ := json.Marshal(nodelink.Ack{Cell: "west"}); json.Unmarshal(raw, &body) != nil || body["cell"] != "west" {
		t.Fatalf("ack wire form %v", body)
	}
}
