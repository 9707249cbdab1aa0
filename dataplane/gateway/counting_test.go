package gateway

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/store"
)

// TestPublisherGoneBeforeAckIsCounted (issue 14): QoS 1 messages a
// publisher sent just before closing its connection are stored and
// delivered (from the store) although their PUBACKs can no longer be
// written; each is counted in exactly once, so messages in and out agree.
func TestPublisherGoneBeforeAckIsCounted(t *testing.T) {
	gw := storeNodeWith(t, config.Quotas{}, store.Options{})
	var got atomic.Int64
	sub, err := dial3(gw.MQTTAddr(), "gone-sub", true, func([]byte) { got.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Disconnect(0)
	if tok := sub.Subscribe("gone/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("subscribe")
	}
	const n = 500
	nc, err := dialRawV311(gw.MQTTAddr(), "gone-pub")
	if err != nil {
		t.Fatal(err)
	}
	var burst []byte
	for i := range n {
		pk := rawPublish("gone/t", 10)
		id := uint16(i%60000 + 1)
		pk[len(pk)-10-2], pk[len(pk)-10-1] = byte(id>>8), byte(id)
		burst = append(burst, pk...)
	}
	if _, err := nc.Write(burst); err != nil {
		t.Fatal(err)
	}
	nc.Close() // gone before most PUBACKs
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for last := int64(-1); ; {
		select {
		case <-ctx.Done():
			t.Fatal("deliveries did not settle")
		case <-time.After(time.Second):
		}
		if g := got.Load(); g == last {
			break
		} else {
			last = g
		}
	}
	in, out, _ := nodeUsage(gw, "i-flow")
	t.Logf("%d delivered; node counted %d in, %d out", got.Load(), in, out)
	if in != got.Load() || out != got.Load() {
		t.Fatalf("node counted %d in and %d out for %d delivered", in, out, got.Load())
	}
}
