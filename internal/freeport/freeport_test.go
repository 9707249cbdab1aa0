package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPortsDistinctBelowEphemeral: ports are distinct across calls, below
// the ephemeral range, and can be listened on.
func TestPortsDistinctBelowEphemeral(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		for _, p := range Ports(t, 4) {
			if p < low || p >= high {
				t.Fatalf("port %d outside [%d, %d)", p, low, high)
			}
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
		}
	}
	a := Addrs(t, 1)[0]
	ln, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("listen on handed-out %s: %v", a, err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(a)
	if p, _ := strconv.Atoi(port); seen[p] {
		t.Fatalf("Addrs repeated port %d", p)
	}
}
