package main_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/tenancy"
	"github.com/jackc/pgx/v5/pgxpool"
)

type nodeOut struct {
	ID              string
	Name            string
	Token           string
	AppliedRevision int64      `json:"applied_revision"`
	LastSeenAt      *time.Time `json:"last_seen_at"`
	Instances       int
}

// TestTwoNodesAndSnapshotRestart runs `aerie controlplane` and two `aerie
// dataplane` processes: each node receives only the config of the
// instances placed on it; with the control plane stopped a node restarts
// from its disk snapshot and still authenticates devices; when the control
// plane is back, changes arrive by resuming from the node's revision.
func TestTwoNodesAndSnapshotRestart(t *testing.T) {
	dsn := pgtest.EmptyDSN(t)
	env := cleanEnv("DATABASE_URL="+dsn, "AERIE_ADMIN_TOKEN=operator-secret-token-123")
	cpPorts := freePorts(t)
	cpDir := newDataDir(t)
	cpArgs := []string{"controlplane", "--data-dir", cpDir, "--http-addr", cpPorts.http}
	cp := start(t, env, cpArgs...)
	waitReady(t, cp, cpPorts.http, 60*time.Second)
	base := "http://" + cpPorts.http
	op := api{base: base, token: "operator-secret-token-123"}

	var tokens [2]nodeOut
	op.call(t, "POST", "/v1/admin/nodes", map[string]any{"name": "edge-1"}, 201, &tokens[0])
	// The second node's token comes from the operator CLI instead.
	cli := start(t, env, "node", "create", "edge-2")
	if code := cli.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("aerie node create: exit %d\n%s", code, cli.stderr.String())
	}
	for _, line := range strings.Split(cli.stderr.String(), "\n") {
		if tok, ok := strings.CutPrefix(strings.TrimSpace(line), "AERIE_NODE_TOKEN="); ok {
			tokens[1].Token = tok
		}
	}
	if !strings.HasPrefix(tokens[1].Token, "aen_") {
		t.Fatalf("aerie node create printed no token:\n%s", cli.stderr.String())
	}
	var listed struct{ Data []nodeOut }
	op.call(t, "GET", "/v1/admin/nodes", nil, 200, &listed)
	for _, n := range listed.Data {
		if n.Name == "edge-2" {
			tokens[1].ID = n.ID
		}
	}
	if tokens[1].ID == "" || !strings.HasPrefix(tokens[1].Token, "aen_"+tokens[1].ID+"_") {
		t.Fatalf("edge-2 not listed by the admin API: %+v", listed.Data)
	}
	api{base: base, token: "wrong"}.call(t, "GET", "/v1/admin/nodes", nil, 401, nil)

	type node struct {
		p     *proc
		ports ports
		dir   string
	}
	var nodes [2]node
	startNode := func(i int) {
		if nodes[i].dir == "" {
			nodes[i].dir = newDataDir(t)
			nodes[i].ports = freePorts(t)
		}
		nodes[i].p = start(t, cleanEnv(), append([]string{"dataplane", "--data-dir", nodes[i].dir, "--control-plane", base,
			"--node-token", tokens[i].Token}, nodes[i].ports.args()...)...)
		waitReady(t, nodes[i].p, nodes[i].ports.http, 30*time.Second)
	}
	startNode(0)
	startNode(1)
	// Both nodes must have said hello before placement can use them.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var list struct{ Data []nodeOut }
		op.call(t, "GET", "/v1/admin/nodes", nil, 200, &list)
		seen := 0
		for _, n := range list.Data {
			if n.LastSeenAt != nil {
				seen++
			}
		}
		if seen == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes not seen: %+v", list.Data)
		}
		time.Sleep(100 * time.Millisecond)
	}

	c, org := signup(t, base, "two@example.com")
	var insts [2]instanceOut
	var creds [2]credOut
	for i := range insts {
		c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "site-" + string(rune('a'+i))}, 201, &insts[i])
	}
	if insts[0].NodeID == insts[1].NodeID {
		t.Fatalf("both instances placed on %s; want one per node", insts[0].NodeID)
	}
	nodeOf := func(inst instanceOut) int {
		if inst.NodeID == tokens[0].ID {
			return 0
		}
		return 1
	}
	for i := range insts {
		insts[i] = waitRunning(t, c, org, insts[i].ID)
		c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+insts[i].ID+"/credentials", map[string]any{"username": "dev"}, 201, &creds[i])
	}
	time.Sleep(300 * time.Millisecond)

	t.Run("each node serves only its instances", func(t *testing.T) {
		for i, inst := range insts {
			mine, other := nodes[nodeOf(inst)], nodes[1-nodeOf(inst)]
			if _, code := connect5(t, mine.ports.mqtt, "d", creds[i].MQTTUsername, creds[i].Password, nil); code != 0 {
				t.Fatalf("instance %s refused on its node: 0x%02x", inst.ID, code)
			}
			if _, code := connect5(t, other.ports.mqtt, "d", creds[i].MQTTUsername, creds[i].Password, nil); code != 0x87 {
				t.Fatalf("instance %s on the other node: 0x%02x, want 0x87 (unknown there)", inst.ID, code)
			}
		}
	})

	t.Run("an HTTP publish reaches the subscriber on the instance's own node over the node API", func(t *testing.T) {
		for i, inst := range insts {
			got := make(chan *paho.Publish, 1)
			sub, code := connect5(t, nodes[nodeOf(inst)].ports.mqtt, "listener", creds[i].MQTTUsername, creds[i].Password, func(p *paho.Publish) { got <- p })
			if code != 0 {
				t.Fatalf("refused 0x%02x", code)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "cmd/#", QoS: 1}}}); err != nil {
				t.Fatal(err)
			}
			cancel()
			c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/publish", map[string]any{"topic": "cmd/go", "payload": inst.ID, "qos": 1}, 200, nil)
			select {
			case m := <-got:
				if m.Topic != "cmd/go" || string(m.Payload) != inst.ID {
					t.Fatalf("got %q %q", m.Topic, m.Payload)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("instance %s: nothing received", inst.ID)
			}
			_ = sub.Disconnect(&paho.Disconnect{})
		}
	})

	n0 := nodeOf(insts[0])
	var me struct{ ID string }
	c.call(t, "GET", "/v1/me", nil, 200, &me)
	t.Run("a node restarts from its disk snapshot with the control plane down", func(t *testing.T) {
		cp.cmd.Process.Signal(syscall.SIGTERM)
		cp.wait(t, 15*time.Second)
		nodes[n0].p.cmd.Process.Signal(syscall.SIGTERM)
		nodes[n0].p.wait(t, 15*time.Second)
		snap, err := os.ReadFile(filepath.Join(nodes[n0].dir, "config", "config.snapshot"))
		if err != nil {
			t.Fatalf("node left no config snapshot: %v", err)
		}
		if !bytes.Contains(snap, []byte(insts[0].ID)) || bytes.Contains(snap, []byte(insts[1].ID)) {
			t.Fatalf("snapshot of node %d: has own instance %v, has the other node's instance %v",
				n0, bytes.Contains(snap, []byte(insts[0].ID)), bytes.Contains(snap, []byte(insts[1].ID)))
		}
		startNode(n0)
		if _, code := connect5(t, nodes[n0].ports.mqtt, "d2", creds[0].MQTTUsername, creds[0].Password, nil); code != 0 {
			t.Fatalf("after restart without control plane: 0x%02x", code)
		}
		if _, code := connect5(t, nodes[n0].ports.mqtt, "d3", creds[0].MQTTUsername, "wrong", nil); code != 0x86 {
			t.Fatalf("wrong password after restart: 0x%02x", code)
		}
	})

	t.Run("control plane back: changes arrive by resuming, not reloading", func(t *testing.T) {
		// A change committed while this control plane is down (as another
		// control-plane replica would make it, straight into Postgres).
		ctx := context.Background()
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		svc := tenancy.NewService(pool, slog.New(slog.NewTextHandler(io.Discard, nil)), tenancy.WithPlans(billing.NewPlans(pool)))
		if _, err := svc.SetCredentialEnabled(ctx, tenancy.Actor{UserID: me.ID}, org, insts[0].ID, creds[0].ID, false); err != nil {
			t.Fatalf("disable while the control plane is down: %v", err)
		}
		if _, code := connect5(t, nodes[n0].ports.mqtt, "d4", creds[0].MQTTUsername, creds[0].Password, nil); code != 0 {
			t.Fatalf("node applied a change with no control plane to send it: 0x%02x", code)
		}
		cp = start(t, env, cpArgs...)
		waitReady(t, cp, cpPorts.http, 60*time.Second)
		var late credOut
		c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+insts[0].ID+"/credentials", map[string]any{"username": "late"}, 201, &late)
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, code := connect5(t, nodes[n0].ports.mqtt, "late", late.MQTTUsername, late.Password, nil)
			if code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("credential created after the control plane came back never reached the node (0x%02x)", code)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if _, code := connect5(t, nodes[n0].ports.mqtt, "d5", creds[0].MQTTUsername, creds[0].Password, nil); code != 0x87 {
			t.Fatalf("credential disabled while the control plane was down still connects: 0x%02x, want 0x87", code)
		}
		logs := cp.stderr.String()
		if strings.Contains(logs, "sending config snapshot") {
			t.Fatalf("control plane sent a snapshot after coming back:\n%s", logs)
		}
		if !strings.Contains(logs, "node watching config") || strings.Contains(logs, `since=0 `) || strings.Contains(logs, `"since":0,`) {
			t.Fatalf("node did not resume from its revision:\n%s", logs)
		}
	})
}
