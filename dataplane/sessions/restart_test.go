package sessions

import (
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/dataplane/store"
)

func TestRestart(t *testing.T) {
	t.Run("retained messages survive a restart", func(t *testing.T) {
		dir := t.TempDir()
		n := startNode(t, dir, "127.0.0.1:0", store.SyncBatch)
		pub := dialV5(t, n.addr, "ret-pub", v5opts{clean: true})
		pub.publish(t, "ret/a", "ret/a-0", 1, true)
		pub.publish(t, "ret/b", "ret/b-0", 0, true)
		pub.publish(t, "ret/gone", "ret/gone-0", 1, true)
		pub.publish(t, "ret/gone", "", 1, true) // clears it
		pub.disconnect()
		n.stop()

		n = startNode(t, dir, "127.0.0.1:0", store.SyncBatch)
		sub := dialV5(t, n.addr, "ret-sub", v5opts{clean: true})
		defer sub.disconnect()
		sub.subscribe(t, "ret/#", 1)
		got := sub.in.waitDistinct(t, 2, 5*time.Second)
		time.Sleep(100 * time.Millisecond)
		got = sub.in.snapshot()
		if len(got) != 2 {
			t.Fatalf("got %d retained messages after restart, want 2: %+v", len(got), got)
		}
		for _, r := range got {
			if r.topic != "ret/a" && r.topic != "ret/b" {
				t.Fatalf("unexpected retained message %+v", r)
			}
		}
	})

	t.Run("retained quota of the instance is enforced", func(t *testing.T) {
		n := startNode(t, t.TempDir(), "127.0.0.1:0", store.SyncNone)
		n.st.SetLimits(DefaultInstance, store.Limits{MaxRetained: 2})
		pub := dialV5(t, n.addr, "quota-pub", v5opts{clean: true})
		defer pub.disconnect()
		pub.publish(t, "q/1", "q/1-0", 1, true)
		pub.publish(t, "q/2", "q/2-0", 1, true)
		pub.publish(t, "q/2", "q/2-1", 1, true) // replacing always works
		ctx := t.Context()
		resp, err := pub.c.Publish(ctx, &paho.Publish{Topic: "q/3", QoS: 1, Retain: true, Payload: []byte("q/3-0")})
		if err == nil && (resp == nil || resp.ReasonCode < 0x80) {
			t.Fatalf("third retained topic accepted: %+v", resp)
		}
		if st := n.st.Stats(DefaultInstance); st.RetainedMessages != 2 {
			t.Fatalf("retained messages = %d, want 2", st.RetainedMessages)
		}
	})

	t.Run("a will with delay survives a restart", func(t *testing.T) {
		dir := t.TempDir()
		n := startNode(t, dir, "127.0.0.1:0", store.SyncBatch)
		willer := dialV5(t, n.addr, "willer", v5opts{clean: true, expiry: 3600,
			will: &paho.WillMessage{Topic: "wills/willer", QoS: 1, Payload: []byte("wills/willer-0")}, willDelay: 2})
		willer.c.TerminateConnectionForTest() // abnormal disconnect: the will is due in 2s
		waitFor(t, "willer offline", func() bool { return n.hook.sessionOfID("willer") == nil })
		n.stop()

		n = startNode(t, dir, "127.0.0.1:0", store.SyncBatch)
		sub := dialV5(t, n.addr, "will-sub", v5opts{clean: true})
		defer sub.disconnect()
		sub.subscribe(t, "wills/#", 1)
		start := time.Now()
		got := sub.in.waitDistinct(t, 1, 10*time.Second)
		if got[0].payload != "wills/willer-0" {
			t.Fatalf("got %+v, want the will", got[0])
		}
		t.Logf("will arrived %v after restart", time.Since(start))
	})

	t.Run("a normal disconnect discards the delayed will", func(t *testing.T) {
		n := startNode(t, t.TempDir(), "127.0.0.1:0", store.SyncNone)
		sub := dialV5(t, n.addr, "nowill-sub", v5opts{clean: true})
		defer sub.disconnect()
		sub.subscribe(t, "nowills/#", 1)
		willer := dialV5(t, n.addr, "nowiller", v5opts{clean: true, expiry: 3600,
			will: &paho.WillMessage{Topic: "nowills/x", QoS: 1, Payload: []byte("x")}, willDelay: 1})
		willer.disconnect()
		time.Sleep(1500 * time.Millisecond)
		if got := sub.in.snapshot(); len(got) != 0 {
			t.Fatalf("will published after a normal disconnect: %+v", got)
		}
	})

	t.Run("a persistent session resumes from its cursor after a restart", func(t *testing.T) {
		dir := t.TempDir()
		n := startNode(t, dir, "127.0.0.1:0", store.SyncBatch)
		sub := dialV3(t, n.addr, "restart-sub", false)
		sub.subscribe(t, "rs/+", 1)
		sub.disconnect()
		pub := dialV5(t, n.addr, "restart-pub", v5opts{clean: true})
		for i := 0; i < 50; i++ {
			pub.publish(t, "rs/x", fmt.Sprintf("rs/x-%d", i), 1, false)
		}
		pub.disconnect()
		n.stop()

		n = startNode(t, dir, "127.0.0.1:0", store.SyncBatch)
		pub = dialV5(t, n.addr, "restart-pub", v5opts{clean: true})
		defer pub.disconnect()
		for i := 50; i < 100; i++ {
			pub.publish(t, "rs/x", fmt.Sprintf("rs/x-%d", i), 1, false)
		}
		sub = dialV3(t, n.addr, "restart-sub", false)
		defer sub.disconnect()
		got := sub.in.waitDistinct(t, 100, 10*time.Second)
		checkSequence(t, got, []string{"rs/x"}, 100)
		v := dialV5(t, n.addr, "restart-v5", v5opts{clean: true, expiry: 3600})
		v.disconnect()
		n.stop()
		n = startNode(t, dir, "127.0.0.1:0", store.SyncBatch)
		v = dialV5(t, n.addr, "restart-v5", v5opts{expiry: 3600})
		defer v.disconnect()
		if !v.present {
			t.Fatal("CONNACK after restart: session present = false")
		}
	})
}
