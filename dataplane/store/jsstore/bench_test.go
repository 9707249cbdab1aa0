package jsstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
)

// BenchmarkBackendsAppendRead compares the RocksDB store and the JetStream
// backend (single embedded server, sync_always) in the same run: 8
// concurrent publishers append 4000 QoS 1 messages of 256 B one per call
// (the gateway's pattern: one PUBLISH, one Append, PUBACK after it), then a
// reader pulls them all through a wildcard queue in pages of 256.
func BenchmarkBackendsAppendRead(b *testing.B) {
	const writers, perWriter, size = 8, 500, 256
	run := func(b *testing.B, be store.Backend) (appendRate, readRate float64) {
		ctx := context.Background()
		if err := be.SaveSession(ctx, store.Session{Instance: "bench", ClientID: "r", Expiry: store.NeverExpire}); err != nil {
			b.Fatal(err)
		}
		cur, err := be.Subscribe(ctx, "bench", "r", store.Subscription{Filter: "bench/#"})
		if err != nil {
			b.Fatal(err)
		}
		pay := make([]byte, size)
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				topic := fmt.Sprintf("bench/dev%d/temp", w)
				for range perWriter {
					if _, err := be.Append(ctx, []store.Message{{Instance: "bench", Topic: topic, QoS: 1, Payload: pay}}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		appendRate = writers * perWriter / time.Since(start).Seconds()
		start = time.Now()
		n, after := 0, cur
		for {
			ents, err := be.Pull(ctx, "bench", "bench/#", after, 256)
			if err != nil {
				b.Fatal(err)
			}
			if len(ents) == 0 {
				break
			}
			n += len(ents)
			after = ents[len(ents)-1].Offset
		}
		if n != writers*perWriter {
			b.Fatalf("read %d of %d messages", n, writers*perWriter)
		}
		return appendRate, float64(n) / time.Since(start).Seconds()
	}
	for range b.N {
		rs, err := store.Open(b.TempDir(), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		rocksApp, rocksRead := run(b, rs)
		rs.Close()
		js := openOn(b, startSingle(b), Options{})
		jsApp, jsRead := run(b, js)
		b.ReportMetric(rocksApp, "rocks_append_msg/s")
		b.ReportMetric(jsApp, "js_append_msg/s")
		b.ReportMetric(rocksRead, "rocks_read_msg/s")
		b.ReportMetric(jsRead, "js_read_msg/s")
		b.ReportMetric(jsApp/rocksApp, "js/rocks_append")
		b.ReportMetric(jsRead/rocksRead, "js/rocks_read")
	}
}
