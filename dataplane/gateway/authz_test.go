package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
)

// storeBundle is a node as `aerie serve` runs it (gateway + message store)
// with one instance, i-acl, holding the given rules and credentials, fed a
// real configsync.State that tests change the way the config watch does.
func storeBundle(t *testing.T, acl []config.ACLRule, creds ...config.Credential) *bundle {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st := configsync.NewState()
	snap := config.Snapshot{Revision: 1, NodeID: "n-1", Instances: []config.Instance{{ID: "i-acl", OrgID: "o-a", Status: config.StatusRunning,
		ACL: acl, Credentials: creds, TokenKeys: []config.TokenKey{{KID: "k1", Algorithm: "EdDSA", PublicKey: pub}}}}}
	if err := st.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &snap}); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(Options{MQTTAddr: "127.0.0.1:0", Config: st, Store: s, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close(); s.Close() })
	return &bundle{gw: gw, state: st, priv: priv, rev: 1}
}

// v5session connects an MQTT 5 client: persistent (session expiry 1 h,
// Clean Start 0) when persistent, with the given receive maximum (0: none).
func (b *bundle) v5session(t *testing.T, clientID, user, pass string, persistent bool, receiveMax uint16) (*v5conn, *paho.Connack) {
	t.Helper()
	v, ca, err := b.v5with(t, clientID, user, pass, func(c *paho.Connect) {
		c.Properties = &paho.ConnectProperties{}
		if persistent {
			exp := uint32(3600)
			c.CleanStart, c.Properties.SessionExpiryInterval = false, &exp
		}
		if receiveMax > 0 {
			c.Properties.ReceiveMaximum = &receiveMax
		}
	}, nil)
	if err != nil {
		t.Fatalf("connect %s: %v", clientID, err)
	}
	return v, ca
}

func (v *v5conn) subscribe(t *testing.T, filters ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var opts []paho.SubscribeOptions
	for _, f := range filters {
		opts = append(opts, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	sa, err := v.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	if err != nil && sa == nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
	return sa.Reasons
}

func (v *v5conn) payloads() []string {
	var out []string
	for _, p := range v.received() {
		out = append(out, string(p.Payload))
	}
	return out
}

// v3sub is an MQTT 3.1.1 client recording the payloads it receives.
type v3sub struct {
	c    mqtt3.Client
	mu   sync.Mutex
	got  []string
	lost atomic.Int64 // unix nanoseconds the connection was lost at
}

func (b *bundle) v3session(t *testing.T, clientID, user, pass string, clean bool) *v3sub {
	t.Helper()
	s := &v3sub{}
	opts := mqtt3.NewClientOptions().AddBroker("tcp://" + b.gw.MQTTAddr()).SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
			s.mu.Lock()
			s.got = append(s.got, string(m.Payload()))
			s.mu.Unlock()
		}).
		SetConnectionLostHandler(func(mqtt3.Client, error) { s.lost.Store(time.Now().UnixNano()) })
	s.c = mqtt3.NewClient(opts)
	if tok := s.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", clientID, tok.Error())
	}
	t.Cleanup(func() { s.c.Disconnect(0) })
	return s
}

func (s *v3sub) subscribe(t *testing.T, filters ...string) map[string]byte {
	t.Helper()
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = 1
	}
	tok := s.c.SubscribeMultiple(m, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %v: %v", filters, tok.Error())
	}
	return tok.(*mqtt3.SubscribeToken).Result()
}

func (s *v3sub) payloads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func hasAll(got []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, g := range got {
			if g == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func withPrefix(got []string, prefix string) []string {
	var out []string
	for _, g := range got {
		if strings.HasPrefix(g, prefix) {
			out = append(out, g)
		}
	}
	return out
}

func publish5(t *testing.T, v *v5conn, topic string, qos byte, retain bool, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pr, err := v.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)})
	if err != nil || qos > 0 && pr.ReasonCode != 0 {
		t.Fatalf("publish %s: %+v %v", topic, pr, err)
	}
}

// TestACLChangeReachesLiveSubscriptions (issue 13 item 3): adding a deny
// rule, or deleting the allow rule, stops deliveries of the newly denied
// topic at once to every existing subscription (clean and persistent
// sessions, MQTT 5 and 3.1.1, store-served and mochi's shared fan-out, QoS 0
// and 1), and to a persistent session restored after the change from its
// stored backlog; the other topic keeps flowing, and the denied QoS 1
// messages are skipped (the receive-maximum-2 sessions still get what
// follows them) rather than left in flight.
func TestACLChangeReachesLiveSubscriptions(t *testing.T) {
	allowAll := []config.ACLRule{{ID: "r-all", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "#"}}
	perTopic := []config.ACLRule{
		{ID: "r-pub", Effect: config.EffectAllow, Action: config.ActionPublish, Filter: "#"},
		{ID: "r-ok", Effect: config.EffectAllow, Action: config.ActionSubscribe, Filter: "ok/#"},
		{ID: "r-secret", Effect: config.EffectAllow, Action: config.ActionSubscribe, Filter: "secret/#"},
	}
	deny := config.Event{Kind: config.KindACLPut, InstanceID: "i-acl",
		ACLRule: &config.ACLRule{ID: "r-deny", Effect: config.EffectDeny, Action: config.ActionSubscribe, Filter: "secret/#"}}
	changes := []struct {
		name string
		acl  []config.ACLRule
		ev   config.Event
	}{
		{"deny rule added beside allow-all", allowAll, deny},
		{"deny rule added beside per-topic allows", perTopic, deny},
		{"allow rule deleted", perTopic, config.Event{Kind: config.KindACLDelete, InstanceID: "i-acl", ID: "r-secret"}},
	}
	for _, ch := range changes {
		t.Run(ch.name, func(t *testing.T) {
			b := storeBundle(t, ch.acl, config.Credential{ID: "c-1", Username: "dev", SecretSHA256: sum("pw"), Enabled: true})
			const user, pw = "dev@i-acl", "pw"

			clean5, _ := b.v5session(t, "clean5", user, pw, false, 0)
			pers5, _ := b.v5session(t, "pers5", user, pw, true, 2)
			shared5, _ := b.v5session(t, "shared5", user, pw, false, 0)
			off5, _ := b.v5session(t, "off5", user, pw, true, 2)
			clean3 := b.v3session(t, "clean3", user, pw, true)
			pers3 := b.v3session(t, "pers3", user, pw, false)
			for _, v := range []*v5conn{clean5, pers5, off5} {
				if codes := v.subscribe(t, "ok/#", "secret/#"); len(codes) != 2 || codes[0] != 1 || codes[1] != 1 {
					t.Fatalf("suback %v", codes)
				}
			}
			if codes := shared5.subscribe(t, "$share/g/ok/#", "$share/g/secret/#"); len(codes) != 2 || codes[0] != 1 || codes[1] != 1 {
				t.Fatalf("shared suback %v", codes)
			}
			for _, s := range []*v3sub{clean3, pers3} {
				if codes := s.subscribe(t, "ok/#", "secret/#"); codes["ok/#"] != 1 || codes["secret/#"] != 1 {
					t.Fatalf("v3 suback %v", codes)
				}
			}
			_ = off5.c.Disconnect(&paho.Disconnect{})
			pub, _ := b.v5session(t, "pub", user, pw, false, 0)

			// Before the change every subscription receives both topics
			// (so the test can tell a node that ignores the change).
			publish5(t, pub, "secret/a", 0, false, "s-before-q0")
			publish5(t, pub, "secret/a", 1, false, "s-before-q1")
			publish5(t, pub, "ok/a", 1, false, "ok-before-q1")
			publish5(t, pub, "secret/a", 1, false, "s-offline-before") // queued for off5
			online := map[string]func() []string{"clean5": clean5.payloads, "pers5": pers5.payloads, "shared5": shared5.payloads,
				"clean3": clean3.payloads, "pers3": pers3.payloads}
			for name, got := range online {
				if !waitFor(t, 5*time.Second, func() bool { return hasAll(got(), "s-before-q0", "s-before-q1", "ok-before-q1") }) {
					t.Fatalf("%s before the change got %v", name, got())
				}
			}
			aclDrops := dropsOf(b, "i-acl", DropACL)

			b.apply(t, ch.ev)
			changed := time.Now()
			publish5(t, pub, "secret/a", 0, false, "s-after-q0")
			for i := range 10 {
				publish5(t, pub, "secret/b", 1, false, fmt.Sprintf("s-after-q1-%d", i))
			}
			publish5(t, pub, "ok/a", 0, false, "ok-after-q0")
			publish5(t, pub, "ok/a", 1, false, "ok-after-q1")
			for name, got := range online {
				if !waitFor(t, 5*time.Second, func() bool { return hasAll(got(), "ok-after-q0", "ok-after-q1") }) {
					t.Fatalf("%s stopped receiving the allowed topic: %v", name, got())
				}
			}
			if el := time.Since(changed); el > time.Second {
				t.Logf("allowed messages after the change took %s", el)
			}
			time.Sleep(300 * time.Millisecond) // anything late would arrive by now
			for name, got := range online {
				if denied := withPrefix(got(), "s-after"); len(denied) > 0 {
					t.Errorf("%s received %v after the rule change", name, denied)
				}
			}

			// The persistent session restored after the change gets its
			// backlog of the allowed topic and nothing of the denied one,
			// whether published before or after the change.
			off5, ca := b.v5session(t, "off5", user, pw, true, 2)
			if !ca.SessionPresent {
				t.Fatal("off5: session not present on reconnect")
			}
			if !waitFor(t, 5*time.Second, func() bool { return hasAll(off5.payloads(), "ok-before-q1", "ok-after-q1") }) {
				t.Fatalf("restored session got %v", off5.payloads())
			}
			time.Sleep(300 * time.Millisecond)
			if denied := append(withPrefix(off5.payloads(), "s-after"), withPrefix(off5.payloads(), "s-offline")...); len(denied) > 0 {
				t.Errorf("restored session received %v denied while it was offline", denied)
			}

			// Nothing is left in flight: every delivery was acknowledged or
			// skipped, and the refusals are counted.
			if !waitFor(t, 3*time.Second, func() bool { return atomic.LoadInt64(&b.gw.srv.Info.Inflight) == 0 }) {
				t.Errorf("%d deliveries still in flight", atomic.LoadInt64(&b.gw.srv.Info.Inflight))
			}
			if d := dropsOf(b, "i-acl", DropACL) - aclDrops; d < 11 {
				t.Errorf("%d deliveries counted as dropped (acl); want at least 11", d)
			}
		})
	}
}

// TestDenyRuleLeavesOverlappingSubscriptions (issue 21 item 6): a deny
// rule refuses the filters it covers (SUBACK 0x87 / 3.1.1 0x80) and holds
// back its topics at delivery, but grants the wildcard filters that merely
// overlap it ("#", "+/+", "test/+"), as Mosquitto's dynamic security and
// EMQX do.
func TestDenyRuleLeavesOverlappingSubscriptions(t *testing.T) {
	acl := []config.ACLRule{
		{ID: "r-all", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "#"},
		{ID: "r-nosub", Effect: config.EffectDeny, Action: config.ActionSubscribe, Filter: "test/nosubscribe"},
		{ID: "r-secret", Effect: config.EffectDeny, Action: config.ActionSubscribe, Filter: "secret/#"},
	}
	b := storeBundle(t, acl, config.Credential{ID: "c-1", Username: "dev", SecretSHA256: sum("pw"), Enabled: true})
	const user, pw = "dev@i-acl", "pw"
	pub, _ := b.v5session(t, "pub", user, pw, false, 0)
	publish5(t, pub, "test/nosubscribe", 1, true, "retained-denied")
	publish5(t, pub, "test/ok", 1, true, "retained-ok")

	filters := []string{"#", "+/+", "test/+", "test/nosubscribe", "secret/a/+", "test/nosubscribe/#"}
	v5, _ := b.v5session(t, "sub5", user, pw, false, 0)
	codes := v5.subscribe(t, filters...)
	want5 := []byte{1, 1, 1, 0x87, 0x87, 1}
	if string(codes) != string(want5) {
		t.Errorf("v5 SUBACK %x, want %x", codes, want5)
	}
	v3 := b.v3session(t, "sub3", user, pw, true)
	res := v3.subscribe(t, filters...)
	for i, f := range filters {
		want := want5[i]
		if want == 0x87 {
			want = 0x80
		}
		if res[f] != want {
			t.Errorf("v3.1.1 SUBACK for %q: 0x%02x, want 0x%02x", f, res[f], want)
		}
	}

	publish5(t, pub, "test/nosubscribe", 0, false, "denied-q0")
	publish5(t, pub, "test/nosubscribe", 1, false, "denied-q1")
	publish5(t, pub, "secret/a/b", 1, false, "denied-secret")
	publish5(t, pub, "test/ok", 0, false, "ok-q0")
	publish5(t, pub, "test/ok", 1, false, "ok-q1")
	for name, got := range map[string]func() []string{"v5": v5.payloads, "v3.1.1": v3.payloads} {
		if !waitFor(t, 5*time.Second, func() bool { return hasAll(got(), "retained-ok", "ok-q0", "ok-q1") }) {
			t.Fatalf("%s got %v", name, got())
		}
		time.Sleep(200 * time.Millisecond)
		if denied := append(withPrefix(got(), "denied"), withPrefix(got(), "retained-denied")...); len(denied) > 0 {
			t.Errorf("%s received denied topics through overlapping filters: %v", name, denied)
		}
	}
	if dropsOf(b, "i-acl", DropACL) == 0 {
		t.Error("held-back deliveries not counted as drops (acl)")
	}
}

// deviceToken signs a device token for i-acl expiring at exp.
func (b *bundle) deviceToken(t *testing.T, jti string, exp time.Time) string {
	t.Helper()
	claims := jwt.MapClaims{"iss": "aerie", "aud": "i-acl", "jti": jti, "iat": time.Now().Unix(), "exp": exp.Unix(),
		"res": []config.TokenResource{{Filter: "#", Actions: []string{"publish", "subscribe"}}}}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(b.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestExpiryClosesLiveConnections (issue 13 item 4): a connection is closed
// within 1 s of its credential's expires_at or its device token's exp
// (MQTT 5: DISCONNECT 0xA0 first), not before; an expiry changed through
// the config for a connected credential applies (moved earlier or into the
// past closes it then, moved later keeps it open).
func TestExpiryClosesLiveConnections(t *testing.T) {
	at := time.Unix(time.Now().Unix()+3, 0) // the instant, 2-3 s ahead
	cred := func(id, user string, exp *time.Time) config.Credential {
		return config.Credential{ID: id, Username: user, SecretSHA256: sum("pw"), Enabled: true, ExpiresAt: exp}
	}
	b := storeBundle(t, []config.ACLRule{{ID: "r-all", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "#"}},
		cred("c-exp5", "exp5", &at), cred("c-exp3", "exp3", &at), cred("c-later", "later", nil),
		cred("c-past", "past", nil), cred("c-ext", "ext", &at), cred("c-keep", "keep", nil))

	type closed struct {
		code byte
		at   time.Time
	}
	watch := func(v *v5conn) chan closed {
		ch := make(chan closed, 1)
		go func() {
			d := <-v.disconnected
			ch <- closed{d.ReasonCode, time.Now()}
		}()
		return ch
	}
	exp5, _ := b.v5session(t, "exp5", "exp5@i-acl", "pw", false, 0)
	tok5, _ := b.v5session(t, "tok5", "token@i-acl", b.deviceToken(t, "j-1", at), false, 0)
	later5, _ := b.v5session(t, "later5", "later@i-acl", "pw", false, 0)
	past5, _ := b.v5session(t, "past5", "past@i-acl", "pw", false, 0)
	ext5, _ := b.v5session(t, "ext5", "ext@i-acl", "pw", false, 0)
	keep5, _ := b.v5session(t, "keep5", "keep@i-acl", "pw", false, 0)
	exp3 := b.v3session(t, "exp3", "exp3@i-acl", "pw", true)
	watches := map[string]chan closed{}
	for name, v := range map[string]*v5conn{"exp5": exp5, "tok5": tok5, "later5": later5, "past5": past5, "ext5": ext5, "keep5": keep5} {
		watches[name] = watch(v)
	}

	// Config changes to connected credentials: later gets the instant,
	// past one already gone, ext is extended by an hour.
	b.apply(t, config.Event{Kind: config.KindCredentialPut, InstanceID: "i-acl", Credential: func() *config.Credential { c := cred("c-later", "later", &at); return &c }()})
	past := time.Now().Add(-time.Minute)
	b.apply(t, config.Event{Kind: config.KindCredentialPut, InstanceID: "i-acl", Credential: func() *config.Credential { c := cred("c-past", "past", &past); return &c }()})
	changed := time.Now()
	extended := at.Add(time.Hour)
	b.apply(t, config.Event{Kind: config.KindCredentialPut, InstanceID: "i-acl", Credential: func() *config.Credential { c := cred("c-ext", "ext", &extended); return &c }()})

	select {
	case c := <-watches["past5"]:
		if c.code != 0xA0 {
			t.Errorf("past5: DISCONNECT 0x%02x, want 0xa0", c.code)
		}
		if el := c.at.Sub(changed); el > time.Second {
			t.Errorf("past5: closed %s after its expiry moved into the past", el)
		}
	case <-time.After(time.Second):
		t.Error("past5: still connected 1 s after its expiry moved into the past")
	}

	for _, name := range []string{"exp5", "tok5", "later5"} {
		select {
		case c := <-watches[name]:
			if c.code != 0xA0 {
				t.Errorf("%s: DISCONNECT 0x%02x, want 0xa0", name, c.code)
			}
			if c.at.Before(at) {
				t.Errorf("%s: closed %s before its expiry", name, at.Sub(c.at))
			}
			if el := c.at.Sub(at); el > time.Second {
				t.Errorf("%s: closed %s after its expiry; want within 1 s", name, el)
			}
		case <-time.After(time.Until(at.Add(time.Second))):
			t.Errorf("%s: still connected 1 s after its expiry", name)
		}
	}
	if !waitFor(t, time.Until(at.Add(time.Second)), func() bool { return exp3.lost.Load() != 0 }) {
		t.Error("exp3 (3.1.1): still connected 1 s after its credential expired")
	} else if lost := time.Unix(0, exp3.lost.Load()); lost.Before(at) || lost.Sub(at) > time.Second {
		t.Errorf("exp3 (3.1.1): closed at %s, expiry %s", lost.Format(time.StampMilli), at.Format(time.StampMilli))
	}

	// The extended credential and the one without an expiry stay.
	time.Sleep(time.Until(at.Add(300 * time.Millisecond)))
	for _, name := range []string{"ext5", "keep5"} {
		select {
		case c := <-watches[name]:
			t.Errorf("%s: closed (0x%02x) though its credential is valid", name, c.code)
		default:
		}
	}
	publish5(t, ext5, "still/here", 1, false, "x")
	publish5(t, keep5, "still/here", 1, false, "x")
}

// TestWillRecheckedWhenDue: a will allowed at CONNECT is dropped (and
// counted) when a deny rule added meanwhile covers its topic; another
// client's will on an allowed topic is still published.
func TestWillRecheckedWhenDue(t *testing.T) {
	b := storeBundle(t, []config.ACLRule{{ID: "r-all", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "#"}},
		config.Credential{ID: "c-1", Username: "dev", SecretSHA256: sum("pw"), Enabled: true})
	sub, _ := b.v5session(t, "watcher", "dev@i-acl", "pw", false, 0)
	if codes := sub.subscribe(t, "wills/#"); len(codes) != 1 || codes[0] != 1 {
		t.Fatalf("suback %v", codes)
	}
	withWill := func(id, topic string) net.Conn {
		nc, err := net.Dial("tcp", b.gw.MQTTAddr())
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: nc})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, UsernameFlag: true, Username: "dev@i-acl",
			PasswordFlag: true, Password: []byte("pw"), WillMessage: &paho.WillMessage{Topic: topic, QoS: 1, Payload: []byte(id)}}); err != nil {
			t.Fatal(err)
		}
		return nc
	}
	denied := withWill("will-denied", "wills/secret")
	allowed := withWill("will-allowed", "wills/ok")
	drops := dropsOf(b, "i-acl", DropACL)
	b.apply(t, config.Event{Kind: config.KindACLPut, InstanceID: "i-acl",
		ACLRule: &config.ACLRule{ID: "r-deny", Effect: config.EffectDeny, Action: config.ActionPublish, Filter: "wills/secret"}})
	denied.Close() // connections lost: the wills are due
	allowed.Close()
	if !waitFor(t, 5*time.Second, func() bool { return hasAll(sub.payloads(), "will-allowed") }) {
		t.Fatalf("the allowed will was not published: %v", sub.payloads())
	}
	time.Sleep(200 * time.Millisecond)
	if hasAll(sub.payloads(), "will-denied") {
		t.Error("a will the rules now deny was published")
	}
	if dropsOf(b, "i-acl", DropACL) == drops {
		t.Error("the dropped will was not counted (acl)")
	}
}
