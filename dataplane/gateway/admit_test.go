package gateway

import (
	"github.com/aeriemq/aerie/internal/mqtttopic"

	"context"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/store"
)

// liveConn returns the client and connection of a connected device.
func liveConn(t *testing.T, b *bundle, instance, clientID string) (*mqtt.Client, *conn) {
	t.Helper()
	b.gw.tenant.mu.RLock()
	defer b.gw.tenant.mu.RUnlock()
	for cl, c := range b.gw.tenant.conns {
		if c.instance == instance && c.clientID == clientID && !cl.Net.Inline {
			return cl, c
		}
	}
	t.Fatalf("%s of %s is not connected", clientID, instance)
	return nil, nil
}

// TestAdmissionOneFunctionForDeviceAndHTTP: a device's MQTT publish and an
// HTTP publish of the instance's server go through the same admission
// (admit) and are refused for the same reasons, counted the same way. The
// one intended difference is the topic stage: ACL rules, strict topics and
// topic policies bind devices, not the instance's own server (TestHTTPPublish
// in cmd/aerie pins that end to end).
func TestAdmissionOneFunctionForDeviceAndHTTP(t *testing.T) {
	b := newStoreBundle(t)
	const inst = "i-bbbb"
	if _, _, err := b.v5(t, "adm", "dev@"+inst, "pw-b"); err != nil {
		t.Fatal(err)
	}
	cl, c := liveConn(t, b, inst, "adm")
	h := b.gw.tenant
	ctx := context.Background()

	device := func(topic string, qos byte, retain bool, payload string) (refusal, publish) {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
			TopicName: mqtttopic.Mount(c.mount, topic), Payload: []byte(payload)}
		p := devicePublish(cl, c, &pk)
		return h.admit(&p), p
	}
	server := func(topic string, qos byte, retain bool, payload string) (refusal, publish) {
		p := serverPublish(ctx, config.Publish{ID: "p", InstanceID: inst, Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)})
		return h.admit(&p), p
	}
	type outcome struct {
		device, server refusal
		drops          map[string]int64 // each publisher adds these drops
	}
	check := func(t *testing.T, topic string, qos byte, retain bool, payload string, want outcome) {
		t.Helper()
		count := func() map[string]int64 {
			out := map[string]int64{}
			for _, r := range []string{DropACL, DropQuota, DropTooLarge} {
				out[r] = dropsOf(b, inst, r)
			}
			return out
		}
		for _, who := range []struct {
			name  string
			admit func(string, byte, bool, string) (refusal, publish)
			want  refusal
		}{{"device", device, want.device}, {"server", server, want.server}} {
			before := count()
			if got, _ := who.admit(topic, qos, retain, payload); got != who.want {
				t.Errorf("%s publish on %q: refusal %d, want %d", who.name, topic, got, who.want)
			}
			after := count()
			for r, n := range after {
				exp := want.drops[r]
				if who.want == admitted {
					exp = 0
				}
				if d := n - before[r]; d != exp {
					t.Errorf("%s publish on %q: %d %s drops counted, want %d", who.name, topic, d, r, exp)
				}
			}
		}
	}

	t.Run("admitted", func(t *testing.T) {
		check(t, "a/b", 1, false, "v", outcome{admitted, admitted, nil})
	})
	t.Run("max_payload_bytes", func(t *testing.T) {
		b.setQuotas(t, inst, config.Quotas{MaxPayloadBytes: 4})
		check(t, "a/b", 1, false, "12345", outcome{refusedTooLarge, refusedTooLarge, map[string]int64{DropTooLarge: 1}})
		check(t, "a/b", 1, false, "1234", outcome{admitted, admitted, nil})
	})
	t.Run("max_retained_messages, asked of the store", func(t *testing.T) {
		b.setQuotas(t, inst, config.Quotas{MaxRetainedMessages: 1})
		if err := b.gw.store.Retain(ctx, store.Message{Instance: inst, Topic: inst + "/kept", Payload: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		check(t, "new", 1, true, "v", outcome{refusedRetained, refusedRetained, map[string]int64{DropQuota: 1}})
		check(t, "kept", 1, true, "v2", outcome{admitted, admitted, nil}) // replacing is not new
		check(t, "new", 1, true, "", outcome{admitted, admitted, nil})    // clearing is not new
		// A publisher that cannot be told (QoS 0) is delivered, not retained.
		if r, p := device("new", 0, true, "v"); r != admitted || !p.unretain {
			t.Fatalf("device QoS 0 beyond the retained quota: refusal %d, unretain %v", r, p.unretain)
		}
		if err := b.gw.store.Retain(ctx, store.Message{Instance: inst, Topic: inst + "/kept"}); err != nil {
			t.Fatal(err)
		}
		check(t, "new", 1, true, "v", outcome{admitted, admitted, nil}) // the place is free at once
	})
	t.Run("rate quota: held back, then refused", func(t *testing.T) {
		b.setQuotas(t, inst, config.Quotas{MaxPublishPerSecond: 1, MaxThrottleSeconds: 1})
		if r, _ := server("a/b", 0, false, "v"); r != admitted {
			t.Fatalf("first publish of the second: refusal %d", r)
		}
		// The next token is a second away: the server may wait httpMaxWait,
		// the device max_throttle_seconds (1 s) in a row.
		if r, _ := server("a/b", 0, false, "v"); r != refusedRate {
			t.Fatalf("server beyond the rate: refusal %d, want refusedRate", r)
		}
		start := time.Now()
		if r, _ := device("a/b", 0, false, "v"); r != admitted {
			t.Fatalf("device held back within its bound: refusal %d", r)
		}
		if held := time.Since(start); held < 500*time.Millisecond {
			t.Fatalf("device admitted after %v: not held back", held)
		}
		if r, _ := device("a/b", 0, false, "v"); r != refusedRate {
			t.Fatalf("device held back beyond its bound: refusal %d, want refusedRate", r)
		}
	})
	b.setQuotas(t, inst, config.Quotas{})
	t.Run("ACL rules bind devices only", func(t *testing.T) {
		b.apply(t, config.Event{Kind: config.KindACLPut, InstanceID: inst, ACLRule: &config.ACLRule{ID: "r-deny", Effect: config.EffectDeny, Action: config.ActionPublish, Filter: "secret/#"}})
		check(t, "secret/x", 1, false, "v", outcome{refusedACL, admitted, map[string]int64{DropACL: 1}})
	})
	t.Run("strict topics and topic policies bind devices only", func(t *testing.T) {
		b.apply(t, config.Event{Kind: config.KindTopicPut, InstanceID: inst, Topic: &config.Topic{ID: "t-1", Name: "fleet", Filter: "fleet/+", MaxQoS: 1}})
		strict := true
		b.apply(t, config.Event{Kind: config.KindStrictTopics, InstanceID: inst, Strict: &strict})
		check(t, "other", 1, false, "v", outcome{refusedACL, admitted, map[string]int64{DropACL: 1}})
		check(t, "fleet/1", 2, false, "v", outcome{refusedACL, admitted, map[string]int64{DropACL: 1}})
		check(t, "fleet/1", 1, false, "v", outcome{admitted, admitted, nil})
	})
	t.Run("instance status", func(t *testing.T) {
		b.apply(t, config.Event{Kind: config.KindInstanceStatus, Instance: &config.Instance{ID: inst, Status: config.StatusSuspended}})
		if r, p := server("a/b", 0, false, "v"); r != refusedStopped || p.status != config.StatusSuspended {
			t.Fatalf("server publish to a suspended instance: refusal %d (%q)", r, p.status)
		}
		// A device's connection stands for its instance's status: it is closed.
		if !waitFor(t, 3*time.Second, cl.Closed) {
			t.Fatal("the device's connection outlived its instance's status")
		}
	})
}
