// Aerie: not part of upstream's tests (see AERIE-PATCHES.md, Tests).

package mqtt

import (
	"sync/atomic"
	"testing"
	"time"
)

// waitDrained waits, for at most five seconds, until the outbound queues of
// cls are empty: their write loops have written what was queued to them,
// and over a net.Pipe a write returns once the reader has taken the bytes,
// so the test may then close the pipe. Upstream's tests slept 0.1 to 10 ms
// instead, which a busy machine often misses: the pipe closed before the
// queued packet was written and the reader saw nothing. It may run in a
// goroutine other than the test's (it reports with t.Errorf).
func waitDrained(t *testing.T, cls ...*Client) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, cl := range cls {
		for atomic.LoadInt32(&cl.State.outboundQty) > 0 {
			if time.Now().After(deadline) {
				t.Errorf("client %s: %d packets still queued", cl.ID, atomic.LoadInt32(&cl.State.outboundQty))
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
}
