package main_test

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// signTokenAt signs a device token of the instance expiring at exp, with
// the instance's own key (as the token API would, but with an exp closer
// than its 60 s minimum ttl).
func signTokenAt(t *testing.T, dsn, dataDir, instanceID, jti string, exp time.Time) string {
	return signDeviceToken(t, dsn, dataDir, instanceID, jwt.MapClaims{"jti": jti, "iat": time.Now().Unix(), "exp": exp.Unix(),
		"res": []map[string]any{{"filter": "#", "actions": []string{"publish", "subscribe"}}}})
}

// dial5 connects an MQTT 5 client; disconnected gets the server's
// DISCONNECT reason code and when it came.
func dial5(t *testing.T, addr, clientID, user, pass string, onMsg func(*paho.Publish)) (c *paho.Client, disconnected chan [2]int64) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	disconnected = make(chan [2]int64, 1)
	cfg := paho.ClientConfig{Conn: conn, OnServerDisconnect: func(d *paho.Disconnect) {
		disconnected <- [2]int64{int64(d.ReasonCode), time.Now().UnixNano()}
	}}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) { onMsg(p.Packet); return true, nil }}
	}
	c = paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pass)}); err != nil {
		conn.Close()
		t.Fatalf("connect %s: %v", clientID, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, disconnected
}

// TestLiveAuthorizationEndToEnd (issue 13 items 3 and 4) against `aerie
// serve`, through the public API: a deny rule added while a device is
// subscribed stops its deliveries of the denied topic within 1 s of the
// API request (the other topic keeps flowing), and a credential's
// expires_at and a device token's exp close their live connections within
// 1 s of the instant with DISCONNECT 0xA0.
func TestLiveAuthorizationEndToEnd(t *testing.T) {
	dsn := pgtest.EmptyDSN(t)
	pp := freePorts(t)
	dataDir := newDataDir(t)
	p := start(t, cleanEnv("DATABASE_URL="+dsn), append([]string{"serve", "--data-dir", dataDir}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	c, org := signup(t, base, "authz@example.com")
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "plant"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	credPath := "/v1/orgs/" + org + "/instances/" + inst.ID + "/credentials"
	var subCred, pubCred credOut
	c.call(t, "POST", credPath, map[string]any{"username": "sub"}, 201, &subCred)
	c.call(t, "POST", credPath, map[string]any{"username": "pub"}, 201, &pubCred)
	time.Sleep(300 * time.Millisecond) // the node applies the pushes

	type msg struct {
		topic     string
		published int64 // unix nanoseconds
	}
	var mu sync.Mutex
	var got []msg
	sub, _ := dial5(t, pp.mqtt, "e2e-sub", subCred.MQTTUsername, subCred.Password, func(p *paho.Publish) {
		n, _ := strconv.ParseInt(string(p.Payload), 10, 64)
		mu.Lock()
		got = append(got, msg{p.Topic, n})
		mu.Unlock()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ok/#", QoS: 1}, {Topic: "secret/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub, _ := dial5(t, pp.mqtt, "e2e-pub", pubCred.MQTTUsername, pubCred.Password, nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a QoS 1 message on each topic every 150 ms (within the free plan's 20/s per client)
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			for _, topic := range []string{"secret/x", "ok/x"} {
				_, _ = pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(strconv.FormatInt(time.Now().UnixNano(), 10))})
			}
		}
	}()
	count := func(topic string, after int64) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, m := range got {
			if m.topic == topic && m.published > after {
				n++
			}
		}
		return n
	}
	if !within(5*time.Second, func() bool { return count("secret/x", 0) > 2 && count("ok/x", 0) > 2 }) {
		close(stop)
		t.Fatalf("before the rule: %d on secret/x, %d on ok/x", count("secret/x", 0), count("ok/x", 0))
	}

	requested := time.Now()
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/acl-rules", map[string]any{"effect": "deny", "action": "subscribe", "filter": "secret/#"}, 201, nil)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	<-done
	time.Sleep(300 * time.Millisecond)
	bound := requested.Add(time.Second).UnixNano()
	if n := count("secret/x", bound); n > 0 {
		t.Errorf("%d messages on secret/x published more than 1 s after the deny rule was requested were delivered", n)
	}
	if n := count("ok/x", bound); n == 0 {
		t.Error("ok/x stopped flowing after the deny rule")
	}
	mu.Lock()
	var last int64
	for _, m := range got {
		if m.topic == "secret/x" && m.published > last {
			last = m.published
		}
	}
	mu.Unlock()
	t.Logf("last secret/x delivery was published %s after the deny rule was requested", time.Duration(last-requested.UnixNano()).Round(time.Millisecond))

	// Expiry: a credential and a device token that expire at the same
	// instant, 3-4 s ahead.
	at := time.Unix(time.Now().Unix()+4, 0)
	var shortCred credOut
	c.call(t, "POST", credPath, map[string]any{"username": "short", "expires_at": at.UTC().Format(time.RFC3339)}, 201, &shortCred)
	token := signTokenAt(t, dsn, dataDir, inst.ID, "t-short", at)
	time.Sleep(300 * time.Millisecond)
	_, credGone := dial5(t, pp.mqtt, "e2e-short", shortCred.MQTTUsername, shortCred.Password, nil)
	_, tokGone := dial5(t, pp.mqtt, "e2e-token", "token@"+inst.ID, token, nil)
	for name, ch := range map[string]chan [2]int64{"credential": credGone, "token": tokGone} {
		select {
		case d := <-ch:
			when := time.Unix(0, d[1])
			if d[0] != 0xA0 {
				t.Errorf("%s: DISCONNECT 0x%02x, want 0xa0", name, d[0])
			}
			if when.Before(at) || when.Sub(at) > time.Second {
				t.Errorf("%s: closed at %s; expiry %s", name, when.Format(time.StampMilli), at.Format(time.StampMilli))
			} else {
				t.Logf("%s: closed %s after its expiry", name, when.Sub(at).Round(time.Millisecond))
			}
		case <-time.After(time.Until(at.Add(time.Second))):
			t.Errorf("%s: still connected 1 s after its expiry", name)
		}
	}
}

// within polls cond every 10 ms for up to d.
func within(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
