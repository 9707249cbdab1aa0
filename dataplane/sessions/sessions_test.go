package sessions

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/dataplane/store"
)

// publishAll publishes n messages per topic (payload "<topic>-<seq>"),
// interleaving topics, and waits for each acknowledgement.
func publishAll(tb testing.TB, pub *v5, topics []string, n int, qos byte) {
	tb.Helper()
	for i := 0; i < n; i++ {
		for _, t := range topics {
			pub.publish(tb, t, fmt.Sprintf("%s-%d", t, i), qos, false)
		}
	}
}

func TestPersistentSessions(t *testing.T) {
	n := startNode(t, t.TempDir(), "127.0.0.1:0", store.SyncNone)
	pub := dialV5(t, n.addr, "publisher", v5opts{clean: true})
	t.Cleanup(pub.disconnect)

	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("v311 offline subscriber gets every QoS%d message in order after reconnect", qos), func(t *testing.T) {
			id := fmt.Sprintf("v3-sub-q%d", qos)
			topics := []string{fmt.Sprintf("v3q%d/a", qos), fmt.Sprintf("v3q%d/b", qos)}
			sub := dialV3(t, n.addr, id, false)
			for _, tp := range topics {
				sub.subscribe(t, tp, qos)
			}
			sub.disconnect()
			publishAll(t, pub, topics, 200, qos)

			sub = dialV3(t, n.addr, id, false)
			defer sub.disconnect()
			got := sub.in.waitDistinct(t, 400, 20*time.Second)
			checkSequence(t, got, topics, 200)
		})
		t.Run(fmt.Sprintf("v5 offline subscriber gets every QoS%d message in order after reconnect", qos), func(t *testing.T) {
			id := fmt.Sprintf("v5-sub-q%d", qos)
			topics := []string{fmt.Sprintf("v5q%d/a", qos), fmt.Sprintf("v5q%d/b", qos)}
			sub := dialV5(t, n.addr, id, v5opts{clean: true, expiry: 3600})
			for _, tp := range topics {
				sub.subscribe(t, tp, qos)
			}
			sub.disconnect()
			publishAll(t, pub, topics, 200, qos)

			sub = dialV5(t, n.addr, id, v5opts{expiry: 3600})
			defer sub.disconnect()
			got := sub.in.waitDistinct(t, 400, 20*time.Second)
			checkSequence(t, got, topics, 200)
		})
	}

	t.Run("wildcard subscription fleet/+/telemetry is served from its queue", func(t *testing.T) {
		sub := dialV5(t, n.addr, "fleet-sub", v5opts{clean: true, expiry: 3600})
		sub.subscribe(t, "fleet/+/telemetry", 1)
		sub.disconnect()
		topics := []string{"fleet/d1/telemetry", "fleet/d2/telemetry", "fleet/d3/telemetry"}
		publishAll(t, pub, topics, 50, 1)
		pub.publish(t, "fleet/d1/status", "not-matching-0", 1, false)

		sub = dialV5(t, n.addr, "fleet-sub", v5opts{expiry: 3600})
		defer sub.disconnect()
		got := sub.in.waitDistinct(t, 150, 10*time.Second)
		time.Sleep(100 * time.Millisecond)
		got = sub.in.snapshot()
		for _, r := range got {
			if r.topic == "fleet/d1/status" {
				t.Fatalf("got %s on fleet/+/telemetry", r.topic)
			}
		}
		checkSequence(t, got, topics, 50)
	})

	t.Run("reconnect resumes from the cursor: unacknowledged messages come again with DUP, acknowledged ones never", func(t *testing.T) {
		const id = "dup-sub"
		sub := dialV5(t, n.addr, id, v5opts{clean: true, expiry: 3600})
		sub.subscribe(t, "dup/t", 1)
		sub.disconnect()
		publishAll(t, pub, []string{"dup/t"}, 20, 1)

		// Reconnect with manual acks: receive all 20, acknowledge the first 10.
		var acked atomic.Int32
		conn := dialV5Manual(t, n.addr, id, func(c *paho.Client, p *paho.Publish) {
			if acked.Load() < 10 {
				acked.Add(1)
				_ = c.Ack(p)
			}
		})
		first := conn.in.waitDistinct(t, 20, 10*time.Second)
		checkSequence(t, first, []string{"dup/t"}, 20)
		waitForState(t, "10 acks processed", func() (bool, string) {
			in := n.st.Inflight(DefaultInstance, id)
			return in == 10, fmt.Sprintf("store in flight %d, client acked %d, hook session online %v", in, acked.Load(), n.hook.sessionOfID(id) != nil)
		})
		conn.c.TerminateConnectionForTest() // drop without DISCONNECT
		waitFor(t, "session offline", func() bool { return n.hook.sessionOfID(id) == nil })

		sub = dialV5(t, n.addr, id, v5opts{expiry: 3600})
		defer sub.disconnect()
		again := sub.in.waitDistinct(t, 10, 10*time.Second)
		time.Sleep(100 * time.Millisecond)
		again = sub.in.snapshot()
		if len(again) != 10 {
			t.Fatalf("redelivered %d messages, want the 10 unacknowledged", len(again))
		}
		for i, r := range again {
			if want := fmt.Sprintf("dup/t-%d", 10+i); r.payload != want || !r.dup {
				t.Fatalf("redelivery %d = %q dup=%v, want %q with DUP", i, r.payload, r.dup, want)
			}
		}
	})

	t.Run("mochi holds no inflight copies for an offline persistent session while 10000 messages are published", func(t *testing.T) {
		const id = "mem-sub"
		sub := dialV3(t, n.addr, id, false)
		sub.subscribe(t, "mem/#", 1)
		sub.disconnect()
		pub3 := dialV3(t, n.addr, "mem-pub", true)
		defer pub3.disconnect()

		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		const total = 10000
		tokens := make(chan interface{ Wait() bool }, total)
		for i := 0; i < total; i++ {
			tokens <- pub3.c.Publish("mem/t", 1, false, fmt.Sprintf("mem/t-%d", i))
			if i%1000 == 999 {
				if cl, ok := n.srv.Clients.Get(id); ok && cl.State.Inflight.Len() != 0 {
					t.Fatalf("after %d publishes mochi holds %d inflight copies", i+1, cl.State.Inflight.Len())
				}
			}
		}
		close(tokens)
		for tk := range tokens {
			tk.Wait()
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		cl, ok := n.srv.Clients.Get(id)
		if !ok {
			t.Fatal("offline persistent client unknown to mochi")
		}
		if l := cl.State.Inflight.Len(); l != 0 {
			t.Fatalf("mochi holds %d inflight copies for the offline session", l)
		}
		growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		t.Logf("heap growth over %d messages: %d bytes (%.1f B/message)", total, growth, float64(growth)/total)
		if growth > 4<<20 { // mochi's own path: ~1.6 KiB + payload per message
			t.Fatalf("heap grew %d bytes over %d messages", growth, total)
		}

		sub = dialV3(t, n.addr, id, false)
		defer sub.disconnect()
		got := sub.in.waitDistinct(t, total, 60*time.Second)
		checkSequence(t, got, []string{"mem/t"}, total)
	})

	t.Run("clean sessions are store-served from their first subscription and leave nothing behind", func(t *testing.T) {
		sub := dialV5(t, n.addr, "clean-sub", v5opts{clean: true})
		sub3 := dialV3(t, n.addr, "clean-sub3", true)
		if n.hook.sessionOfID("clean-sub") != nil {
			t.Fatal("a clean session without subscriptions is served by the store")
		}
		sub.subscribe(t, "clean/#", 1)
		sub3.subscribe(t, "clean/#", 1)
		for i := 0; i < 20; i++ {
			pub.publish(t, "clean/q0", fmt.Sprintf("clean/q0-%d", i), 0, false)
			pub.publish(t, "clean/q1", fmt.Sprintf("clean/q1-%d", i), 1, false)
		}
		for _, in := range []*inbox{sub.in, sub3.in} {
			got := in.waitDistinct(t, 40, 10*time.Second)
			checkSequence(t, got, []string{"clean/q0", "clean/q1"}, 20)
		}
		if n.hook.sessionOfID("clean-sub") == nil || n.hook.sessionOfID("clean-sub3") == nil {
			t.Fatal("subscribed clean sessions are not served by the store")
		}
		if l, _ := n.srv.Clients.Get("clean-sub"); l.State.Inflight.Len() > n.hook.opts.MaxInflight {
			t.Fatalf("%d in flight", l.State.Inflight.Len())
		}
		sub.disconnect()
		sub3.disconnect()
		for _, id := range []string{"clean-sub", "clean-sub3"} {
			waitFor(t, id+" gone from the store", func() bool {
				_, err := n.st.LoadSession(context.Background(), DefaultInstance, id)
				return errors.Is(err, store.ErrNoSession) && n.hook.sessionOfID(id) == nil
			})
		}
		if qs := n.st.SessionsOn(DefaultInstance, "clean/#"); len(qs) != 0 {
			t.Fatalf("sessions still on clean/#: %v", qs)
		}
	})

	t.Run("online persistent session gets QoS0 and QoS1 live", func(t *testing.T) {
		sub := dialV5(t, n.addr, "live-sub", v5opts{clean: true, expiry: 60})
		defer sub.disconnect()
		sub.subscribe(t, "live/#", 1)
		for i := 0; i < 20; i++ {
			pub.publish(t, "live/q0", fmt.Sprintf("live/q0-%d", i), 0, false)
			pub.publish(t, "live/q1", fmt.Sprintf("live/q1-%d", i), 1, false)
		}
		got := sub.in.waitDistinct(t, 40, 10*time.Second)
		checkSequence(t, got, []string{"live/q0", "live/q1"}, 20)
		// Dropping one of several subscriptions keeps QoS0 flowing to the others.
		sub.subscribe(t, "other/+", 1)
		if code := sub.unsubscribe(t, "other/+"); code != 0 {
			t.Fatalf("UNSUBACK reason %#x", code)
		}
		pub.publish(t, "live/q0", "live/q0-20", 0, false)
		sub.in.waitDistinct(t, 41, 5*time.Second)
		if cl, ok := n.srv.Clients.Get("live-sub"); ok && cl.State.Inflight.Len() != 0 {
			waitFor(t, "acks drained", func() bool { return cl.State.Inflight.Len() == 0 })
		}
	})

	t.Run("a second connection takes the session over and gets every message", func(t *testing.T) {
		first := dialV5(t, n.addr, "take-sub", v5opts{clean: true, expiry: 3600})
		first.subscribe(t, "take/t", 1)
		second := dialV5(t, n.addr, "take-sub", v5opts{expiry: 3600})
		defer second.disconnect()
		if !second.present {
			t.Fatal("CONNACK of the takeover: session present = false")
		}
		select {
		case <-first.c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("first connection not closed by the takeover")
		}
		publishAll(t, pub, []string{"take/t"}, 50, 1)
		got := second.in.waitDistinct(t, 50, 10*time.Second)
		checkSequence(t, got, []string{"take/t"}, 50)
		cl, _ := n.srv.Clients.Get("take-sub")
		waitFor(t, "acks drained", func() bool { return cl.State.Inflight.Len() == 0 })
	})

	t.Run("rapid reconnects that overtake the previous connection's disconnect keep delivering and acknowledging", func(t *testing.T) {
		const id = "flap-sub"
		sub := dialV5(t, n.addr, id, v5opts{clean: true, expiry: 3600})
		sub.subscribe(t, "flap/t", 1)
		var cursor uint64
		for round := 0; round < 30; round++ {
			// Drop without DISCONNECT and reconnect at once, so the new
			// connection's resume races the old one's OnDisconnect.
			sub.c.TerminateConnectionForTest()
			sub = dialV5(t, n.addr, id, v5opts{expiry: 3600})
			if !sub.present {
				t.Fatalf("round %d: session present = false", round)
			}
			for i := 0; i < 3; i++ {
				pub.publish(t, "flap/t", fmt.Sprintf("flap/t-%d-%d", round, i), 1, false)
			}
			got := sub.in.waitDistinct(t, 3, 10*time.Second)
			for i, r := range got[len(got)-3:] {
				if want := fmt.Sprintf("flap/t-%d-%d", round, i); r.payload != want {
					t.Fatalf("round %d: delivery %d = %q, want %q", round, i, r.payload, want)
				}
			}
			// The acknowledgements reach the resumed session's cursor.
			waitFor(t, fmt.Sprintf("round %d: cursor past the 3 messages", round), func() bool {
				sess, err := n.st.LoadSession(context.Background(), DefaultInstance, id)
				if err != nil || sess.Cursors["flap/t"] <= cursor || n.st.Inflight(DefaultInstance, id) != 0 {
					return false
				}
				cursor = sess.Cursors["flap/t"]
				return true
			})
		}
		sub.disconnect()
	})

	t.Run("clean start discards the stored session", func(t *testing.T) {
		sub := dialV5(t, n.addr, "cs-sub", v5opts{clean: true, expiry: 3600})
		sub.subscribe(t, "cs/t", 1)
		sub.disconnect()
		publishAll(t, pub, []string{"cs/t"}, 5, 1)
		sub = dialV5(t, n.addr, "cs-sub", v5opts{clean: true, expiry: 3600})
		defer sub.disconnect()
		if sub.present {
			t.Fatal("CONNACK after clean start: session present = true")
		}
		publishAll(t, pub, []string{"cs/t"}, 1, 1)
		time.Sleep(200 * time.Millisecond)
		if got := sub.in.snapshot(); len(got) != 0 {
			t.Fatalf("clean-started session got %d messages of the discarded session", len(got))
		}
		if got := n.st.SessionsOn(DefaultInstance, "cs/t"); len(got) != 0 {
			t.Fatalf("discarded subscription still stored: %v", got)
		}
	})

	t.Run("unsubscribe removes the stored subscription and UNSUBACK reports success", func(t *testing.T) {
		sub := dialV5(t, n.addr, "un-sub", v5opts{clean: true, expiry: 3600})
		sub.subscribe(t, "un/t", 1)
		if code := sub.unsubscribe(t, "un/t"); code != 0 {
			t.Fatalf("UNSUBACK reason %#x, want success", code)
		}
		sub.disconnect()
		publishAll(t, pub, []string{"un/t"}, 5, 1)
		sub = dialV5(t, n.addr, "un-sub", v5opts{expiry: 3600})
		defer sub.disconnect()
		if !sub.present {
			t.Fatal("session present = false after reconnect")
		}
		time.Sleep(200 * time.Millisecond)
		if got := sub.in.snapshot(); len(got) != 0 {
			t.Fatalf("unsubscribed session got %d messages", len(got))
		}
	})

	t.Run("overlapping subscriptions deliver each message once", func(t *testing.T) {
		sub := dialV5(t, n.addr, "ov-sub", v5opts{clean: true, expiry: 3600})
		sub.subscribe(t, "ov/#", 1)
		sub.subscribe(t, "ov/+/x", 1)
		sub.subscribe(t, "ov/a/x", 1)
		sub.disconnect()
		topics := []string{"ov/a/x", "ov/b/x", "ov/c"}
		publishAll(t, pub, topics, 10, 1)
		sub = dialV5(t, n.addr, "ov-sub", v5opts{expiry: 3600})
		defer sub.disconnect()
		sub.in.waitDistinct(t, 30, 10*time.Second)
		time.Sleep(200 * time.Millisecond)
		got := sub.in.snapshot()
		if len(got) != 30 {
			t.Fatalf("got %d deliveries of 30 messages", len(got))
		}
		checkSequence(t, got, topics, 10)
	})

	t.Run("a broadcast to 50 online persistent sessions is served from the tail cache, not a store read per session", func(t *testing.T) {
		const sessions, msgs = 50, 100
		var subs []*v5
		for i := 0; i < sessions; i++ {
			sub := dialV5(t, n.addr, fmt.Sprintf("bc-sub-%d", i), v5opts{clean: true, expiry: 3600})
			defer sub.disconnect()
			sub.subscribe(t, "bc/+", 1)
			subs = append(subs, sub)
		}
		io0 := n.st.IO()
		publishAll(t, pub, []string{"bc/t"}, msgs, 1)
		for _, sub := range subs {
			got := sub.in.waitDistinct(t, msgs, 20*time.Second)
			checkSequence(t, got, []string{"bc/t"}, msgs)
		}
		reads := n.st.IO().StoreReads - io0.StoreReads
		t.Logf("%d messages to %d sessions: %d store reads", msgs, sessions, reads)
		if reads > 10 {
			t.Fatalf("%d store reads for a broadcast to %d sessions", reads, sessions)
		}
	})

	t.Run("session expiry removes the session", func(t *testing.T) {
		sub := dialV5(t, n.addr, "short-sub", v5opts{clean: true, expiry: 1})
		sub.subscribe(t, "short/t", 1)
		sub.disconnect()
		if _, err := n.st.LoadSession(t.Context(), DefaultInstance, "short-sub"); err != nil {
			t.Fatalf("session after disconnect: %v", err)
		}
		waitFor(t, "session expired", func() bool {
			_, err := n.st.LoadSession(t.Context(), DefaultInstance, "short-sub")
			return err != nil
		})
		if got := n.st.SessionsOn(DefaultInstance, "short/t"); len(got) != 0 {
			t.Fatalf("expired session still subscribed: %v", got)
		}
	})
}

// waitForState is waitFor with the state cond last saw in the failure.
func waitForState(tb testing.TB, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s: %s", what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
