package main_test

import (
	"context"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// TestFreePlanCapThrottlesUntilUpgrade: on the Free plan, an instance that
// uses up the included messages is throttled within one reporting interval
// (its device, without reconnecting, is slowed down to one publish a
// second: back-pressure, every publish still acknowledged), the owner is
// mailed, and an upgrade lifts it.
func TestFreePlanCapThrottlesUntilUpgrade(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.EmptyDSN(t)
	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+dsn), append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	// The operator makes Free's allowance small enough to use up here.
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `UPDATE plans SET included_message_units = 20 WHERE id = 'free'`); err != nil {
		t.Fatal(err)
	}
	base := "http://" + pp.http
	c, org := signup(t, base, "capped@example.com")
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "capped"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	var cred credOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "d"}, 201, &cred)
	time.Sleep(300 * time.Millisecond)
	dev, code := connect5(t, pp.mqtt, "capped-dev", cred.MQTTUsername, cred.Password, nil)
	if code != 0 {
		t.Fatalf("refused 0x%02x", code)
	}
	pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	// burst publishes three QoS 1 messages back to back and says how long
	// they took: all are acknowledged with success, throttled or not.
	burst := func() time.Duration {
		start := time.Now()
		for range 3 {
			pr, err := dev.Publish(pctx, &paho.Publish{Topic: "t", QoS: 1, Payload: []byte("x")})
			if err != nil || pr.ReasonCode != 0 {
				t.Fatalf("publish: %+v %v", pr, err)
			}
		}
		return time.Since(start)
	}
	// At one publish a second (a bucket of one), three take two seconds.
	const slowed = 1500 * time.Millisecond
	limited := func() string {
		var in struct{ Limited string }
		c.call(t, "GET", "/v1/orgs/"+org+"/instances/"+inst.ID, nil, 200, &in)
		return in.Limited
	}
	for range 12 { // 36 messages: past the 20 included
		if d := burst(); d >= slowed {
			t.Fatalf("slowed down (%s for 3) before the allowance was used", d)
		}
		time.Sleep(200 * time.Millisecond)
	}
	used := time.Now()
	// One 10 s report + the 2 s check (measured ~9 s); slack for a loaded machine.
	deadline := used.Add(25 * time.Second)
	for burst() < slowed {
		if time.Now().After(deadline) {
			t.Fatalf("not throttled %s after the allowance was used (limited %q)", time.Since(used).Round(time.Second), limited())
		}
		time.Sleep(time.Second)
	}
	t.Logf("throttled %s after the allowance was used", time.Since(used).Round(100*time.Millisecond))
	if l := limited(); l != "throttle" {
		t.Fatalf("instance limited %q, want throttle", l)
	}
	if !strings.Contains(p.stderr.String(), "Your Aerie instances are throttled") {
		t.Fatal("the owner was not mailed")
	}

	c.call(t, "PUT", "/v1/orgs/"+org+"/subscription", map[string]any{"plan": "developer"}, 200, nil)
	deadline = time.Now().Add(10 * time.Second)
	for {
		time.Sleep(1100 * time.Millisecond) // let the throttled bucket refill
		if burst() < slowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still throttled after the upgrade (limited %q)", limited())
		}
	}
	if l := limited(); l != "" {
		t.Fatalf("instance limited %q after the upgrade", l)
	}
}
