package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
)

// bundle is a gateway on loopback fed a real configsync.State.
type bundle struct {
	gw    *Gateway
	state *configsync.State
	priv  ed25519.PrivateKey
	rev   int64
}

func sum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func newBundle(t *testing.T) *bundle { t.Helper(); return newBundleOn(t, nil) }

// newStoreBundle is newBundle on a node with its message store (as every
// node runs).
func newStoreBundle(t *testing.T) *bundle {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // after the gateway's Close (cleanups run last first)
	return newBundleOn(t, s)
}

func newBundleOn(t *testing.T, s *store.Store) *bundle {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	allowAll := []config.ACLRule{{ID: "r-all", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "#"}}
	st := configsync.NewState()
	snap := config.Snapshot{Revision: 1, NodeID: "n-1", Instances: []config.Instance{
		{ID: "i-aaaa", OrgID: "o-a", Status: config.StatusRunning, ACL: append(allowAll,
			config.ACLRule{ID: "r-deny", Effect: config.EffectDeny, Action: config.ActionPublish, Filter: "forbidden/#"}),
			Credentials: []config.Credential{
				{ID: "c-1", Username: "dev", SecretSHA256: sum("pw-dev"), Enabled: true},
				{ID: "c-2", Username: "off", SecretSHA256: sum("pw-off"), Enabled: false},
				{ID: "c-3", Username: "old", SecretSHA256: sum("pw-old"), Enabled: true, ExpiresAt: &past},
				{ID: "c-4", Username: "pinned", SecretSHA256: sum("pw-pin"), Enabled: true, ClientIDPattern: "sensor-*"},
			},
			TokenKeys: []config.TokenKey{{KID: "k1", Algorithm: "EdDSA", PublicKey: pub}}},
		{ID: "i-bbbb", OrgID: "o-b", Status: config.StatusRunning, ACL: allowAll,
			Credentials: []config.Credential{{ID: "c-9", Username: "dev", SecretSHA256: sum("pw-b"), Enabled: true}}},
		{ID: "i-anon", OrgID: "o-b", Status: config.StatusRunning, AllowAnonymous: true, ACL: allowAll},
	}}
	if err := st.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &snap}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	gw, err := New(Options{MQTTAddr: "127.0.0.1:0", Config: st, DefaultInstance: "i-anon", Log: log, Store: s})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return &bundle{gw: gw, state: st, priv: priv, rev: 1}
}

func (b *bundle) apply(t *testing.T, ev config.Event) {
	t.Helper()
	b.rev++
	ev.Revision = b.rev
	if err := b.state.Apply(ev); err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) token(t *testing.T, inst, jti string, ttl time.Duration, res ...config.TokenResource) string {
	t.Helper()
	claims := jwt.MapClaims{"iss": "aerie", "aud": inst, "jti": jti, "iat": time.Now().Unix(), "exp": time.Now().Add(ttl).Unix(), "res": res}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(b.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// v3 connects an MQTT 3.1.1 client; it returns the client or the CONNACK error.
func (b *bundle) v3(t *testing.T, clientID, user, pass string, onMsg func(topic string, payload []byte)) (mqtt3.Client, error) {
	t.Helper()
	opts := mqtt3.NewClientOptions().AddBroker("tcp://" + b.gw.MQTTAddr()).SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).SetOrderMatters(true).
		SetProtocolVersion(4) // no silent fallback to MQTT 3.1 after a refusal
	if onMsg != nil {
		opts.SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { onMsg(m.Topic(), m.Payload()) })
	}
	c := mqtt3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

// v5conn is an MQTT 5 client with its received messages and disconnect.
type v5conn struct {
	c            *paho.Client
	mu           sync.Mutex
	got          []*paho.Publish
	disconnected chan *paho.Disconnect
}

func (b *bundle) v5(t *testing.T, clientID, user, pass string) (*v5conn, *paho.Connack, error) {
	t.Helper()
	nc, err := net.Dial("tcp", b.gw.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	v := &v5conn{disconnected: make(chan *paho.Disconnect, 1)}
	v.c = paho.NewClient(paho.ClientConfig{Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			v.mu.Lock()
			v.got = append(v.got, pr.Packet)
			v.mu.Unlock()
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { v.disconnected <- d },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}
	if user != "" {
		cp.UsernameFlag, cp.Username = true, user
	}
	if pass != "" {
		cp.PasswordFlag, cp.Password = true, []byte(pass)
	}
	ca, err := v.c.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		return nil, ca, err
	}
	t.Cleanup(func() { _ = v.c.Disconnect(&paho.Disconnect{}) })
	return v, ca, nil
}

func (v *v5conn) received() []*paho.Publish {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]*paho.Publish(nil), v.got...)
}

func waitFor(t *testing.T, within time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

func TestAuthentication(t *testing.T) {
	b := newBundle(t)
	v3cases := []struct {
		name, clientID, user, pass string
		wantErr                    string // paho.mqtt.golang's text for the CONNACK code; "" = accepted
	}{
		{"right password", "d1", "dev@i-aaaa", "pw-dev", ""},
		{"wrong password", "d1", "dev@i-aaaa", "nope", "bad user name or password"},
		{"unknown user", "d1", "ghost@i-aaaa", "pw-dev", "bad user name or password"},
		{"another instance's password", "d1", "dev@i-aaaa", "pw-b", "bad user name or password"},
		{"unknown instance", "d1", "dev@i-zzzz", "pw-dev", "not Authorized"},
		{"disabled credential", "d1", "off@i-aaaa", "pw-off", "not Authorized"},
		{"expired credential", "d1", "old@i-aaaa", "pw-old", "not Authorized"},
		{"client id outside the credential's pattern", "laptop", "pinned@i-aaaa", "pw-pin", "identifier rejected"},
		{"client id inside the credential's pattern", "sensor-7", "pinned@i-aaaa", "pw-pin", ""},
		{"anonymous where allowed (default instance)", "anon1", "", "", ""},
		{"anonymous where not allowed", "anon1", "@i-aaaa", "", "not Authorized"},
	}
	for _, c := range v3cases {
		t.Run("v3.1.1 "+c.name, func(t *testing.T) {
			cl, err := b.v3(t, c.clientID, c.user, c.pass, nil)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				cl.Disconnect(0)
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want %q", err, c.wantErr)
			}
		})
	}
	v5cases := []struct {
		name, user, pass string
		want             byte
	}{
		{"right password", "dev@i-aaaa", "pw-dev", 0},
		{"wrong password", "dev@i-aaaa", "nope", 0x86},
		{"unknown instance", "dev@i-zzzz", "pw-dev", 0x87},
		{"disabled credential", "off@i-aaaa", "pw-off", 0x87},
		{"expired credential", "old@i-aaaa", "pw-old", 0x87},
		{"valid device token", "token@i-aaaa", b.token(t, "i-aaaa", "j1", time.Hour, config.TokenResource{Filter: "#", Actions: []string{"publish"}}), 0},
		{"expired device token", "token@i-aaaa", b.token(t, "i-aaaa", "j2", -time.Minute), 0x87},
		{"token for another instance", "token@i-bbbb", b.token(t, "i-aaaa", "j3", time.Hour), 0x86},
		{"garbage token", "token@i-aaaa", "not-a-jwt", 0x86},
	}
	for _, c := range v5cases {
		t.Run("v5 "+c.name, func(t *testing.T) {
			_, ca, err := b.v5(t, "d5", c.user, c.pass)
			if c.want == 0 {
				if err != nil {
					t.Fatalf("refused: %v (%+v)", err, ca)
				}
				return
			}
			if err == nil || ca == nil || ca.ReasonCode != c.want {
				t.Fatalf("connack %+v err %v; want reason 0x%02x", ca, err, c.want)
			}
		})
	}
}

func TestIsolation(t *testing.T) {
	b := newBundle(t)
	var mu sync.Mutex
	got := map[string][]string{}
	rec := func(who string) func(string, []byte) {
		return func(topic string, p []byte) {
			mu.Lock()
			got[who] = append(got[who], topic+"="+string(p))
			mu.Unlock()
		}
	}
	// Same client ID and same topics in two instances.
	a, err := b.v3(t, "same-id", "dev@i-aaaa", "pw-dev", rec("a"))
	if err != nil {
		t.Fatal(err)
	}
	bb, err := b.v3(t, "same-id", "dev@i-bbbb", "pw-b", rec("b"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []mqtt3.Client{a, bb} {
		if tok := c.Subscribe("fleet/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	if tok := a.Publish("fleet/1/temp", 1, false, "from-a"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := a.Publish("fleet/2/retained", 1, true, "a-retained"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if !waitFor(t, 3*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got["a"]) == 2 }) {
		t.Fatalf("instance A got %v", got["a"])
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	if len(got["b"]) != 0 {
		t.Errorf("instance B received A's messages: %v", got["b"])
	}
	if got["a"][0] != "fleet/1/temp=from-a" {
		t.Errorf("the device saw %q; the mount must be invisible", got["a"][0])
	}
	mu.Unlock()
	if !a.IsConnected() || !bb.IsConnected() {
		t.Error("the same client ID in two instances took one over")
	}

	t.Run("retained messages stay in their instance", func(t *testing.T) {
		var mu2 sync.Mutex
		var seen []string
		c, err := b.v3(t, "late", "dev@i-bbbb", "pw-b", func(topic string, p []byte) { mu2.Lock(); seen = append(seen, topic); mu2.Unlock() })
		if err != nil {
			t.Fatal(err)
		}
		c.Subscribe("#", 1, nil).WaitTimeout(5 * time.Second)
		time.Sleep(300 * time.Millisecond)
		mu2.Lock()
		defer mu2.Unlock()
		if len(seen) != 0 {
			t.Fatalf("B sees A's retained messages: %v", seen)
		}
	})

	t.Run("escapes are refused with SUBACK failure codes", func(t *testing.T) {
		v, _, err := b.v5(t, "escaper", "dev@i-aaaa", "pw-dev")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		filters := []string{"$SYS/#", "$share/g/$SYS/#", "a/#/b", "$SYS/broker/clients"}
		var subs []paho.SubscribeOptions
		for _, f := range filters {
			subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 1})
		}
		sa, _ := v.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
		if sa == nil || len(sa.Reasons) != len(filters) {
			t.Fatalf("suback %+v", sa)
		}
		for i, r := range sa.Reasons {
			if r < 0x80 {
				t.Errorf("filter %q accepted (0x%02x)", filters[i], r)
			}
		}
		c3, err := b.v3(t, "escaper3", "dev@i-aaaa", "pw-dev", nil)
		if err != nil {
			t.Fatal(err)
		}
		tok := c3.Subscribe("$SYS/#", 1, nil)
		tok.WaitTimeout(5 * time.Second)
		st := tok.(*mqtt3.SubscribeToken)
		if r := st.Result()["$SYS/#"]; r != 0x80 {
			t.Errorf("v3.1.1 SUBACK for $SYS/# = 0x%02x, want 0x80", r)
		}
	})
}

func TestACLAndTokens(t *testing.T) {
	b := newBundle(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("a deny rule refuses publish with PUBACK 0x87", func(t *testing.T) {
		v, _, err := b.v5(t, "p1", "dev@i-aaaa", "pw-dev")
		if err != nil {
			t.Fatal(err)
		}
		pr, _ := v.c.Publish(ctx, &paho.Publish{Topic: "forbidden/x", QoS: 1, Payload: []byte("x")})
		if pr == nil || pr.ReasonCode != 0x87 {
			t.Fatalf("puback %+v", pr)
		}
		pr, err = v.c.Publish(ctx, &paho.Publish{Topic: "allowed/x", QoS: 1, Payload: []byte("x")})
		if err != nil || pr.ReasonCode != 0 {
			t.Fatalf("allowed publish: %+v %v", pr, err)
		}
	})

	t.Run("a token limited to a/# cannot publish to b/x or subscribe to #", func(t *testing.T) {
		tok := b.token(t, "i-aaaa", "j-scope", time.Hour, config.TokenResource{Filter: "a/#", Actions: []string{"publish", "subscribe"}})
		v, _, err := b.v5(t, "tok1", "token@i-aaaa", tok)
		if err != nil {
			t.Fatal(err)
		}
		pr, _ := v.c.Publish(ctx, &paho.Publish{Topic: "b/x", QoS: 1, Payload: []byte("x")})
		if pr == nil || pr.ReasonCode != 0x87 {
			t.Fatalf("publish b/x: %+v", pr)
		}
		sa, _ := v.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}, {Topic: "a/+", QoS: 1}}})
		if sa == nil || len(sa.Reasons) != 2 || sa.Reasons[0] != 0x87 || sa.Reasons[1] != 1 {
			t.Fatalf("suback %+v", sa)
		}
		pr, err = v.c.Publish(ctx, &paho.Publish{Topic: "a/1", QoS: 1, Payload: []byte("ok")})
		if err != nil || pr.ReasonCode != 0 {
			t.Fatalf("publish a/1: %+v %v", pr, err)
		}
		if !waitFor(t, 3*time.Second, func() bool { return len(v.received()) == 1 }) {
			t.Fatalf("own message on a/+ not received: %d", len(v.received()))
		}
	})

	t.Run("client id placeholders cannot be widened", func(t *testing.T) {
		b.apply(t, config.Event{Kind: config.KindACLDelete, InstanceID: "i-bbbb", ID: "r-all"})
		b.apply(t, config.Event{Kind: config.KindACLPut, InstanceID: "i-bbbb", ACLRule: &config.ACLRule{ID: "r-own", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "devices/${clientid}/#"}})
		good, _, err := b.v5(t, "unit-1", "dev@i-bbbb", "pw-b")
		if err != nil {
			t.Fatal(err)
		}
		sa, _ := good.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/unit-1/#", QoS: 1}, {Topic: "devices/unit-2/#", QoS: 1}}})
		if sa == nil || sa.Reasons[0] != 1 || sa.Reasons[1] != 0x87 {
			t.Fatalf("own/other device suback %+v", sa)
		}
		evil, _, err := b.v5(t, "+", "dev@i-bbbb", "pw-b")
		if err != nil {
			t.Fatal(err)
		}
		sa, _ = evil.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/+/#", QoS: 1}}})
		if sa == nil || sa.Reasons[0] != 0x87 {
			t.Fatalf("client id '+' widened the rule: %+v", sa)
		}
	})
}

func TestRevocationClosesConnections(t *testing.T) {
	b := newBundle(t)
	cases := []struct {
		name  string
		user  func() (string, string)
		event func() config.Event
		code  byte
	}{
		{"credential deleted", func() (string, string) { return "dev@i-aaaa", "pw-dev" },
			func() config.Event {
				return config.Event{Kind: config.KindCredentialDel, InstanceID: "i-aaaa", ID: "c-1"}
			}, 0x87},
		{"credential disabled", func() (string, string) { return "dev@i-bbbb", "pw-b" },
			func() config.Event {
				return config.Event{Kind: config.KindCredentialPut, InstanceID: "i-bbbb", Credential: &config.Credential{ID: "c-9", Username: "dev", SecretSHA256: sum("pw-b"), Enabled: false}}
			}, 0x87},
		{"token revoked", func() (string, string) { return "token@i-aaaa", b.token(t, "i-aaaa", "j-rev", time.Hour) },
			func() config.Event {
				return config.Event{Kind: config.KindTokenRevoke, InstanceID: "i-aaaa", RevokedToken: &config.RevokedToken{JTI: "j-rev", ExpiresAt: time.Now().Add(time.Hour)}}
			}, 0x8C},
		{"instance suspended", func() (string, string) { return "", "" },
			func() config.Event {
				return config.Event{Kind: config.KindInstanceStatus, Instance: &config.Instance{ID: "i-anon", Status: config.StatusSuspended, AllowAnonymous: true}}
			}, 0x87},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, p := c.user()
			v, _, err := b.v5(t, fmt.Sprintf("victim-%d", i), u, p)
			if err != nil {
				t.Fatal(err)
			}
			bystander, _, err := b.v5(t, fmt.Sprintf("bystander-%d", i), "pinned@i-aaaa", "pw-pin")
			if err == nil {
				t.Fatal("pinned credential accepted a foreign client id")
			}
			_ = bystander
			start := time.Now()
			b.apply(t, c.event())
			select {
			case d := <-v.disconnected:
				if d.ReasonCode != c.code {
					t.Errorf("DISCONNECT 0x%02x, want 0x%02x", d.ReasonCode, c.code)
				}
				if el := time.Since(start); el > time.Second {
					t.Errorf("closed after %s; want within 1 s", el)
				}
			case <-time.After(time.Second):
				t.Fatal("live connection not closed within 1 s")
			}
		})
	}
	t.Run("v3.1.1 connection is closed", func(t *testing.T) {
		c, err := b.v3(t, "sensor-1", "pinned@i-aaaa", "pw-pin", nil)
		if err != nil {
			t.Fatal(err)
		}
		b.apply(t, config.Event{Kind: config.KindCredentialDel, InstanceID: "i-aaaa", ID: "c-4"})
		if !waitFor(t, time.Second, func() bool { return !c.IsConnectionOpen() }) {
			t.Fatal("v3.1.1 connection still open 1 s after its credential was deleted")
		}
	})
}
