package consume

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/nodelink"
)

// BenchmarkGroupRead: a consumer group drains 20,000 stored messages (256 B
// payloads) in batches of 1,000 with acks, on the node (no HTTP); reported
// as msg/s next to the store's own append rate of the same messages.
func BenchmarkGroupRead(b *testing.B) {
	ctx := context.Background()
	const n = 20000
	for range b.N {
		b.StopTimer()
		st, svc := setup(b, b.TempDir())
		payload := make([]byte, 256)
		t0 := time.Now()
		for i := 0; i < n; i += 500 {
			msgs := make([]store.Message, 500)
			for j := range msgs {
				msgs[j] = store.Message{Instance: "i1", Topic: fmt.Sprintf("i1/fleet/d%d/telemetry", (i+j)%100), QoS: 1, Payload: payload}
			}
			if _, err := st.Append(ctx, msgs); err != nil {
				b.Fatal(err)
			}
		}
		appendRate := n / time.Since(t0).Seconds()
		b.StartTimer()
		t1 := time.Now()
		got := 0
		for got < n {
			res, err := svc.Poll(ctx, "i1", nodelink.PollRequest{TopicID: "tp1", Group: "bench", Limit: 1000})
			if err != nil || len(res.Messages) == 0 {
				b.Fatalf("poll after %d: %v", got, err)
			}
			offs := make([]uint64, len(res.Messages))
			for k, m := range res.Messages {
				offs[k] = m.Offset
			}
			if _, err := svc.Ack(ctx, "i1", nodelink.AckRequest{TopicID: "tp1", Group: "bench", Offsets: offs}); err != nil {
				b.Fatal(err)
			}
			got += len(res.Messages)
		}
		readRate := float64(n) / time.Since(t1).Seconds()
		b.StopTimer()
		b.ReportMetric(readRate, "read-msg/s")
		b.ReportMetric(appendRate, "append-msg/s")
		b.ReportMetric(readRate/appendRate, "read/append")
		st.Close()
	}
}
