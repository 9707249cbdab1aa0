package main_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// cellInstanceOut is an instance with its cell, as the API shows it.
type cellInstanceOut struct {
	ID              string
	Status          string
	ConfigRevision  int64 `json:"config_revision"`
	AppliedRevision int64 `json:"applied_revision"`
	Endpoints       struct{ MQTT *string }
	Cell            struct {
		Name, Status string
		Nodes        []struct {
			Name, Status string
			Endpoints    struct{ MQTT *string }
		}
	}
}

type cellNodeOut struct {
	ID, Name, Cell, Status string
	AppliedRevision        int64      `json:"applied_revision"`
	LastSeenAt             *time.Time `json:"last_seen_at"`
}

// nodeToken runs `aerie node create` with args and returns the token it
// printed.
func nodeToken(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cli := start(t, env, append([]string{"node", "create"}, args...)...)
	if code := cli.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("aerie node create %v: exit %d\n%s", args, code, cli.stderr.String())
	}
	for _, line := range strings.Split(cli.stderr.String(), "\n") {
		if tok, ok := strings.CutPrefix(strings.TrimSpace(line), "AERIE_NODE_TOKEN="); ok {
			return tok
		}
	}
	t.Fatalf("aerie node create %v printed no token:\n%s", args, cli.stderr.String())
	return ""
}

// TestCellTwoNodes: two nodes registered in one cell (`aerie node create
// --cell`) run as `aerie dataplane --cell` processes; an instance created
// over the API is applied by both (devices authenticate on either), its
// JSON shows the cell healthy with both nodes' endpoints; a node started
// with another cell than its registered one is refused and sees why; one
// node killed → after --node-down-after the node is down and the cell
// degraded, in the API, `aerie node list` and `aerie cell list`, and the
// instance keeps being served (and reported running) through the other.
func TestCellTwoNodes(t *testing.T) {
	dsn := pgtest.EmptyDSN(t)
	env := cleanEnv("DATABASE_URL="+dsn, "AERIE_ADMIN_TOKEN=operator-secret-token-123")
	cpPorts := freePorts(t)
	cp := start(t, env, "controlplane", "--data-dir", newDataDir(t), "--http-addr", cpPorts.http, "--node-down-after", "8s")
	// The operator commands count nodes down with the same window.
	env = append(env, "AERIE_NODE_DOWN_AFTER=8s")
	waitReady(t, cp, cpPorts.http, 60*time.Second)
	base := "http://" + cpPorts.http
	op := api{base: base, token: "operator-secret-token-123"}

	tokens := []string{nodeToken(t, env, "edge-a", "--cell", "c1"), nodeToken(t, env, "--cell", "c1", "edge-b")}
	stray := nodeToken(t, env, "edge-c") // in a cell of its own, "edge-c"
	type node struct {
		p     *proc
		ports ports
	}
	var nodes [2]node
	run := func(token, cell string) (*proc, ports) {
		ps := freePorts(t)
		p := start(t, cleanEnv(), append([]string{"dataplane", "--data-dir", newDataDir(t), "--control-plane", base,
			"--node-token", token, "--cell", cell}, ps.args()...)...)
		return p, ps
	}
	for i := range nodes {
		nodes[i].p, nodes[i].ports = run(tokens[i], "c1")
	}
	strayProc, _ := run(stray, "c1")
	for i := range nodes {
		waitReady(t, nodes[i].p, nodes[i].ports.http, 30*time.Second)
	}
	listNodes := func() map[string]cellNodeOut {
		var list struct{ Data []cellNodeOut }
		op.call(t, "GET", "/v1/admin/nodes", nil, 200, &list)
		out := map[string]cellNodeOut{}
		for _, n := range list.Data {
			out[n.Name] = n
		}
		return out
	}
	waitFor(t, 15*time.Second, "both nodes of c1 up", func() bool {
		ns := listNodes()
		return ns["edge-a"].Status == "up" && ns["edge-b"].Status == "up" && ns["edge-a"].Cell == "c1" && ns["edge-b"].Cell == "c1"
	})

	t.Run("a node started with another cell is refused and sees why", func(t *testing.T) {
		waitFor(t, 10*time.Second, "the refusal in the node's log", func() bool {
			return strings.Contains(strayProc.stderr.String(), "refuses this node's heartbeat") &&
				strings.Contains(strayProc.stderr.String(), "registered in cell edge-c")
		})
		if n := listNodes()["edge-c"]; n.Status != "down" || n.LastSeenAt != nil || n.Cell != "edge-c" {
			t.Fatalf("refused node: %+v, want never seen, down, still in cell edge-c", n)
		}
		if !strings.Contains(cp.stderr.String(), "node refused: wrong cell") {
			t.Fatal("the control plane did not log the refusal")
		}
	})
	strayProc.cmd.Process.Signal(syscall.SIGKILL)

	c, org := signup(t, base, "cells@example.com")
	var inst cellInstanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "fleet"}, 201, &inst)
	path := "/v1/orgs/" + org + "/instances/" + inst.ID
	var cred credOut
	c.call(t, "POST", path+"/credentials", map[string]any{"username": "dev"}, 201, &cred)
	c.call(t, "GET", path, nil, 200, &inst)

	t.Run("both nodes of the cell apply the instance", func(t *testing.T) {
		if inst.Cell.Name != "c1" {
			t.Fatalf("instance placed on cell %q, want c1", inst.Cell.Name)
		}
		waitFor(t, 10*time.Second, "both nodes applied the instance's config", func() bool {
			ns := listNodes()
			return ns["edge-a"].AppliedRevision >= inst.ConfigRevision && ns["edge-b"].AppliedRevision >= inst.ConfigRevision
		})
		for i, n := range nodes {
			if _, code := connect5(t, n.ports.mqtt, "d", cred.MQTTUsername, cred.Password, nil); code != 0 {
				t.Fatalf("node %d refused the instance's device: 0x%02x", i, code)
			}
		}
		waitFor(t, 10*time.Second, "instance running", func() bool {
			c.call(t, "GET", path, nil, 200, &inst)
			return inst.Status == "running"
		})
	})

	t.Run("the instance shows the cell healthy and both nodes' endpoints", func(t *testing.T) {
		if inst.Cell.Status != "healthy" || len(inst.Cell.Nodes) != 2 {
			t.Fatalf("cell %+v, want healthy with 2 nodes", inst.Cell)
		}
		got := map[string]string{}
		for _, n := range inst.Cell.Nodes {
			if n.Status != "up" || n.Endpoints.MQTT == nil {
				t.Fatalf("cell node %+v", n)
			}
			got[n.Name] = *n.Endpoints.MQTT
		}
		for i, name := range []string{"edge-a", "edge-b"} {
			if port := nodes[i].ports.mqtt[strings.LastIndexByte(nodes[i].ports.mqtt, ':'):]; !strings.HasSuffix(got[name], port) {
				t.Fatalf("%s shows %q, want its MQTT port %s", name, got[name], port)
			}
		}
		if inst.Endpoints.MQTT == nil || (*inst.Endpoints.MQTT != got["edge-a"] && *inst.Endpoints.MQTT != got["edge-b"]) {
			t.Fatalf("endpoints.mqtt %v is not one of the cell's nodes' %v", inst.Endpoints.MQTT, got)
		}
	})

	t.Run("a node killed: down, the cell degraded, the instance still served", func(t *testing.T) {
		nodes[0].p.cmd.Process.Signal(syscall.SIGKILL)
		killed := time.Now()
		waitFor(t, 15*time.Second, "the cell degraded in the instance", func() bool {
			c.call(t, "GET", path, nil, 200, &inst)
			return inst.Cell.Status == "degraded"
		})
		t.Logf("cell degraded %s after the kill (--node-down-after 8s; nodes report every 5 s)", time.Since(killed).Round(100*time.Millisecond))
		if time.Since(killed) < 2*time.Second {
			t.Fatalf("degraded %s after the kill: sooner than the window allows", time.Since(killed))
		}
		if inst.Status != "running" || inst.Cell.Nodes[0].Name != "edge-b" || inst.Cell.Nodes[0].Status != "up" ||
			inst.Cell.Nodes[1].Status != "down" || *inst.Endpoints.MQTT != *inst.Cell.Nodes[0].Endpoints.MQTT {
			t.Fatalf("instance after the kill: %+v", inst)
		}
		if n := listNodes()["edge-a"]; n.Status != "down" {
			t.Fatalf("killed node %+v", n)
		}
		out := runCLI(t, env, "cell", "list")
		if !regexp.MustCompile(`(?m)^c1\s+2\s+1\s+degraded\s+1\s`).MatchString(out) {
			t.Fatalf("aerie cell list:\n%s", out)
		}
		out = runCLI(t, env, "node", "list")
		if !regexp.MustCompile(`(?m)\sedge-a\s+c1\s+down\s`).MatchString(out) || !regexp.MustCompile(`(?m)\sedge-b\s+c1\s+up\s`).MatchString(out) {
			t.Fatalf("aerie node list:\n%s", out)
		}
		// A change still reaches the surviving node and the API's
		// read-your-writes wait (Prefer: wait) is not held up by the dead
		// one: answered 201 once the live node applied it.
		began := time.Now()
		body, _ := json.Marshal(map[string]any{"username": "dev2"})
		req, _ := http.NewRequest("POST", base+path+"/credentials", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set("Prefer", "wait=10")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var cred2 credOut
		err = json.NewDecoder(resp.Body).Decode(&cred2)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 201 || resp.Header.Get("Preference-Applied") != "wait=10" {
			t.Fatalf("credential with Prefer: wait=10 and a node down: %d %q (%v)", resp.StatusCode, resp.Header.Get("Preference-Applied"), err)
		}
		if d := time.Since(began); d > 3*time.Second {
			t.Fatalf("credential creation took %s with a node down", d)
		}
		if _, code := connect5(t, nodes[1].ports.mqtt, "d2", cred2.MQTTUsername, cred2.Password, nil); code != 0 {
			t.Fatalf("surviving node refused the new credential: 0x%02x", code)
		}
	})

	t.Run("the operator's endpoints override the nodes'", func(t *testing.T) {
		out := runCLI(t, env, "cell", "set-endpoints", "c1", "mqtt=mqtt.example.net:1883")
		if !strings.Contains(out, "mqtt=mqtt://mqtt.example.net:1883") {
			t.Fatalf("aerie cell set-endpoints:\n%s", out)
		}
		c.call(t, "GET", path, nil, 200, &inst)
		if inst.Endpoints.MQTT == nil || *inst.Endpoints.MQTT != "mqtt://mqtt.example.net:1883" || len(inst.Cell.Nodes) != 2 {
			t.Fatalf("instance after set-endpoints: %+v", inst)
		}
	})
}

// runCLI runs an operator command and returns its output.
func runCLI(t *testing.T, env []string, args ...string) string {
	t.Helper()
	p := start(t, env, args...)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("aerie %v: exit %d\n%s", args, code, p.stderr.String())
	}
	return p.stderr.String()
}

// waitFor polls cond every 100 ms until it holds, failing after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
