package sessions

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/aeriemq/aerie/dataplane/store"
)

// resumeFails is a store whose Resume fails while fails > 0 (counting
// down), as a cell's does while it elects a leader.
type resumeFails struct {
	store.Backend
	fails atomic.Int32
}

func (r *resumeFails) Resume(ctx context.Context, inst, client string) (*store.Session, error) {
	if r.fails.Add(-1) >= 0 {
		return nil, errors.New("store unavailable (test)")
	}
	return r.Backend.Resume(ctx, inst, client)
}

// TestResumeFailure: a persistent session whose resume fails for a while
// is served once the store answers (the hook retries); one whose resume
// keeps failing past StoreRetry is disconnected (MQTT 5 DISCONNECT 0x88),
// never left connected without deliveries, and resumes with everything on
// reconnection.
func TestResumeFailure(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rf := &resumeFails{Backend: st}
	srv := mqtt.New(&mqtt.Options{Logger: quietLogger()})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	h := New(rf, srv, Options{ExpiryInterval: 100 * time.Millisecond, Logger: quietLogger(), StoreRetry: time.Second})
	if err := srv.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	if err := srv.AddListener(tcp); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(); _ = h.Stop(); time.Sleep(50 * time.Millisecond); _ = st.Close() })
	addr := tcp.Address()

	sub := dialV5(t, addr, "sub", v5opts{expiry: 3600})
	sub.subscribe(t, "r/#", 1)
	sub.disconnect()
	pub := dialV5(t, addr, "pub", v5opts{clean: true})
	pub.publish(t, "r/1", "while away", 1, false)

	t.Run("transient failures are retried", func(t *testing.T) {
		rf.fails.Store(3) // 3 × 200 ms, within StoreRetry
		c := dialV5(t, addr, "sub", v5opts{expiry: 3600})
		defer c.disconnect()
		if got := c.in.waitDistinct(t, 1, 5*time.Second); got[0].payload != "while away" {
			t.Fatalf("got %+v", got)
		}
	})
	pub.publish(t, "r/2", "second", 1, false)

	t.Run("a store that stays down ends the connection", func(t *testing.T) {
		rf.fails.Store(1 << 20)
		gone := make(chan *paho.Disconnect, 1)
		c := dialV5(t, addr, "sub", v5opts{expiry: 3600, onServerDisconnect: func(d *paho.Disconnect) { gone <- d }})
		select {
		case d := <-gone:
			if d.ReasonCode != 0x88 {
				t.Fatalf("DISCONNECT %#x, want 0x88 server unavailable", d.ReasonCode)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a session that could not be resumed stayed connected")
		}
		if n := len(c.in.snapshot()); n != 0 {
			t.Fatalf("%d messages delivered to a session that was not resumed", n)
		}
		rf.fails.Store(0)
		again := dialV5(t, addr, "sub", v5opts{expiry: 3600})
		defer again.disconnect()
		if got := again.in.waitDistinct(t, 1, 5*time.Second); got[len(got)-1].payload != "second" {
			t.Fatalf("after reconnecting: %+v", got)
		}
	})
}
