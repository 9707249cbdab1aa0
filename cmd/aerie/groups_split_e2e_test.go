package main_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// TestConsumerGroupsSplitTopology (issue 17 item 2) runs `aerie
// controlplane` and one `aerie dataplane`: the control plane reaches the
// node's API (URL from its heartbeat, secret derived from the node token)
// to read a topic as a consumer group; device and HTTP publishes are both
// read; another org's instance is 404; the node API refuses a wrong secret.
func TestConsumerGroupsSplitTopology(t *testing.T) {
	dsn := pgtest.EmptyDSN(t)
	env := cleanEnv("DATABASE_URL="+dsn, "AERIE_ADMIN_TOKEN=operator-secret-token-456")
	cpPorts := freePorts(t)
	cp := start(t, env, "controlplane", "--data-dir", newDataDir(t), "--http-addr", cpPorts.http)
	waitReady(t, cp, cpPorts.http, 60*time.Second)
	base := "http://" + cpPorts.http
	op := api{base: base, token: "operator-secret-token-456"}
	var tok nodeOut
	op.call(t, "POST", "/v1/admin/nodes", map[string]any{"name": "edge"}, 201, &tok)
	np := freePorts(t)
	node := start(t, cleanEnv(), append([]string{"dataplane", "--data-dir", newDataDir(t), "--control-plane", base, "--node-token", tok.Token}, np.args()...)...)
	waitReady(t, node, np.http, 30*time.Second)
	if !within(15*time.Second, func() bool {
		var list struct{ Data []nodeOut }
		op.call(t, "GET", "/v1/admin/nodes", nil, 200, &list)
		return len(list.Data) == 1 && list.Data[0].LastSeenAt != nil
	}) {
		t.Fatal("node not seen")
	}

	c, org := signup(t, base, "split-groups@example.com")
	other, otherOrg := signup(t, base, "split-other@example.com")
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "fleet"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	ip := "/v1/orgs/" + org + "/instances/" + inst.ID
	var tel topicOut
	c.callPrefer(t, 10, "POST", ip+"/topics", map[string]any{"name": "telemetry", "filter": "fleet/+/telemetry"}, &tel)
	var cred credOut
	c.callPrefer(t, 10, "POST", ip+"/credentials", map[string]any{"username": "dev"}, &cred)
	time.Sleep(300 * time.Millisecond)

	dev, err := connect3(np.mqtt, "dev", cred.MQTTUsername, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Disconnect(100)
	const n = 15 // within the free plan's publish rate
	for j := range n {
		if tk := dev.Publish(fmt.Sprintf("fleet/d%d/telemetry", j), 1, false, strconv.Itoa(j)); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
	}
	c.call(t, "POST", ip+"/publish", map[string]any{"topic": "fleet/http/telemetry", "payload": "from-http", "qos": 1}, 200, nil)

	tp := ip + "/topics/" + tel.ID
	got := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < n+1 && time.Now().Before(deadline) {
		var b polled
		c.call(t, "GET", tp+"/messages?group=app&limit=100&wait=2", nil, 200, &b)
		var offs []uint64
		for _, m := range b.Messages {
			if got[string(m.Payload)] {
				t.Fatalf("message %q twice", m.Payload)
			}
			got[string(m.Payload)] = true
			offs = append(offs, m.Offset)
			if !strings.HasPrefix(m.Topic, "fleet/") {
				t.Fatalf("topic %q carries the mount", m.Topic)
			}
		}
		if len(offs) > 0 {
			c.call(t, "POST", tp+"/messages/ack", map[string]any{"group": "app", "offsets": offs}, 200, nil)
		}
	}
	if len(got) != n+1 || !got["from-http"] {
		t.Fatalf("read %d of %d messages over the split topology: %v", len(got), n+1, got)
	}
	var st storageOut
	c.call(t, "GET", tp+"/storage", nil, 200, &st)
	if st.StoredBytes <= 0 {
		t.Fatalf("storage %d", st.StoredBytes)
	}
	other.call(t, "GET", "/v1/orgs/"+otherOrg+"/instances/"+inst.ID+"/topics/"+tel.ID+"/messages?group=app", nil, 404, nil)

	// Live clients come from the node over the same node API: the control
	// plane lists the connected device and cuts it off (issue 18).
	var clients struct {
		Data []struct {
			ClientID        string `json:"client_id"`
			ProtocolVersion int    `json:"protocol_version"`
		} `json:"data"`
	}
	c.call(t, "GET", ip+"/clients", nil, 200, &clients)
	if len(clients.Data) != 1 || clients.Data[0].ClientID != "dev" || clients.Data[0].ProtocolVersion != 4 {
		t.Fatalf("clients over the split topology: %+v", clients.Data)
	}
	other.call(t, "GET", "/v1/orgs/"+otherOrg+"/instances/"+inst.ID+"/clients", nil, 404, nil)
	c.call(t, "DELETE", ip+"/clients/dev", nil, 204, nil)
	for deadline := time.Now().Add(5 * time.Second); dev.IsConnectionOpen(); {
		if time.Now().After(deadline) {
			t.Fatal("the device is still connected after DELETE …/clients/dev")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The node API itself wants the derived secret.
	for _, secret := range []string{"", "wrong", tok.Token} {
		req, _ := http.NewRequest("POST", "http://"+np.http+"/internal/v1/node/topics.poll", strings.NewReader(`{"instance_id":"`+inst.ID+`","body":{"topic_id":"`+tel.ID+`","group":"evil"}}`))
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("node api with secret %q: status %d", secret, resp.StatusCode)
		}
	}
}
