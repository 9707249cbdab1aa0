package main_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/internal/pgtest"
)

type topicOut struct {
	ID               string `json:"id"`
	Name             string `json:"name"`
	Filter           string `json:"filter"`
	RetentionSeconds int64  `json:"retention_seconds"`
	MaxQoS           int    `json:"max_qos"`
	RetainAllowed    bool   `json:"retain_allowed"`
}

// TestTopicsEndToEnd (issue 17 item 1) against `aerie serve`: topic CRUD
// through the public API (another org's instance is 404), strict mode
// refusing a publish outside every topic (v5 PUBACK 0x87, 3.1.1 acknowledged
// and not delivered) and allowing one inside, and a topic's policy (max QoS,
// retained allowed) refusing what it does not allow.
func TestTopicsEndToEnd(t *testing.T) {
	dsn := pgtest.EmptyDSN(t)
	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+dsn), append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	c, org := signup(t, base, "topics@example.com")
	other, otherOrg := signup(t, base, "other-topics@example.com")
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "fleet"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	ip := "/v1/orgs/" + org + "/instances/" + inst.ID
	var tel, cmd topicOut
	c.call(t, "POST", ip+"/topics", map[string]any{"name": "telemetry", "filter": "fleet/+/telemetry"}, 201, &tel)
	if tel.ID == "" || tel.MaxQoS != 2 || !tel.RetainAllowed || tel.Filter != "fleet/+/telemetry" {
		t.Fatalf("created topic %+v", tel)
	}
	c.call(t, "POST", ip+"/topics", map[string]any{"name": "telemetry", "filter": "x/#"}, 409, nil)
	c.call(t, "POST", ip+"/topics", map[string]any{"name": "bad", "filter": "a/#/b"}, 400, nil)
	c.call(t, "POST", ip+"/topics", map[string]any{"name": "cmd", "filter": "fleet/+/cmd", "max_qos": 0, "retain_allowed": false}, 201, &cmd)
	var list struct{ Data []topicOut }
	c.call(t, "GET", ip+"/topics", nil, 200, &list)
	if len(list.Data) != 2 {
		t.Fatalf("list: %+v", list)
	}
	var got topicOut
	c.call(t, "PATCH", ip+"/topics/"+tel.ID, map[string]any{"retention_seconds": 3600}, 200, &got)
	if got.RetentionSeconds != 3600 || got.Name != "telemetry" {
		t.Fatalf("patched: %+v", got)
	}
	// Tenant scoping: another org sees neither the instance nor its topics.
	other.call(t, "GET", "/v1/orgs/"+otherOrg+"/instances/"+inst.ID+"/topics/"+tel.ID, nil, 404, nil)
	other.call(t, "GET", ip+"/topics/"+tel.ID, nil, 404, nil)
	var audit struct{ Data []struct{ Action string } }
	c.call(t, "GET", "/v1/orgs/"+org+"/audit-events", nil, 200, &audit)
	seen := map[string]bool{}
	for _, e := range audit.Data {
		seen[e.Action] = true
	}
	if !seen["topic.create"] || !seen["topic.update"] {
		t.Fatalf("audit events %+v", audit.Data)
	}

	var cred credOut
	c.call(t, "POST", ip+"/credentials", map[string]any{"username": "dev"}, 201, &cred)
	var settings struct {
		StrictTopics bool `json:"strict_topics"`
	}
	c.callPrefer(t, 5, "PUT", ip+"/topic-settings", map[string]any{"strict_topics": true}, &settings)
	if !settings.StrictTopics {
		t.Fatal("strict mode not on")
	}

	var delivered atomic.Int64
	sub, _ := dial5(t, pp.mqtt, "t-sub", cred.MQTTUsername, cred.Password, func(*paho.Publish) { delivered.Add(1) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub, _ := dial5(t, pp.mqtt, "t-pub", cred.MQTTUsername, cred.Password, nil)
	pubCode := func(topic string, qos byte, retain bool) byte {
		t.Helper()
		r, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte("x")})
		if r == nil {
			t.Fatalf("publish %s: %v", topic, err)
		}
		return r.ReasonCode
	}
	if rc := pubCode("elsewhere/a", 1, false); rc != 0x87 {
		t.Fatalf("strict mode: publish outside every topic got 0x%02x, want 0x87", rc)
	}
	if rc := pubCode("fleet/d1/telemetry", 1, false); rc != 0 {
		t.Fatalf("strict mode: publish inside a topic got 0x%02x", rc)
	}
	if rc := pubCode("fleet/d1/cmd", 1, false); rc != 0x87 {
		t.Fatalf("max_qos 0 topic: QoS 1 publish got 0x%02x, want 0x87", rc)
	}
	if !within(5*time.Second, func() bool { return delivered.Load() == 1 }) || func() bool { time.Sleep(300 * time.Millisecond); return delivered.Load() != 1 }() {
		t.Fatalf("delivered %d messages, want only the one inside a topic", delivered.Load())
	}

	// 3.1.1: acknowledged and not delivered.
	c3, err := connect3(pp.mqtt, "t-v3", cred.MQTTUsername, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Disconnect(100)
	for _, topic := range []string{"elsewhere/b", "fleet/d2/telemetry"} {
		tok := c3.Publish(topic, 1, false, "y")
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("v3 publish %s not acknowledged: %v", topic, tok.Error())
		}
	}
	if !within(5*time.Second, func() bool { return delivered.Load() == 2 }) || func() bool { time.Sleep(300 * time.Millisecond); return delivered.Load() != 2 }() {
		t.Fatalf("after v3: delivered %d messages, want 2", delivered.Load())
	}
	var _ mqtt3.Client = c3

	// Strict mode off: anything the ACL allows goes again; deleting a topic works.
	c.callPrefer(t, 5, "PUT", ip+"/topic-settings", map[string]any{"strict_topics": false}, nil)
	if rc := pubCode("elsewhere/c", 1, false); rc != 0 {
		t.Fatalf("strict mode off: got 0x%02x", rc)
	}
	c.call(t, "DELETE", ip+"/topics/"+cmd.ID, nil, 204, nil)
	c.call(t, "GET", ip+"/topics/"+cmd.ID, nil, 404, nil)

	// Plan limit on the number of topics (the operator lowers it to 2).
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `UPDATE plans SET limits = jsonb_set(limits, '{unverified,max_topics_per_instance}', '2') WHERE id = 'free'`); err != nil {
		t.Fatal(err)
	}
	c.call(t, "POST", ip+"/topics", map[string]any{"name": "second", "filter": "b/#"}, 201, nil)
	var prob struct{ Type, Detail string }
	c.call(t, "POST", ip+"/topics", map[string]any{"name": "third", "filter": "c/#"}, 409, &prob)
	if !strings.HasSuffix(prob.Type, "/limit-reached") || !strings.Contains(prob.Detail, "topics per instance") {
		t.Fatalf("over the plan's topic limit: %+v", prob)
	}
}
