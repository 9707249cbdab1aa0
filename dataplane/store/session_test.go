package store

import (
	"errors"
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := f.ctx

	t.Run("save and load", func(t *testing.T) {
		will := &Will{Message: Message{Topic: "w", QoS: 1, Payload: []byte("bye")}, Delay: time.Minute}
		if err := f.s.SaveSession(ctx, Session{Instance: "i", ClientID: "c", ProtocolVersion: 4, Expiry: NeverExpire, Will: will}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.Subscribe(ctx, "i", "c", Subscription{Filter: "a/+", QoS: 1}); err != nil {
			t.Fatal(err)
		}
		got, err := f.s.LoadSession(ctx, "i", "c")
		if err != nil {
			t.Fatal(err)
		}
		if got.ProtocolVersion != 4 || got.Expiry != NeverExpire || got.Will == nil || string(got.Will.Message.Payload) != "bye" ||
			got.Will.Delay != time.Minute || got.Subscriptions["a/+"].QoS != 1 {
			t.Fatalf("session = %+v", got)
		}
		if _, ok := got.Cursors["a/+"]; !ok {
			t.Fatalf("no cursor for a/+: %v", got.Cursors)
		}
		if _, err := f.s.LoadSession(ctx, "i", "nope"); !errors.Is(err, ErrNoSession) {
			t.Fatalf("missing session = %v", err)
		}
		if _, err := f.s.Subscribe(ctx, "i", "nope", Subscription{Filter: "x"}); !errors.Is(err, ErrNoSession) {
			t.Fatalf("subscribe without session = %v", err)
		}
	})

	t.Run("ack advances the cursor over the leading acked run only", func(t *testing.T) {
		f.session("i", "d", "q/+")
		if _, err := f.s.Resume(ctx, "i", "d"); err != nil {
			t.Fatal(err)
		}
		o1 := f.publish("i", "q/1", "1")
		o2 := f.publish("i", "q/2", "2")
		o3 := f.publish("i", "q/3", "3")
		ents, err := f.s.PullSession(ctx, "i", "d", "q/+", 10)
		if err != nil || len(ents) != 3 {
			t.Fatalf("PullSession = %v, %v", ents, err)
		}
		if n := f.s.Inflight("i", "d"); n != 3 {
			t.Fatalf("Inflight = %d", n)
		}
		for _, o := range []uint64{o3, o2} {
			if moved, err := f.s.Ack(ctx, "i", "d", "q/+", o); err != nil || moved {
				t.Fatalf("Ack(%d) moved=%v err=%v, want no move", o, moved, err)
			}
		}
		if s, _ := f.s.LoadSession(ctx, "i", "d"); s.Cursors["q/+"] >= o1 {
			t.Fatalf("cursor %d moved past unacked %d", s.Cursors["q/+"], o1)
		}
		if moved, err := f.s.Ack(ctx, "i", "d", "q/+", o1); err != nil || !moved {
			t.Fatalf("Ack(o1) moved=%v err=%v", moved, err)
		}
		if s, _ := f.s.LoadSession(ctx, "i", "d"); s.Cursors["q/+"] != o3 {
			t.Fatalf("cursor = %d, want %d", s.Cursors["q/+"], o3)
		}
		if n := f.s.Inflight("i", "d"); n != 0 {
			t.Fatalf("Inflight = %d", n)
		}
		if moved, _ := f.s.Ack(ctx, "i", "d", "q/+", o1); moved {
			t.Fatal("duplicate ack moved the cursor")
		}
	})

	t.Run("reconnect resumes from the cursor", func(t *testing.T) {
		o4 := f.publish("i", "q/4", "4")
		f.publish("i", "q/5", "5")
		ents, _ := f.s.PullSession(ctx, "i", "d", "q/+", 10)
		if len(ents) != 2 {
			t.Fatalf("pulled %d", len(ents))
		}
		f.s.Ack(ctx, "i", "d", "q/+", o4)
		if err := f.s.Disconnect(ctx, "i", "d", f.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.PullSession(ctx, "i", "d", "q/+", 10); !errors.Is(err, ErrNoSession) {
			t.Fatalf("pull while offline = %v", err)
		}
		f.publish("i", "q/6", "6") // published while offline
		f.reopen()
		if _, err := f.s.Resume(ctx, "i", "d"); err != nil {
			t.Fatal(err)
		}
		ents, err := f.s.PullSession(ctx, "i", "d", "q/+", 10)
		var got []string
		for _, e := range ents {
			got = append(got, string(e.Message.Payload))
		}
		if err != nil || !equal(got, []string{"5", "6"}) {
			t.Fatalf("after reconnect pulled %v, %v; want the unacked 5 and the offline 6", got, err)
		}
	})

	t.Run("expiry removes the session and fires the will", func(t *testing.T) {
		will := &Will{Message: Message{Topic: "status/e", QoS: 1, Payload: []byte("gone")}, Delay: time.Hour}
		if err := f.s.SaveSession(ctx, Session{Instance: "i", ClientID: "e", ProtocolVersion: 5, Expiry: 10 * time.Minute, Will: will}); err != nil {
			t.Fatal(err)
		}
		f.s.Subscribe(ctx, "i", "e", Subscription{Filter: "exp/+", QoS: 1})
		f.publish("i", "exp/1", "x")
		if n := f.lqKeys("i", "exp/+"); n != 1 {
			t.Fatalf("queue exp/+ has %d entries", n)
		}
		at := f.clock.Now()
		f.s.Disconnect(ctx, "i", "e", at)
		res, err := f.s.ExpireSessions(ctx, at.Add(10*time.Minute-time.Second))
		if err != nil || len(res.Wills) != 0 || len(res.Sessions) != 0 {
			t.Fatalf("before expiry: %+v, %v", res, err)
		}
		res, err = f.s.ExpireSessions(ctx, at.Add(10*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Wills) != 1 || string(res.Wills[0].Payload) != "gone" || res.Wills[0].Instance != "i" || res.Wills[0].Topic != "status/e" {
			t.Fatalf("wills = %+v (will delay is capped by the session expiry)", res.Wills)
		}
		if len(res.Sessions) != 1 || res.Sessions[0] != (SessionRef{"i", "e"}) {
			t.Fatalf("expired = %v", res.Sessions)
		}
		if _, err := f.s.LoadSession(ctx, "i", "e"); !errors.Is(err, ErrNoSession) {
			t.Fatalf("expired session still loads: %v", err)
		}
		if n := f.lqKeys("i", "exp/+"); n != 0 || f.s.filters["i"]["exp/+"] != 0 {
			t.Fatalf("queue of expired session kept")
		}
	})

	t.Run("delayed will survives a restart and fires once", func(t *testing.T) {
		will := &Will{Message: Message{Topic: "status/w", QoS: 1, Payload: []byte("late")}, Delay: 30 * time.Second}
		f.s.SaveSession(ctx, Session{Instance: "i", ClientID: "w", ProtocolVersion: 5, Expiry: time.Hour, Will: will})
		at := f.clock.Now()
		f.s.Disconnect(ctx, "i", "w", at)
		f.reopen()
		if res, _ := f.s.ExpireSessions(ctx, at.Add(29*time.Second)); len(res.Wills) != 0 {
			t.Fatalf("will fired before its delay: %+v", res.Wills)
		}
		res, err := f.s.ExpireSessions(ctx, at.Add(30*time.Second))
		if err != nil || len(res.Wills) != 1 || string(res.Wills[0].Payload) != "late" || len(res.Sessions) != 0 {
			t.Fatalf("at delay: %+v, %v", res, err)
		}
		if res, _ := f.s.ExpireSessions(ctx, at.Add(31*time.Second)); len(res.Wills) != 0 {
			t.Fatalf("will fired twice")
		}
		if _, err := f.s.LoadSession(ctx, "i", "w"); err != nil {
			t.Fatalf("session gone before its expiry: %v", err)
		}
	})

	t.Run("never-expiring session is kept", func(t *testing.T) {
		f.s.Disconnect(ctx, "i", "c", f.clock.Now())
		res, err := f.s.ExpireSessions(ctx, f.clock.Now().Add(24*365*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range res.Sessions {
			if s.ClientID == "c" {
				t.Fatal("3.1.1 persistent session expired")
			}
		}
	})
}
