package gateway

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/internal/mqtttopic"
)

// listener5 is an MQTT 5 subscriber that records what it receives.
type listener5 struct {
	mu  sync.Mutex
	got []string
	v   *v5conn
}

func (b *bundle) listen5(t *testing.T, clientID, user, pass string, filters ...string) *listener5 {
	t.Helper()
	l := &listener5{}
	v, _, err := b.v5with(t, clientID, user, pass, nil, func(cc *paho.ClientConfig) {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			l.mu.Lock()
			l.got = append(l.got, pr.Packet.Topic+"="+string(pr.Packet.Payload))
			l.mu.Unlock()
			return true, nil
		}}
	})
	if err != nil {
		t.Fatal(err)
	}
	l.v = v
	var subs []paho.SubscribeOptions
	for _, f := range filters {
		subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 2})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := v.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range sa.Reasons {
		if r >= 0x80 {
			t.Fatalf("subscribe %q refused 0x%02x", filters[i], r)
		}
	}
	return l
}

func (l *listener5) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

// TestIsolationSuite: two instances use the same topics, client IDs and
// share groups; QoS 0/1/2, wills, shared subscriptions and topic aliases
// never cross between them, and the device never sees the internal mount.
func TestIsolationSuite(t *testing.T) {
	b := newBundle(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := b.listen5(t, "watch", "dev@i-aaaa", "pw-dev", "fleet/#")
	bb := b.listen5(t, "watch", "dev@i-bbbb", "pw-b", "fleet/#")
	aShared := b.listen5(t, "worker", "dev@i-aaaa", "pw-dev", "$share/g/jobs/#")
	bShared := b.listen5(t, "worker", "dev@i-bbbb", "pw-b", "$share/g/jobs/#")

	pubA, _, err := b.v5with(t, "pub", "dev@i-aaaa", "pw-dev", nil, func(cc *paho.ClientConfig) {})
	if err != nil {
		t.Fatal(err)
	}
	for q := byte(0); q <= 2; q++ {
		if _, err := pubA.c.Publish(ctx, &paho.Publish{Topic: "fleet/q", QoS: q, Payload: []byte{'0' + q}}); err != nil {
			t.Fatalf("QoS %d: %v", q, err)
		}
	}
	if _, err := pubA.c.Publish(ctx, &paho.Publish{Topic: "jobs/1", QoS: 1, Payload: []byte("job")}); err != nil {
		t.Fatal(err)
	}
	// Topic alias: the first publish sets alias 7, the second uses it alone.
	alias := uint16(7)
	if _, err := pubA.c.Publish(ctx, &paho.Publish{Topic: "fleet/aliased", QoS: 1, Payload: []byte("set"), Properties: &paho.PublishProperties{TopicAlias: &alias}}); err != nil {
		t.Fatal(err)
	}
	if _, err := pubA.c.Publish(ctx, &paho.Publish{Topic: "", QoS: 1, Payload: []byte("use"), Properties: &paho.PublishProperties{TopicAlias: &alias}}); err != nil {
		t.Fatal(err)
	}
	// A will in A, fired by a broken connection.
	nc, err := net.Dial("tcp", b.gw.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	wc := paho.NewClient(paho.ClientConfig{Conn: nc})
	if _, err := wc.Connect(ctx, &paho.Connect{ClientID: "doomed", CleanStart: true, KeepAlive: 30, UsernameFlag: true, Username: "dev@i-aaaa",
		PasswordFlag: true, Password: []byte("pw-dev"), WillMessage: &paho.WillMessage{Topic: "fleet/will", QoS: 1, Payload: []byte("gone")}}); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	want := []string{"fleet/q=0", "fleet/q=1", "fleet/q=2", "fleet/aliased=set", "fleet/aliased=use", "fleet/will=gone"}
	if !waitFor(t, 5*time.Second, func() bool { return len(a.messages()) == len(want) && len(aShared.messages()) == 1 }) {
		t.Fatalf("instance A got %v and %v", a.messages(), aShared.messages())
	}
	got := map[string]bool{}
	for _, m := range a.messages() {
		got[m] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("instance A missed %q (got %v)", w, a.messages())
		}
	}
	if m := aShared.messages(); m[0] != "jobs/1=job" {
		t.Errorf("shared subscriber got %v", m)
	}
	time.Sleep(300 * time.Millisecond)
	if m := bb.messages(); len(m) != 0 {
		t.Errorf("instance B received A's messages: %v", m)
	}
	if m := bShared.messages(); len(m) != 0 {
		t.Errorf("instance B's share group received A's jobs: %v", m)
	}
	t.Run("publishes that would leave the namespace are refused", func(t *testing.T) {
		for _, topic := range []string{"$SYS/broker/load", "a/+/b", "a\x00b", strings.Repeat("x", mqtttopic.MaxLevelBytes+1)} {
			v, _, err := b.v5(t, "esc", "dev@i-aaaa", "pw-dev")
			if err != nil {
				t.Fatal(err)
			}
			_, _ = v.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 0, Payload: []byte("x")})
			select {
			case <-v.disconnected:
			case <-v.c.Done():
			case <-time.After(3 * time.Second):
				t.Fatalf("publish to %q kept the connection", topic)
			}
		}
		time.Sleep(200 * time.Millisecond)
		if m := bb.messages(); len(m) != 0 {
			t.Errorf("B received %v", m)
		}
	})
}

// TestInvalidTopicCannotReachAnotherInstance: a publish the gateway cannot
// mount (too deep for the instance, an over-long level, a wildcard) must
// not go on unmounted, where "i-bbbb/…" would land in instance B.
func TestInvalidTopicCannotReachAnotherInstance(t *testing.T) {
	b := newBundle(t)
	b.setQuotasKeep(t, "i-aaaa", func(q *config.Quotas) { q.MaxTopicLevels = 3 })
	victim := b.listen5(t, "victim", "dev@i-bbbb", "pw-b", "#")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, topic := range []string{"i-bbbb/fleet/a/b/c", "i-bbbb/" + strings.Repeat("x", mqtttopic.MaxLevelBytes+1)} {
		v3, err := b.v3(t, "attacker3", "dev@i-aaaa", "pw-dev", nil)
		if err != nil {
			t.Fatal(err)
		}
		v3.Publish(topic, 1, false, "injected").WaitTimeout(time.Second)
		if !waitFor(t, 3*time.Second, func() bool { return !v3.IsConnected() }) {
			t.Errorf("v3.1.1 publish to %q kept the connection", topic)
		}
		v, _, err := b.v5(t, "attacker5", "dev@i-aaaa", "pw-dev")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = v.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 0, Payload: []byte("injected")})
		select {
		case d := <-v.disconnected:
			if d.ReasonCode != 0x90 {
				t.Errorf("DISCONNECT 0x%02x, want 0x90", d.ReasonCode)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("v5 publish to %q: no DISCONNECT 0x90", topic)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if m := victim.messages(); len(m) != 0 {
		t.Fatalf("instance B received injected messages: %v", m)
	}
}
