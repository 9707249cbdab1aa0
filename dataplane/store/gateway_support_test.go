package store

import (
	"testing"
	"time"
)

// Tests of the calls the sessions hook relies on at start and on subscribe.
func TestGatewaySupport(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := f.ctx

	t.Run("subscribe records where the subscription starts and an update keeps it", func(t *testing.T) {
		if err := f.s.SaveSession(ctx, Session{Instance: "i", ClientID: "since", ProtocolVersion: 5, Expiry: time.Hour}); err != nil {
			t.Fatal(err)
		}
		f.publish("i", "s/a", "before")
		start, err := f.s.Subscribe(ctx, "i", "since", Subscription{Filter: "s/+", QoS: 1})
		if err != nil {
			t.Fatal(err)
		}
		f.publish("i", "s/a", "after")
		if _, err := f.s.Subscribe(ctx, "i", "since", Subscription{Filter: "s/+", QoS: 2}); err != nil {
			t.Fatal(err)
		}
		got, err := f.s.LoadSession(ctx, "i", "since")
		if err != nil {
			t.Fatal(err)
		}
		if sub := got.Subscriptions["s/+"]; sub.Since != start || sub.QoS != 2 {
			t.Fatalf("subscription = %+v, want Since %d and QoS 2", sub, start)
		}
	})

	t.Run("disconnect all marks stale connected sessions disconnected so they expire", func(t *testing.T) {
		for _, c := range []string{"on1", "on2"} {
			if err := f.s.SaveSession(ctx, Session{Instance: "j", ClientID: c, ProtocolVersion: 5, Expiry: time.Minute}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.s.Resume(ctx, "j", "on2"); err != nil { // online on this node
			t.Fatal(err)
		}
		at := f.clock.Now()
		n, err := f.s.DisconnectAll(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.s.LoadSession(ctx, "j", "on1")
		if err != nil {
			t.Fatal(err)
		}
		if !got.DisconnectedAt.Equal(at) {
			t.Fatalf("on1 disconnected at %v, want %v", got.DisconnectedAt, at)
		}
		if got, _ := f.s.LoadSession(ctx, "j", "on2"); !got.DisconnectedAt.IsZero() {
			t.Fatalf("live session on2 marked disconnected at %v", got.DisconnectedAt)
		}
		if n < 1 {
			t.Fatalf("DisconnectAll = %d", n)
		}
		f.clock.Add(2 * time.Minute)
		exp, err := f.s.ExpireSessions(ctx, f.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range exp.Sessions {
			found = found || r == (SessionRef{"j", "on1"})
		}
		if !found {
			t.Fatalf("expired %v, want j/on1", exp.Sessions)
		}
	})

	t.Run("retained instances survive a reopen", func(t *testing.T) {
		for _, inst := range []string{"r2", "r1"} {
			if err := f.s.Retain(ctx, Message{Instance: inst, Topic: "t", QoS: 1, Payload: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
		f.reopen()
		got := f.s.RetainedInstances()
		if !equal(got, []string{"r1", "r2"}) {
			t.Fatalf("RetainedInstances = %v", got)
		}
	})
}
