package main_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// httpResult is a raw API answer.
type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func (r httpResult) problemType() string {
	var p struct{ Type string }
	_ = json.Unmarshal(r.body, &p)
	return strings.TrimPrefix(p.Type, "https://aerie.dev/problems/")
}

func rawCall(t testing.TB, base, token, method, path string, body any) httpResult {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return httpResult{status: resp.StatusCode, header: resp.Header, body: raw}
}

// TestHTTPPublish: a tenant's server publishes over the REST API with a
// write-scope API key; the message reaches the instance's MQTT subscribers
// (live, retained, and a persistent session that was offline), device ACLs
// do not apply, the instance's quotas do (413, 429), the publishes are
// counted in the instance's usage, and nothing reaches another instance.
func TestHTTPPublish(t *testing.T) {
	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t)), append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	c, org := signup(t, base, "publisher@example.com")
	var inst, other instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "factory"}, 201, &inst)
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "other"}, 201, &other)
	waitRunning(t, c, org, inst.ID)
	waitRunning(t, c, org, other.ID)
	var cred, otherCred credOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "line-1"}, 201, &cred)
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+other.ID+"/credentials", map[string]any{"username": "spy"}, 201, &otherCred)
	// Devices may not publish anything: the HTTP publish is not a device.
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/acl-rules", map[string]any{"effect": "deny", "action": "publish", "filter": "#"}, 201, nil)
	var writeKey, readKey struct{ Secret string }
	c.call(t, "POST", "/v1/orgs/"+org+"/api-keys", map[string]any{"name": "backend", "scopes": []string{"write"}}, 201, &writeKey)
	c.call(t, "POST", "/v1/orgs/"+org+"/api-keys", map[string]any{"name": "dashboard", "scopes": []string{"read"}}, 201, &readKey)
	time.Sleep(300 * time.Millisecond) // credentials and rules reach the node

	got := make(chan *paho.Publish, 100)
	sub, code := connect5(t, pp.mqtt, "cmd-sub", cred.MQTTUsername, cred.Password, func(p *paho.Publish) { got <- p })
	if code != 0 {
		t.Fatalf("subscriber refused 0x%02x", code)
	}
	spied := make(chan *paho.Publish, 100)
	spy, code := connect5(t, pp.mqtt, "cmd-sub", otherCred.MQTTUsername, otherCred.Password, func(p *paho.Publish) { spied <- p })
	if code != 0 {
		t.Fatalf("other instance's subscriber refused 0x%02x", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, s := range []*paho.Client{sub, spy} {
		if _, err := s.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	pubPath := "/v1/orgs/" + org + "/instances/" + inst.ID + "/publish"
	published := 0 // messages the node accepted
	var publishedBytes int
	publish := func(t *testing.T, body map[string]any, want int) httpResult {
		t.Helper()
		r := rawCall(t, base, writeKey.Secret, "POST", pubPath, body)
		if r.status != want {
			t.Fatalf("publish %v: status %d, want %d: %s", body, r.status, want, r.body)
		}
		if want == 200 {
			published++
			var out struct {
				Bytes int
			}
			_ = json.Unmarshal(r.body, &out)
			publishedBytes += out.Bytes
		} else if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("error answered as %q: %s", ct, r.body)
		}
		return r
	}
	receive := func(t *testing.T, ch chan *paho.Publish) *paho.Publish {
		t.Helper()
		select {
		case m := <-ch:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no message within 10 s")
			return nil
		}
	}

	t.Run("a text publish reaches the instance's subscriber as published, and no other instance", func(t *testing.T) {
		r := publish(t, map[string]any{"topic": "line/1/cmd", "payload": "start", "qos": 1}, 200)
		var out struct {
			ID, Topic, InstanceID string
			QoS, Bytes            int
			PublishedAt           time.Time `json:"published_at"`
		}
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatal(err)
		}
		if out.ID == "" || out.Topic != "line/1/cmd" || out.QoS != 1 || out.Bytes != 5 || out.PublishedAt.IsZero() {
			t.Fatalf("answer %s", r.body)
		}
		m := receive(t, got)
		if m.Topic != "line/1/cmd" || string(m.Payload) != "start" || m.QoS != 1 {
			t.Fatalf("subscriber got %q %q qos %d", m.Topic, m.Payload, m.QoS)
		}
	})

	t.Run("a base64 payload arrives byte for byte", func(t *testing.T) {
		raw := []byte{0, 1, 2, 0xfe, 0xff, '\n'}
		publish(t, map[string]any{"topic": "line/1/bin", "payload": base64.StdEncoding.EncodeToString(raw), "payload_encoding": "base64"}, 200)
		m := receive(t, got)
		if m.Topic != "line/1/bin" || !bytes.Equal(m.Payload, raw) {
			t.Fatalf("subscriber got %q %x", m.Topic, m.Payload)
		}
	})

	t.Run("a retained publish is kept for later subscribers", func(t *testing.T) {
		publish(t, map[string]any{"topic": "line/1/state", "payload": "running", "retain": true, "qos": 1}, 200)
		receive(t, got)
		later := make(chan *paho.Publish, 10)
		c2, code := connect5(t, pp.mqtt, "late-sub", cred.MQTTUsername, cred.Password, func(p *paho.Publish) { later <- p })
		if code != 0 {
			t.Fatalf("refused 0x%02x", code)
		}
		if _, err := c2.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "line/1/state", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		m := receive(t, later)
		if string(m.Payload) != "running" || !m.Retain {
			t.Fatalf("late subscriber got %q retain=%v", m.Payload, m.Retain)
		}
	})

	t.Run("a persistent session that was offline gets the QoS 1 publish on reconnect", func(t *testing.T) {
		p5 := func(onMsg func(*paho.Publish), clean bool) *paho.Client {
			conn, err := net.DialTimeout("tcp", pp.mqtt, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			cfg := paho.ClientConfig{Conn: conn}
			if onMsg != nil {
				cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) { onMsg(p.Packet); return true, nil }}
			}
			cl := paho.NewClient(cfg)
			expiry := uint32(3600)
			ca, err := cl.Connect(ctx, &paho.Connect{ClientID: "plc-7", CleanStart: clean, KeepAlive: 30, UsernameFlag: true, Username: cred.MQTTUsername,
				PasswordFlag: true, Password: []byte(cred.Password), Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
			if err != nil || ca.ReasonCode != 0 {
				t.Fatalf("connect: %v", err)
			}
			return cl
		}
		first := p5(nil, true)
		if _, err := first.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "plc/7/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		_ = first.Disconnect(&paho.Disconnect{})
		time.Sleep(200 * time.Millisecond)
		publish(t, map[string]any{"topic": "plc/7/recipe", "payload": "v42", "qos": 1}, 200)
		receive(t, got) // the live "#" subscriber
		back := make(chan *paho.Publish, 10)
		second := p5(func(p *paho.Publish) { back <- p }, false)
		defer func() { _ = second.Disconnect(&paho.Disconnect{}) }()
		m := receive(t, back)
		if m.Topic != "plc/7/recipe" || string(m.Payload) != "v42" {
			t.Fatalf("resumed session got %q %q", m.Topic, m.Payload)
		}
	})

	t.Run("bad input is refused with the field named and nothing is published", func(t *testing.T) {
		for _, tc := range []struct {
			body  any
			field string
		}{
			{map[string]any{"topic": "a/+/b", "payload": "x"}, "topic"},
			{map[string]any{"topic": "$SYS/broker", "payload": "x"}, "topic"},
			{map[string]any{"topic": "", "payload": "x"}, "topic"},
			{map[string]any{"topic": "a", "payload": "x", "qos": 3}, "qos"},
			{map[string]any{"topic": "a", "payload": "not base64!", "payload_encoding": "base64"}, "payload"},
			{map[string]any{"topic": "a", "payload": "x", "payload_encoding": "hex"}, "payload_encoding"},
			{map[string]any{"topic": "a"}, "payload"},
			{map[string]any{"topic": "a", "payload": "x", "qos": "1"}, "qos"},
			{map[string]any{"topic": "a", "payload": "x", "urgent": true}, "urgent"},
			{map[string]any{"topic": "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q", "payload": "x"}, "topic"}, // over the plan's 8 levels
		} {
			r := rawCall(t, base, writeKey.Secret, "POST", pubPath, tc.body)
			var pr struct {
				Errors []struct{ Field string }
			}
			_ = json.Unmarshal(r.body, &pr)
			if r.status != 400 || len(pr.Errors) == 0 || pr.Errors[0].Field != tc.field {
				t.Fatalf("%v: status %d %s, want 400 naming %s", tc.body, r.status, r.body, tc.field)
			}
		}
		if r := rawCall(t, base, writeKey.Secret, "POST", pubPath, []byte(`{"topic": "a", "payload": `)); r.status != 400 {
			t.Fatalf("malformed JSON: %d %s", r.status, r.body)
		}
	})

	t.Run("a read key is refused, another org's instance does not exist, a suspended instance refuses", func(t *testing.T) {
		if r := rawCall(t, base, readKey.Secret, "POST", pubPath, map[string]any{"topic": "a", "payload": "x"}); r.status != 403 {
			t.Fatalf("read key: %d %s", r.status, r.body)
		}
		c2, org2 := signup(t, base, "intruder@example.com")
		var key2 struct{ Secret string }
		c2.call(t, "POST", "/v1/orgs/"+org2+"/api-keys", map[string]any{"name": "k", "scopes": []string{"write"}}, 201, &key2)
		for _, path := range []string{"/v1/orgs/" + org2 + "/instances/" + inst.ID + "/publish", pubPath} {
			r := rawCall(t, base, key2.Secret, "POST", path, map[string]any{"topic": "line/1/cmd", "payload": "stop"})
			if r.status != 404 {
				t.Fatalf("%s with another org's key: %d %s, want 404", path, r.status, r.body)
			}
		}
		c.call(t, "PATCH", "/v1/orgs/"+org+"/instances/"+other.ID, map[string]any{"status": "suspended"}, 200, nil)
		r := rawCall(t, base, writeKey.Secret, "POST", "/v1/orgs/"+org+"/instances/"+other.ID+"/publish", map[string]any{"topic": "a", "payload": "x"})
		if r.status != 409 || r.problemType() != "instance-unavailable" {
			t.Fatalf("suspended instance: %d %s", r.status, r.body)
		}
		select {
		case m := <-got:
			t.Fatalf("subscriber got %q %q from a refused publish", m.Topic, m.Payload)
		default:
		}
	})

	t.Run("the instance's quotas apply: max payload 413, publish rate 429 with Retry-After", func(t *testing.T) {
		c.call(t, "PUT", "/v1/orgs/"+org+"/instances/"+inst.ID+"/quotas", map[string]any{"max_payload_bytes": 64, "max_publish_per_second": 1}, 200, nil)
		r := publish(t, map[string]any{"topic": "big", "payload": strings.Repeat("x", 65)}, 413)
		if r.problemType() != "payload-too-large" {
			t.Fatalf("problem %s", r.body)
		}
		// The rate quota is the node's: it applies once the quotas arrive.
		// A publish waits up to 500 ms for its turn (back-pressure, as for
		// devices); at 1 publish/s, back to back, one soon has to wait
		// longer and is refused.
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := rawCall(t, base, writeKey.Secret, "POST", pubPath, map[string]any{"topic": "burst", "payload": "x"})
			if r.status == 200 {
				published++
				publishedBytes++
				receive(t, got)
			} else if r.status == 429 {
				if r.header.Get("Retry-After") == "" || r.problemType() != "quota-rate-limited" {
					t.Fatalf("429 without Retry-After or with the wrong type: %v %s", r.header, r.body)
				}
				break
			} else {
				t.Fatalf("burst publish: %d %s", r.status, r.body)
			}
			if time.Now().After(deadline) {
				t.Fatal("no 429 within 10 s at 1 publish/s")
			}
		}
	})

	t.Run("HTTP publishes are counted in the instance's usage, exactly", func(t *testing.T) {
		type point struct {
			MessagesIn int64 `json:"messages_in"`
			BytesIn    int64 `json:"bytes_in"`
		}
		sum := func(id string) point {
			var m struct{ Points []point }
			now := time.Now().UTC()
			q := "?step=10s&from=" + now.Add(-5*time.Minute).Format(time.RFC3339) + "&to=" + now.Add(time.Minute).Format(time.RFC3339)
			c.call(t, "GET", "/v1/orgs/"+org+"/instances/"+id+"/metrics"+q, nil, 200, &m)
			var s point
			for _, p := range m.Points {
				s.MessagesIn += p.MessagesIn
				s.BytesIn += p.BytesIn
			}
			return s
		}
		want := point{MessagesIn: int64(published), BytesIn: int64(publishedBytes)}
		deadline := time.Now().Add(30 * time.Second) // the node reports every 10 s
		var s point
		for {
			if s = sum(inst.ID); s == want || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		if s != want {
			t.Fatalf("usage says %+v, the API published %+v", s, want)
		}
		if o := sum(other.ID); o != (point{}) {
			t.Fatalf("the other instance was charged %+v", o)
		}
		select {
		case m := <-spied:
			t.Fatalf("the other instance's subscriber got %q %q", m.Topic, m.Payload)
		default:
		}
	})
}
