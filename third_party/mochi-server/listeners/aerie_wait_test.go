// Aerie: not part of upstream's tests (see AERIE-PATCHES.md, Tests).

package listeners

import (
	"net"
	"testing"
	"time"
)

// waitListening waits until addr accepts TCP connections, for at most five
// seconds. The HTTP listeners bind in Serve, not Init, and upstream's tests
// gave Serve's goroutine 1 ms to do it, which a busy machine often misses:
// the request was refused, and the listener the failed test left open made
// the following tests fail to bind.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "localhost"+addr, 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not listening: %v", addr, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
