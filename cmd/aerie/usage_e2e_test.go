package main_test

import (
	"context"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// TestUsageCountsAreExact: what devices send and receive through an `aerie
// serve` node is what the control plane's metrics API reports, exactly
// (messages and payload bytes, both directions), and nothing is counted
// for another instance.
func TestUsageCountsAreExact(t *testing.T) {
	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t)), append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	c, org := signup(t, base, "usage@example.com")
	var inst, quiet instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "metered"}, 201, &inst)
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "quiet"}, 201, &quiet)
	waitRunning(t, c, org, inst.ID)
	var cred credOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "meter"}, 201, &cred)
	time.Sleep(300 * time.Millisecond)

	got := make(chan *paho.Publish, 100)
	sub, code := connect5(t, pp.mqtt, "usage-sub", cred.MQTTUsername, cred.Password, func(p *paho.Publish) { got <- p })
	if code != 0 {
		t.Fatalf("subscriber refused 0x%02x", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "u/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub, code := connect5(t, pp.mqtt, "usage-pub", cred.MQTTUsername, cred.Password, nil)
	if code != 0 {
		t.Fatalf("publisher refused 0x%02x", code)
	}
	const n = 37
	var bytes int64
	for i := range n {
		payload := strings.Repeat("x", i*13+1)
		bytes += int64(len(payload))
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: "u/m", QoS: byte(i % 2), Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(70 * time.Millisecond) // within the Free plan's 20 publishes/s per client
	}
	for i := range n {
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatalf("received %d of %d", i, n)
		}
	}

	type point struct {
		MessagesIn  int64 `json:"messages_in"`
		MessagesOut int64 `json:"messages_out"`
		BytesIn     int64 `json:"bytes_in"`
		BytesOut    int64 `json:"bytes_out"`
		Connects    int64
	}
	sum := func(instID string) point {
		var m struct{ Points []point }
		now := time.Now().UTC()
		q := "?step=10s&from=" + now.Add(-5*time.Minute).Format(time.RFC3339) + "&to=" + now.Add(time.Minute).Format(time.RFC3339)
		c.call(t, "GET", "/v1/orgs/"+org+"/instances/"+instID+"/metrics"+q, nil, 200, &m)
		var s point
		for _, p := range m.Points {
			s.MessagesIn += p.MessagesIn
			s.MessagesOut += p.MessagesOut
			s.BytesIn += p.BytesIn
			s.BytesOut += p.BytesOut
			s.Connects += p.Connects
		}
		return s
	}
	want := point{MessagesIn: n, MessagesOut: n, BytesIn: bytes, BytesOut: bytes, Connects: 2}
	deadline := time.Now().Add(30 * time.Second) // the node reports every 10 s
	var s point
	for {
		if s = sum(inst.ID); s == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if s != want {
		t.Fatalf("metrics API says %+v, devices did %+v", s, want)
	}
	time.Sleep(11 * time.Second) // one more report: nothing is counted twice
	if s = sum(inst.ID); s != want {
		t.Fatalf("after another report: %+v, want %+v", s, want)
	}
	if q := sum(quiet.ID); q != (point{}) {
		t.Fatalf("an idle instance was charged: %+v", q)
	}
}
