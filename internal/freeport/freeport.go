// Package freeport hands tests loopback TCP ports for servers they start
// later (another process, or an in-process server whose peers dial it
// before it listens).
//
// The ports come from below the kernel's ephemeral range (32768 and up on
// Linux), and each is handed out once per process. A port chosen by
// listening on ":0" and closing is itself ephemeral: the kernel can give it
// again to the next ":0" listener or as the source port of an outgoing
// connection (a NATS route dialling a peer) before the server under test
// listens on it, and that server then fails to start. That happened: a
// cell node's NATS port was handed out again as another node's MQTT port.
package freeport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// low and high bound the ports handed out: [low, high).
const (
	low  = 20000
	high = 32768
)

var handed = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Ports returns n distinct loopback ports that were free a moment ago and
// were never handed out before in this process.
func Ports(t testing.TB, n int) []int {
	t.Helper()
	handed.Lock()
	defer handed.Unlock()
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 20*(high-low) {
			t.Fatalf("freeport: no free loopback port in %d-%d", low, high-1)
		}
		p := low + rand.IntN(high-low)
		if handed.ports[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // in use
		}
		ln.Close()
		handed.ports[p] = true
		out = append(out, p)
	}
	return out
}

// Addrs is Ports as "127.0.0.1:port" addresses.
func Addrs(t testing.TB, n int) []string {
	t.Helper()
	ps := Ports(t, n)
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	return out
}
