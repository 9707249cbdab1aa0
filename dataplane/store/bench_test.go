package store

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const benchPayload = 100

// subscribeOffline creates n persistent sessions (offline) on filter.
func subscribeOffline(b *testing.B, f *fixture, inst, filter string, n int) {
	b.Helper()
	for k := range n {
		f.session(inst, fmt.Sprintf("dev-%05d", k), filter)
	}
}

// publishWindow appends total messages from one publisher that keeps
// window QoS1 publishes in flight (as a client with receive maximum does),
// each durable before its PUBACK.
func publishWindow(b *testing.B, f *fixture, inst string, total, window int) {
	b.Helper()
	payload := make([]byte, benchPayload)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range window {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1) - 1
				if k >= int64(total) {
					return
				}
				topic := fmt.Sprintf("fleet/truck-%04d/telemetry", k%1000)
				if _, err := f.s.Append(f.ctx, []Message{{Instance: inst, Topic: topic, QoS: 1, Payload: payload}}); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatalf("Append: %v", err)
	}
}

// BenchmarkStorageAmplification: one publisher (32 QoS1 publishes in
// flight, and the worst case of 1, i.e. one message per commit; default
// sync=batch), N offline persistent subscribers on fleet/+/telemetry. Bytes handed to RocksDB per message
// (WriteBatch bytes: log record + index entries + counters) must not grow
// with N; goal ≤ payload + 200 B.
func BenchmarkStorageAmplification(b *testing.B) {
	for _, c := range []struct{ n, window int }{{1, 32}, {100, 32}, {10000, 32}, {10000, 1}} {
		n := c.n
		b.Run(fmt.Sprintf("subscribers=%d/window=%d", n, c.window), func(b *testing.B) {
			f := newFixture(b, Options{Sync: SyncBatch, SyncDelay: time.Millisecond})
			subscribeOffline(b, f, "inst-0001", "fleet/+/telemetry", n)
			const msgs = 2000
			b.ResetTimer()
			var bytes, commits uint64
			for range b.N {
				before := f.s.IO()
				publishWindow(b, f, "inst-0001", msgs, c.window)
				bytes += f.s.IO().BytesWritten - before.BytesWritten
				commits += f.s.IO().Commits - before.Commits
			}
			b.StopTimer()
			perMsg := float64(bytes) / float64(msgs*b.N)
			b.ReportMetric(perMsg, "bytes/msg")
			b.ReportMetric(perMsg-benchPayload, "overhead-bytes/msg")
			b.ReportMetric(float64(msgs*b.N)/float64(commits), "msgs/commit")
			if q := f.lqKeys("inst-0001", "fleet/+/telemetry"); q != msgs*b.N {
				b.Fatalf("wildcard queue has %d entries, want %d (one per message, not per subscriber)", q, msgs*b.N)
			}
		})
	}
}

// BenchmarkDurablePublish: durable QoS1 publish throughput, 100 B payloads,
// --store-sync=batch, many concurrent appenders sharing group commits.
func BenchmarkDurablePublish(b *testing.B) {
	for _, pol := range []SyncPolicy{SyncBatch, SyncAlways} {
		b.Run("sync="+pol.String(), func(b *testing.B) {
			f := newFixture(b, Options{Sync: pol, SyncDelay: time.Millisecond})
			f.session("inst-0001", "reader", "fleet/+/telemetry")
			const msgs = 100000
			c0 := f.s.IO().Commits
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				publishWindow(b, f, "inst-0001", msgs, 512)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(msgs*b.N)/el.Seconds(), "msg/s")
			b.ReportMetric(float64(msgs*b.N)/float64(f.s.IO().Commits-c0), "msgs/commit")
		})
	}
}

// BenchmarkBroadcast: one message to 10,000 online persistent sessions that
// pull through the tail cache and ack. Reports store reads per message and
// the p99 latency of PullSession.
func BenchmarkBroadcast(b *testing.B) {
	const sessions = 10000
	const msgs = 10
	f := newFixture(b, Options{Sync: SyncNone})
	subscribeOffline(b, f, "inst-0001", "fleet/+/telemetry", sessions)
	clients := make([]string, sessions)
	for k := range sessions {
		clients[k] = fmt.Sprintf("dev-%05d", k)
		if _, err := f.s.Resume(f.ctx, "inst-0001", clients[k]); err != nil {
			b.Fatal(err)
		}
	}
	payload := make([]byte, benchPayload)
	lat := make([]time.Duration, 0, sessions*msgs)
	b.ResetTimer()
	reads0 := f.s.IO().StoreReads
	for range b.N {
		for range msgs {
			if _, err := f.s.Append(f.ctx, []Message{{Instance: "inst-0001", Topic: "fleet/truck-1/telemetry", QoS: 1, Payload: payload}}); err != nil {
				b.Fatal(err)
			}
			<-f.s.Events()
			for _, ev := range f.s.TakeEvents() {
				for _, c := range f.s.SessionsOn(ev.Instance, ev.Queue) {
					t0 := time.Now()
					ents, err := f.s.PullSession(f.ctx, ev.Instance, c, ev.Queue, 16)
					lat = append(lat, time.Since(t0))
					if err != nil || len(ents) != 1 {
						b.Fatalf("session %s pulled %d entries: %v", c, len(ents), err)
					}
					if _, err := f.s.Ack(f.ctx, ev.Instance, c, ev.Queue, ents[0].Offset); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(f.s.IO().StoreReads-reads0)/float64(msgs*b.N), "store-reads/msg")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-pull-µs")
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "p50-pull-µs")
}
