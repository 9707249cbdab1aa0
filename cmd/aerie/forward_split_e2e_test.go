package main_test

import (
	"strings"
	"testing"
	"time"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// TestForwardingSplitTopology (issue 17 item 3) runs `aerie controlplane`
// and one `aerie dataplane`: an HTTP publish is read by a consumer group
// and forwarded by a webhook rule (the node fetches the rule's secret from
// the control plane); then the node is killed while the rule is delivering
// to a slow receiver and started again on the same data directory: every
// message arrives, in order per topic.
func TestForwardingSplitTopology(t *testing.T) {
	const n, devices = 400, 4
	dsn := pgtest.EmptyDSN(t)
	h := newHook(t)
	env := cleanEnv("DATABASE_URL="+dsn, "AERIE_ADMIN_TOKEN=operator-secret-token-789")
	cpPorts := freePorts(t)
	cp := start(t, env, "controlplane", "--data-dir", newDataDir(t), "--http-addr", cpPorts.http)
	waitReady(t, cp, cpPorts.http, 60*time.Second)
	base := "http://" + cpPorts.http
	op := api{base: base, token: "operator-secret-token-789"}
	var tok nodeOut
	op.call(t, "POST", "/v1/admin/nodes", map[string]any{"name": "edge"}, 201, &tok)
	np := freePorts(t)
	nodeDir := newDataDir(t)
	nodeEnv := cleanEnv("AERIE_FORWARD_CA_FILE="+caFile(t, h), "AERIE_FORWARD_ALLOW_PRIVATE=true")
	nodeArgs := append([]string{"dataplane", "--data-dir", nodeDir, "--control-plane", base, "--node-token", tok.Token}, np.args()...)
	node := start(t, nodeEnv, nodeArgs...)
	waitReady(t, node, np.http, 30*time.Second)
	unlimitedEnterprise(t, dsn)

	c, org := signup(t, base, "split-forward@example.com")
	c.call(t, "PUT", "/v1/orgs/"+org+"/subscription", map[string]any{"plan": "enterprise"}, 200, nil)
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "fleet"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	ip := "/v1/orgs/" + org + "/instances/" + inst.ID
	var tel topicOut
	prefer(t, c, "POST", ip+"/topics", map[string]any{"name": "telemetry", "filter": "fleet/+/telemetry"}, &tel)
	var cred credOut
	prefer(t, c, "POST", ip+"/credentials", map[string]any{"username": "dev"}, &cred)
	var r ruleOut
	prefer(t, c, "POST", ip+"/rules", map[string]any{"name": "hook", "filter": "fleet/+/telemetry", "sink": map[string]any{"type": "webhook", "url": h.srv.URL}}, &r)
	h.set(func(h *hook) { h.secret = []byte(r.Secret) })
	rp := ip + "/rules/" + r.ID
	waitStatus(t, c, rp, "rule running on the node", func(s ruleStatusOut) bool { return s.State == "active" })

	// HTTP publish → consumer group read → webhook.
	c.call(t, "POST", ip+"/publish", map[string]any{"topic": "fleet/http/telemetry", "payload": "http:0", "qos": 1}, 200, nil)
	var b polled
	if !within(10*time.Second, func() bool {
		c.call(t, "GET", ip+"/topics/"+tel.ID+"/messages?group=app&limit=10&wait=2", nil, 200, &b)
		return len(b.Messages) == 1
	}) || string(b.Messages[0].Payload) != "http:0" {
		t.Fatalf("group read of the HTTP publish: %+v", b)
	}
	if !within(10*time.Second, func() bool { return h.distinct() == 1 }) {
		t.Fatal("the HTTP publish was not forwarded")
	}
	if evs, bad := h.events(); len(bad) > 0 || evs[0].Subject != "fleet/http/telemetry" || string(evs[0].Data) != "http:0" {
		t.Fatalf("forwarded %+v, refused %v", evs, bad)
	}

	// Kill the node mid-stream; start it again.
	h.set(func(h *hook) { h.delay = 5 * time.Millisecond })
	publishSeq(t, np.mqtt, cred.MQTTUsername, cred.Password, devices, n, 0)
	if !within(20*time.Second, func() bool { return h.distinct() > 1+n/10 }) {
		t.Fatalf("only %d forwarded", h.distinct())
	}
	_ = node.cmd.Process.Kill()
	node.wait(t, 10*time.Second)
	before := h.distinct()
	if before >= 1+n {
		t.Fatalf("all %d forwarded before the kill: the test proves nothing", before)
	}
	h.set(func(h *hook) { h.delay = 0 })
	node = start(t, nodeEnv, nodeArgs...)
	waitReady(t, node, np.http, 30*time.Second)
	if !within(30*time.Second, func() bool { return h.distinct() == 1+n }) {
		var st ruleStatusOut
		c.call(t, "GET", rp+"/status", nil, 200, &st)
		t.Fatalf("after the restart: %d of %d (%d before); status %+v", h.distinct(), 1+n, before, st)
	}
	evs, bad := h.events()
	if len(bad) > 0 {
		t.Fatalf("refused: %v", bad[0])
	}
	var dev []hookEvent
	for _, e := range evs {
		if strings.HasPrefix(e.Subject, "fleet/d") {
			dev = append(dev, e)
		}
	}
	if inOrder(t, dev) != n {
		t.Fatalf("device messages: %d distinct", inOrder(t, dev))
	}
	t.Logf("%d forwarded before the kill, %d requests in all for %d messages", before, len(evs), 1+n)
}
