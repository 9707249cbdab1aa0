package tenancy_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// follower applies one node's feed to a configsync.State, like a node does.
type follower struct {
	state  *configsync.State
	node   string
	mu     sync.Mutex
	events []nodelink.Event
	cancel context.CancelFunc
	done   chan error
}

func follow(t *testing.T, feed *nodelink.Feed, nodeID string, since int64) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{state: configsync.NewState(), node: nodeID, cancel: cancel, done: make(chan error, 1)}
	go func() {
		f.done <- feed.Watch(ctx, nodeID, since, func(ev nodelink.Event) error {
			f.mu.Lock()
			f.events = append(f.events, ev)
			f.mu.Unlock()
			return f.state.Apply(configsync.FromLink(ev))
		})
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

func (f *follower) waitRevision(t *testing.T, svc *tenancy.Service) {
	t.Helper()
	_ = svc
	var last int64
	if err := testDB.QueryRow(context.Background(), `SELECT coalesce(max(revision), 0) FROM config_outbox WHERE cell_id = (SELECT cell_id FROM nodes WHERE id = $1)`, f.node).Scan(&last); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.state.Revision() < last {
		if time.Now().After(deadline) {
			t.Fatalf("node at revision %d, control plane at %d", f.state.Revision(), last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *follower) kinds() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, ev := range f.events {
		if ev.Kind != nodelink.KindHeartbeat {
			out = append(out, ev.Kind)
		}
	}
	return out
}

// testDB is the database of the running TestInstancesAndConfigPush.
var testDB interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func TestInstancesAndConfigPush(t *testing.T) {
	b := setup(t)
	testDB = b.db.Pool
	ctx := context.Background()
	actA := tenancy.Actor{UserID: b.userA.ID}
	actB := tenancy.Actor{UserID: b.userB.ID}
	feed := nodelink.NewFeed(b.svc, nil)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	go feed.Run(fctx)

	t.Run("no node means no capacity", func(t *testing.T) {
		if _, err := b.svc.CreateInstance(ctx, actA, b.orgA.ID, tenancy.NewInstance{Name: "x"}); !errors.Is(err, tenancy.ErrNoNode) {
			t.Fatalf("want ErrNoNode, got %v", err)
		}
	})
	n1, tok1, err := b.svc.EnsureNode(ctx, "node-1", map[string]string{"mqtt": "mqtt://n1:1883"})
	if err != nil {
		t.Fatal(err)
	}
	n2, _, err := b.svc.CreateNode(ctx, "node-2")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.svc.NodeHeartbeat(ctx, n2.ID, nodelink.Ack{Revision: 0, Endpoints: map[string]string{"mqtt": "mqtt://n2:1883"}}); err != nil {
		t.Fatal(err)
	}
	f1 := follow(t, feed, n1.ID, 0)
	f2 := follow(t, feed, n2.ID, 0)

	var inA1, inA2, inB tenancy.Instance
	t.Run("placement picks the least-loaded node", func(t *testing.T) {
		if inA1, err = b.svc.CreateInstance(ctx, actA, b.orgA.ID, tenancy.NewInstance{Name: "prod"}); err != nil {
			t.Fatal(err)
		}
		if inA2, err = b.svc.CreateInstance(ctx, actA, b.orgA.ID, tenancy.NewInstance{Name: "staging"}); err != nil {
			t.Fatal(err)
		}
		if inA1.NodeID == inA2.NodeID {
			t.Fatalf("both instances on %s", inA1.NodeID)
		}
		if inB, err = b.svc.CreateInstance(ctx, actB, b.orgB.ID, tenancy.NewInstance{Name: "prod"}); err != nil {
			t.Fatalf("another org may reuse the name: %v", err)
		}
		if len(inA1.ID) != 12 || inA1.ID[:2] != "i-" {
			t.Fatalf("instance id %q", inA1.ID)
		}
		if inA1.Status != tenancy.InstanceProvisioning || inA1.Quotas.MaxConnections != 100 {
			t.Fatalf("new instance: %+v", inA1)
		}
		if _, err := b.svc.CreateInstance(ctx, actA, b.orgA.ID, tenancy.NewInstance{Name: "prod"}); !errors.Is(err, tenancy.ErrConflict) {
			t.Fatalf("duplicate name: %v", err)
		}
	})
	onNode := func(id string) *follower {
		if id == n1.ID {
			return f1
		}
		return f2
	}

	t.Run("each node receives only its instances", func(t *testing.T) {
		f1.waitRevision(t, b.svc)
		f2.waitRevision(t, b.svc)
		for _, in := range []tenancy.Instance{inA1, inA2, inB} {
			mine, other := onNode(in.NodeID), f1
			if mine == f1 {
				other = f2
			}
			if _, ok := mine.state.Instance(in.ID); !ok {
				t.Fatalf("%s missing on its node", in.ID)
			}
			if _, ok := other.state.Instance(in.ID); ok {
				t.Fatalf("%s leaked to the other node", in.ID)
			}
		}
	})

	t.Run("ack makes the instance running", func(t *testing.T) {
		f := onNode(inA1.NodeID)
		if err := b.svc.NodeHeartbeat(ctx, inA1.NodeID, nodelink.Ack{Revision: f.state.Revision()}); err != nil {
			t.Fatal(err)
		}
		got, err := b.svc.Instance(ctx, b.orgA.ID, inA1.ID)
		if err != nil || got.Status != tenancy.InstanceRunning {
			t.Fatalf("status %q, %v", got.Status, err)
		}
		f.waitRevision(t, b.svc)
		if meta, _ := f.state.Instance(inA1.ID); meta.Status != nodelink.StatusRunning {
			t.Fatalf("node sees status %q", meta.Status)
		}
	})

	var cred tenancy.Credential
	var pw string
	t.Run("credentials reach the node and authenticate", func(t *testing.T) {
		creds, pws, err := b.svc.CreateCredentials(ctx, actA, b.orgA.ID, inA1.ID, []tenancy.NewCredential{{Username: "dev-1"}})
		if err != nil {
			t.Fatal(err)
		}
		cred, pw = creds[0], pws[0]
		if len(pw) < 26 {
			t.Fatalf("password %q too short for 128 bits", pw)
		}
		f := onNode(inA1.NodeID)
		f.waitRevision(t, b.svc)
		if _, res := f.state.CheckPassword(inA1.ID, "dev-1", []byte(pw), "c1", time.Now()); res != configsync.AuthOK {
			t.Fatalf("auth %v", res)
		}
		var stored []byte
		if err := b.db.Pool.QueryRow(ctx, `SELECT secret_sha256 FROM device_credentials WHERE id = $1`, cred.ID).Scan(&stored); err != nil || len(stored) != 32 {
			t.Fatalf("stored secret %x %v", stored, err)
		}
		if _, _, err := b.svc.CreateCredentials(ctx, actA, b.orgA.ID, inA1.ID, []tenancy.NewCredential{{Username: "dev-1"}}); err == nil {
			t.Fatal("duplicate username accepted")
		}
		// The same username in another instance is fine.
		if _, _, err := b.svc.CreateCredentials(ctx, actA, b.orgA.ID, inA2.ID, []tenancy.NewCredential{{Username: "dev-1"}}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("bulk create is all or nothing and bounded", func(t *testing.T) {
		many := make([]tenancy.NewCredential, tenancy.MaxBulkCredentials+1)
		for i := range many {
			many[i].Username = "bulk-" + time.Now().Format("150405") + "-" + string(rune('a'+i%26)) + "-" + itoa(i)
		}
		if _, _, err := b.svc.CreateCredentials(ctx, actA, b.orgA.ID, inA1.ID, many); err == nil {
			t.Fatal("1001 credentials accepted")
		}
		list := []tenancy.NewCredential{{Username: "ok-1"}, {Username: "dev-1"}}
		if _, _, err := b.svc.CreateCredentials(ctx, actA, b.orgA.ID, inA1.ID, list); err == nil {
			t.Fatal("bulk with a taken username accepted")
		}
		if _, err := listAll(b, b.orgA.ID, inA1.ID); err != nil {
			t.Fatal(err)
		}
		got, _ := listAll(b, b.orgA.ID, inA1.ID)
		if len(got) != 1 {
			t.Fatalf("partial bulk create left %d credentials", len(got))
		}
		creds, pws, err := b.svc.CreateCredentials(ctx, actA, b.orgA.ID, inA1.ID, many[:1000])
		if err != nil || len(creds) != 1000 || len(pws) != 1000 {
			t.Fatalf("bulk 1000: %d %v", len(creds), err)
		}
	})

	t.Run("disable, rotate and delete change what the node accepts", func(t *testing.T) {
		f := onNode(inA1.NodeID)
		if _, err := b.svc.SetCredentialEnabled(ctx, actA, b.orgA.ID, inA1.ID, cred.ID, false); err != nil {
			t.Fatal(err)
		}
		f.waitRevision(t, b.svc)
		if _, res := f.state.CheckPassword(inA1.ID, "dev-1", []byte(pw), "c1", time.Now()); res != configsync.AuthDisabled {
			t.Fatalf("disabled: %v", res)
		}
		if _, err := b.svc.SetCredentialEnabled(ctx, actA, b.orgA.ID, inA1.ID, cred.ID, true); err != nil {
			t.Fatal(err)
		}
		_, pw2, err := b.svc.RotateCredential(ctx, actA, b.orgA.ID, inA1.ID, cred.ID)
		if err != nil {
			t.Fatal(err)
		}
		f.waitRevision(t, b.svc)
		if _, res := f.state.CheckPassword(inA1.ID, "dev-1", []byte(pw), "c1", time.Now()); res != configsync.AuthBadCredentials {
			t.Fatalf("old password after rotate: %v", res)
		}
		if _, res := f.state.CheckPassword(inA1.ID, "dev-1", []byte(pw2), "c1", time.Now()); res != configsync.AuthOK {
			t.Fatalf("new password: %v", res)
		}
		if err := b.svc.DeleteCredential(ctx, actA, b.orgA.ID, inA1.ID, cred.ID); err != nil {
			t.Fatal(err)
		}
		f.waitRevision(t, b.svc)
		if _, res := f.state.CheckPassword(inA1.ID, "dev-1", []byte(pw2), "c1", time.Now()); res != configsync.AuthBadCredentials {
			t.Fatalf("deleted credential: %v", res)
		}
	})

	t.Run("another org's IDs are not found anywhere", func(t *testing.T) {
		checks := map[string]error{}
		_, checks["get"] = b.svc.Instance(ctx, b.orgB.ID, inA1.ID)
		_, checks["update"] = b.svc.UpdateInstance(ctx, actB, b.orgB.ID, inA1.ID, tenancy.InstancePatch{Name: ptr("stolen")}, nil)
		checks["delete"] = b.svc.DeleteInstance(ctx, actB, b.orgB.ID, inA1.ID)
		_, _, checks["create credential"] = b.svc.CreateCredentials(ctx, actB, b.orgB.ID, inA1.ID, []tenancy.NewCredential{{Username: "x"}})
		_, _, checks["list credentials"] = b.svc.ListCredentials(ctx, b.orgB.ID, inA1.ID, tenancy.Page{})
		_, checks["acl"] = b.svc.CreateACLRule(ctx, actB, b.orgB.ID, inA1.ID, tenancy.ACLRule{Effect: "allow", Action: "all", Filter: "#"})
		_, checks["quotas"] = b.svc.SetInstanceQuotas(ctx, actB, b.orgB.ID, inA1.ID, tenancy.Quotas{})
		_, _, checks["token"] = b.svc.IssueDeviceToken(ctx, actB, b.orgB.ID, inA1.ID, tenancy.NewDeviceToken{TTL: time.Hour,
			Resources: []tenancy.TokenResource{{Filter: "#", Actions: []string{"publish"}}}})
		for name, err := range checks {
			if !errors.Is(err, tenancy.ErrNotFound) {
				t.Errorf("%s: want ErrNotFound, got %v", name, err)
			}
		}
		if got, err := b.svc.Instance(ctx, b.orgA.ID, inA1.ID); err != nil || got.Name != "prod" {
			t.Fatalf("A's instance changed: %+v %v", got, err)
		}
	})

	t.Run("quotas are bounded by the plan and pushed", func(t *testing.T) {
		var ve *tenancy.ValidationError
		if _, err := b.svc.SetInstanceQuotas(ctx, actA, b.orgA.ID, inA1.ID, tenancy.Quotas{MaxConnections: 101}); !errors.As(err, &ve) ||
			ve.Fields[0].Field != "max_connections" {
			t.Fatalf("over the plan: %v", err)
		}
		q, err := b.svc.SetInstanceQuotas(ctx, actA, b.orgA.ID, inA1.ID, tenancy.Quotas{MaxConnections: 5})
		if err != nil || q.MaxConnections != 5 || q.MaxPayloadBytes != 65536 {
			t.Fatalf("set: %+v %v", q, err)
		}
		f := onNode(inA1.NodeID)
		f.waitRevision(t, b.svc)
		if meta, _ := f.state.Instance(inA1.ID); meta.Quotas.MaxConnections != 5 {
			t.Fatalf("node quotas %+v", meta.Quotas)
		}
		if err := b.svc.ApplyPlanQuotas(ctx, b.orgA.ID, "developer", tenancy.Quotas{MaxConnections: 1000, MaxPayloadBytes: 262144}); err != nil {
			t.Fatal(err)
		}
		got, _ := b.svc.Instance(ctx, b.orgA.ID, inA1.ID)
		if got.Quotas.MaxConnections != 5 || got.Quotas.MaxPayloadBytes != 262144 || got.Plan != "developer" {
			t.Fatalf("after upgrade: lowered value kept, others raised; got %+v plan %s", got.Quotas, got.Plan)
		}
	})

	t.Run("suspend and delete revoke on the node", func(t *testing.T) {
		f := onNode(inA2.NodeID)
		if _, err := b.svc.UpdateInstance(ctx, actA, b.orgA.ID, inA2.ID, tenancy.InstancePatch{Status: ptr(tenancy.InstanceSuspended)}, nil); err != nil {
			t.Fatal(err)
		}
		f.waitRevision(t, b.svc)
		if meta, _ := f.state.Instance(inA2.ID); meta.Status != nodelink.StatusSuspended {
			t.Fatalf("node status %q", meta.Status)
		}
		if _, err := b.svc.UpdateInstance(ctx, actA, b.orgA.ID, inA2.ID, tenancy.InstancePatch{DeletionProtection: ptr(true)}, nil); err != nil {
			t.Fatal(err)
		}
		if err := b.svc.DeleteInstance(ctx, actA, b.orgA.ID, inA2.ID); !errors.Is(err, tenancy.ErrDeletionProtected) {
			t.Fatalf("protected delete: %v", err)
		}
		if _, err := b.svc.UpdateInstance(ctx, actA, b.orgA.ID, inA2.ID, tenancy.InstancePatch{DeletionProtection: ptr(false)}, nil); err != nil {
			t.Fatal(err)
		}
		if err := b.svc.DeleteInstance(ctx, actA, b.orgA.ID, inA2.ID); err != nil {
			t.Fatal(err)
		}
		f.waitRevision(t, b.svc)
		if _, ok := f.state.Instance(inA2.ID); ok {
			t.Fatal("deleted instance still on the node")
		}
	})

	t.Run("a node resumes from its revision without a snapshot", func(t *testing.T) {
		f := onNode(inA1.NodeID)
		since := f.state.Revision()
		g := follow(t, feed, f.node, since)
		if _, _, err := b.svc.CreateCredentials(ctx, actA, b.orgA.ID, inA1.ID, []tenancy.NewCredential{{Username: "late"}}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(g.kinds()) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		// Changes for instance 1 (on n1) arrive as deltas: the first event is
		// not a snapshot.
		if k := g.kinds(); len(k) == 0 || k[0] == nodelink.KindSnapshot {
			t.Fatalf("resume got %v", k)
		}
	})

	t.Run("node tokens", func(t *testing.T) {
		if err := b.svc.AuthenticateNode(ctx, n1.ID, tok1); err != nil {
			t.Fatalf("good token: %v", err)
		}
		for _, bad := range []string{"", "aen_" + n1.ID + "_wrong", "aen_" + n2.ID + tok1[len("aen_"+n1.ID):], tok1 + "x"} {
			if err := b.svc.AuthenticateNode(ctx, n1.ID, bad); !errors.Is(err, tenancy.ErrUnauthenticated) {
				t.Errorf("token %q: %v", bad, err)
			}
		}
		if err := b.svc.AuthenticateNode(ctx, n2.ID, tok1); !errors.Is(err, tenancy.ErrUnauthenticated) {
			t.Error("node 1's token works for node 2")
		}
	})
}

func listAll(b *bundle, org, inst string) ([]tenancy.Credential, error) {
	l, _, err := b.svc.ListCredentials(context.Background(), org, inst, tenancy.Page{Limit: 200})
	return l, err
}

func ptr[T any](v T) *T { return &v }

func itoa(i int) string {
	const d = "0123456789"
	if i < 10 {
		return d[i : i+1]
	}
	return itoa(i/10) + d[i%10:i%10+1]
}
