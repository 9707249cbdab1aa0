package nodelink_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// controlPlane is a real control plane (tenancy and billing over a fresh
// database) with its end of the link, one node registered and one instance
// placed on it.
type controlPlane struct {
	db      *pgtest.DB
	svc     *tenancy.Service
	hub     *nodelink.Hub
	nodeID  string
	token   string
	orgID   string
	inst    tenancy.Instance
	handler http.Handler
}

func newControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	db := pgtest.New(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := tenancy.NewService(db.Pool, log, tenancy.WithPasswordParams(tenancy.PasswordParams{Memory: 1024, Iterations: 1, Parallelism: 1}),
		tenancy.WithPlans(billing.NewPlans(db.Pool)))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	feed := nodelink.NewFeed(svc, log)
	go feed.Run(ctx)
	deps := api.Deps{Log: log, Tenancy: svc, Feed: feed, Meter: billing.NewMeter(db.Pool, svc, log)}
	cp := &controlPlane{db: db, svc: svc, hub: api.NewHub(deps), handler: api.NewRouter(deps)}
	node, tok, err := svc.EnsureNode(ctx, "node-1", map[string]string{"mqtt": "mqtt://localhost:1883"})
	if err != nil {
		t.Fatal(err)
	}
	cp.nodeID, cp.token = node.ID, tok
	u, org, err := svc.Signup(ctx, tenancy.SignupInput{Email: "link@example.com", Password: "password-link-1", OrgName: "L"}, tenancy.Actor{})
	if err != nil {
		t.Fatal(err)
	}
	cp.orgID = org.ID
	if cp.inst, err = svc.CreateInstance(ctx, tenancy.Actor{UserID: u.ID}, org.ID, tenancy.NewInstance{Name: "plant"}); err != nil {
		t.Fatal(err)
	}
	return cp
}

// exercise runs the node's side of the link against src: config arrives
// (a snapshot with the instance and its plan's quotas), the ack is recorded, a
// usage report is counted once, and a report for an instance the node
// does not serve is refused for good.
func (cp *controlPlane) exercise(t *testing.T, src nodelink.Source) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var snap *nodelink.Snapshot
	errStop := errors.New("got it")
	err := src.Watch(ctx, 0, func(ev nodelink.Event) error {
		if ev.Kind == nodelink.KindSnapshot {
			snap = ev.Snapshot
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || snap == nil {
		t.Fatalf("watch: %v, snapshot %v", err, snap)
	}
	if len(snap.Instances) != 1 || snap.Instances[0].ID != cp.inst.ID || tenancy.Quotas(snap.Instances[0].Quotas) != cp.inst.Quotas ||
		cp.inst.Quotas.MaxConnections == 0 ||
		len(snap.Instances[0].ACL) != 1 || len(snap.Instances[0].TokenKeys) != 1 {
		t.Fatalf("snapshot %+v", snap)
	}
	if err := src.Ack(ctx, nodelink.Ack{Revision: snap.Revision, Connections: 3}); err != nil {
		t.Fatal(err)
	}
	got, err := cp.svc.AppliedRevisions(ctx, []string{cp.nodeID})
	if err != nil || got[cp.nodeID] != snap.Revision {
		t.Fatalf("applied %v (%v), want %d", got, err, snap.Revision)
	}
	now := time.Now().UTC()
	rep := nodelink.UsageReport{NodeID: cp.nodeID, Seq: 1, From: now.Add(-10 * time.Second), To: now,
		Instances: []nodelink.InstanceUsage{{InstanceID: cp.inst.ID, MessagesIn: 5, MessageUnitsIn: 5}}}
	for range 2 { // a resend is counted once
		if err := src.ReportUsage(ctx, rep); err != nil {
			t.Fatal(err)
		}
	}
	var n, msgs int64
	if err := cp.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM usage_reports WHERE node_id = $1),
		(SELECT coalesce(sum(messages_in), 0) FROM usage_buckets WHERE instance_id = $2 AND step_seconds = 10)`, cp.nodeID, cp.inst.ID).Scan(&n, &msgs); err != nil {
		t.Fatal(err)
	}
	if n != 1 || msgs != 5 {
		t.Fatalf("%d reports, %d messages counted; want 1 and 5", n, msgs)
	}
	other, _, err := cp.svc.EnsureNode(ctx, "node-2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.db.Pool.Exec(ctx, `UPDATE instances SET node_id = $1, cell_id = $3 WHERE id = $2`, other.ID, cp.inst.ID, other.CellID); err != nil {
		t.Fatal(err)
	}
	rep.Seq = 2
	if err := src.ReportUsage(ctx, rep); !errors.Is(err, nodelink.ErrUsageRefused) {
		t.Fatalf("report for another node's instance: %v, want ErrUsageRefused", err)
	}
}

// In `aerie serve` the node reaches the control plane in process, for
// config and usage alike (no loopback HTTP).
func TestLocalSourceDeliversConfigAndUsage(t *testing.T) {
	cp := newControlPlane(t)
	cp.exercise(t, nodelink.LocalSource{Hub: cp.hub, NodeID: cp.nodeID})
}

// In the split topology the same flows go over HTTP, authenticated with
// the node token; a wrong token is rejected for good.
func TestHTTPSourceDeliversConfigAndUsage(t *testing.T) {
	cp := newControlPlane(t)
	srv := httptest.NewServer(cp.handler)
	t.Cleanup(srv.Close)
	cp.exercise(t, &nodelink.HTTPSource{BaseURL: srv.URL, NodeID: cp.nodeID, Token: cp.token})
	bad := &nodelink.HTTPSource{BaseURL: srv.URL, NodeID: cp.nodeID, Token: cp.token + "x"}
	err := bad.Watch(context.Background(), 0, func(nodelink.Event) error { return nil })
	if !errors.Is(err, nodelink.ErrNodeRejected) {
		t.Fatalf("watch with a wrong token: %v", err)
	}
	if err := bad.Ack(context.Background(), nodelink.Ack{Revision: 1}); !errors.Is(err, nodelink.ErrNodeRejected) {
		t.Fatalf("ack with a wrong token: %v", err)
	}
}

// TestEmptySnapshotSentOnce: a control plane that never issued a change
// sends a new node its empty snapshot once, then only heartbeats: it used
// to resend (and log) it at every poll until the first instance.
func TestEmptySnapshotSentOnce(t *testing.T) {
	db := pgtest.New(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := tenancy.NewService(db.Pool, log, tenancy.WithPlans(billing.NewPlans(db.Pool)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	feed := nodelink.NewFeed(svc, log)
	feed.SetPollInterval(50 * time.Millisecond)
	go feed.Run(ctx)
	node, _, err := svc.EnsureNode(ctx, "node-1", map[string]string{"mqtt": "mqtt://localhost:1883"})
	if err != nil {
		t.Fatal(err)
	}
	watchCtx, stop := context.WithTimeout(ctx, 600*time.Millisecond)
	defer stop()
	snaps := 0
	err = feed.Watch(watchCtx, node.ID, 0, func(ev nodelink.Event) error {
		if ev.Kind == nodelink.KindSnapshot {
			if ev.Revision != 0 || ev.Snapshot == nil || len(ev.Snapshot.Instances) != 0 {
				t.Errorf("snapshot %+v: want the empty revision-0 snapshot", ev)
			}
			snaps++
		}
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("watch ended with %v", err)
	}
	if snaps != 1 {
		t.Fatalf("%d empty snapshots in 600 ms at a 50 ms poll: want exactly 1", snaps)
	}
}
