package sessions

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/store"
)

func heapAlloc() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// BenchmarkWriteAmplification compares, for N offline persistent
// subscribers of fleet/+/telemetry and one QoS1 publisher of 100 B
// messages, what one message costs:
//
//   - aerie: bytes written to RocksDB per message (store IO counters) and
//     Go heap retained per message, with the sessions hook;
//   - mochi: Go heap retained per message by plain mochi, which keeps an
//     in-flight copy per offline persistent session.
//
// Offline sessions are set up directly: in the store (SaveSession +
// Subscribe + Disconnect, the records the hook writes) and in mochi (a
// disconnected client with its subscription, what mochi keeps after a
// cleanSession=false client leaves).
//
//	go test ./dataplane/sessions -run '^$' -bench WriteAmplification -benchtime=1x
func BenchmarkWriteAmplification(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 100)
	for _, subs := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("aerie/subs=%d", subs), func(b *testing.B) {
			n := startNode(b, b.TempDir(), "127.0.0.1:0", store.SyncNone)
			ctx := context.Background()
			for i := 0; i < subs; i++ {
				id := fmt.Sprintf("sub-%d", i)
				if err := n.st.SaveSession(ctx, store.Session{Instance: DefaultInstance, ClientID: id, ProtocolVersion: 4, Expiry: store.NeverExpire}); err != nil {
					b.Fatal(err)
				}
				if _, err := n.st.Subscribe(ctx, DefaultInstance, id, store.Subscription{Filter: "fleet/+/telemetry", QoS: 1}); err != nil {
					b.Fatal(err)
				}
				if err := n.st.Disconnect(ctx, DefaultInstance, id, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			pub := dialV5(b, n.addr, "publisher", v5opts{clean: true})
			defer pub.disconnect()
			const msgs = 1000
			for i := 0; i < 50; i++ { // warm up: one-time allocations are not per message
				pub.publishBytes(b, fmt.Sprintf("fleet/d%d/telemetry", i), payload)
			}
			heap0, io0 := heapAlloc(), n.st.IO()
			b.ResetTimer()
			for range b.N {
				for i := 0; i < msgs; i++ {
					pub.publishBytes(b, fmt.Sprintf("fleet/d%d/telemetry", i%50), payload)
				}
			}
			b.StopTimer()
			io1, heap1 := n.st.IO(), heapAlloc()
			total := float64(b.N * msgs)
			perMsg := float64(io1.BytesWritten-io0.BytesWritten) / total
			b.ReportMetric(perMsg, "store-B/msg")
			b.ReportMetric(perMsg/float64(subs), "store-B/msg/sub")
			b.ReportMetric(float64(heap1-heap0)/total, "heap-B/msg")
		})
		b.Run(fmt.Sprintf("mochi/subs=%d", subs), func(b *testing.B) {
			srv := mqtt.New(&mqtt.Options{Logger: quietLogger()})
			if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
				b.Fatal(err)
			}
			tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
			if err := srv.AddListener(tcp); err != nil {
				b.Fatal(err)
			}
			if err := srv.Serve(); err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			for i := 0; i < subs; i++ {
				cl := srv.NewClient(nil, "tcp", fmt.Sprintf("sub-%d", i), false)
				cl.Properties.ProtocolVersion = 4
				sub := packets.Subscription{Filter: "fleet/+/telemetry", Qos: 1}
				srv.Topics.Subscribe(cl.ID, sub)
				cl.State.Subscriptions.Add(sub.Filter, sub)
				cl.Stop(nil) // disconnected, session kept
				srv.Clients.Add(cl)
			}
			pub := dialV5(b, tcp.Address(), "publisher", v5opts{clean: true})
			defer pub.disconnect()
			// Bound the copies held (msgs × subs) to keep memory reasonable.
			msgs := min(1000, max(10, 100000/subs))
			for i := 0; i < 5; i++ { // warm up
				pub.publishBytes(b, fmt.Sprintf("fleet/d%d/telemetry", i), payload)
			}
			for want, deadline := int64(5*subs), time.Now().Add(30*time.Second); atomic.LoadInt64(&srv.Info.Inflight) < want; {
				if time.Now().After(deadline) {
					b.Fatalf("mochi holds %d in-flight copies, want %d", atomic.LoadInt64(&srv.Info.Inflight), want)
				}
				time.Sleep(10 * time.Millisecond)
			}
			heap0 := heapAlloc()
			inflight0 := atomic.LoadInt64(&srv.Info.Inflight)
			b.ResetTimer()
			for range b.N {
				for i := 0; i < msgs; i++ {
					pub.publishBytes(b, fmt.Sprintf("fleet/d%d/telemetry", i%50), payload)
				}
			}
			want := inflight0 + int64(b.N*msgs*subs)
			for deadline := time.Now().Add(30 * time.Second); atomic.LoadInt64(&srv.Info.Inflight) < want; {
				if time.Now().After(deadline) {
					b.Fatalf("mochi holds %d in-flight copies, want %d", atomic.LoadInt64(&srv.Info.Inflight), want)
				}
				time.Sleep(10 * time.Millisecond)
			}
			b.StopTimer()
			heap1 := heapAlloc()
			total := float64(b.N * msgs)
			b.ReportMetric(float64(heap1-heap0)/total, "heap-B/msg")
			b.ReportMetric(float64(heap1-heap0)/total/float64(subs), "heap-B/msg/sub")
			b.ReportMetric(float64(atomic.LoadInt64(&srv.Info.Inflight)-inflight0)/total, "inflight-copies/msg")
		})
	}
}
