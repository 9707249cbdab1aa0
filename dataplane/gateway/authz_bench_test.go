package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
)

// BenchmarkDeliveryDecision measures the delivery-time ACL check of one
// message: evaluating the instance's 20 rules (with placeholders) against
// the topic every time ("rules"), and the cached decision the gateway uses
// ("cached", one connection; "cached-parallel", a connection per
// goroutine; "cached-allow-all", an instance with the default allow-all
// rule). go test -run - -bench DeliveryDecision ./dataplane/gateway/
func BenchmarkDeliveryDecision(b *testing.B) {
	var acl []config.ACLRule
	for i := range 16 {
		acl = append(acl, config.ACLRule{ID: fmt.Sprintf("r-%d", i), Effect: config.EffectAllow, Action: config.ActionSubscribe,
			Filter: fmt.Sprintf("site-%d/${username}/#", i)})
	}
	acl = append(acl,
		config.ACLRule{ID: "r-own", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "devices/${clientid}/#"},
		config.ACLRule{ID: "r-all", Effect: config.EffectAllow, Action: config.ActionSubscribe, Filter: "sensors/#"},
		config.ACLRule{ID: "r-d1", Effect: config.EffectDeny, Action: config.ActionSubscribe, Filter: "sensors/+/secret"},
		config.ACLRule{ID: "r-d2", Effect: config.EffectDeny, Action: config.ActionAll, Filter: "admin/#"})
	st := configsync.NewState()
	snap := config.Snapshot{Revision: 1, Instances: []config.Instance{{ID: "i-b", Status: config.StatusRunning, ACL: acl},
		{ID: "i-open", Status: config.StatusRunning, ACL: []config.ACLRule{{ID: "r-all", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "#"}}}}}
	if err := st.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &snap}); err != nil {
		b.Fatal(err)
	}
	h := newTenantHook(nil, st, "", "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	newConn := func() *conn {
		c := &conn{instance: "i-b", mount: "i-b/", username: "dev", clientID: "unit-1"}
		c.az.gen = h.gens.of("i-b")
		return c
	}
	topics := make([]string, 64)
	for i := range topics {
		topics[i] = fmt.Sprintf("sensors/%d/temperature", i)
	}
	b.Run("rules", func(b *testing.B) {
		c := newConn()
		for i := 0; b.Loop(); i++ {
			if !h.allowed(c, config.ActionSubscribe, topics[i%len(topics)], false) {
				b.Fatal("denied")
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := newConn()
		for i := 0; b.Loop(); i++ {
			if !h.deliverable(c, topics[i%len(topics)]) {
				b.Fatal("denied")
			}
		}
	})
	b.Run("cached-allow-all", func(b *testing.B) {
		c := &conn{instance: "i-open", mount: "i-open/", username: "dev", clientID: "unit-1"}
		c.az.gen = h.gens.of("i-open")
		for i := 0; b.Loop(); i++ {
			if !h.deliverable(c, topics[i%len(topics)]) {
				b.Fatal("denied")
			}
		}
	})
	b.Run("cached-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			c := newConn()
			for i := 0; pb.Next(); i++ {
				if !h.deliverable(c, topics[i%len(topics)]) {
					b.Error("denied")
					return
				}
			}
		})
	})
}
