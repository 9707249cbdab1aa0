package gateway

import (
	"testing"

	"github.com/aeriemq/aerie/dataplane/config"
)

func TestCellShare(t *testing.T) {
	q := config.Quotas{MaxConnectsPerSecond: 10, MaxPublishPerSecond: 100, MaxBytesPerSecond: 1000, MaxConnections: 50, MaxPublishPerSecondPerClient: 7}
	for _, tc := range []struct {
		name                   string
		q                      config.Quotas
		nodes                  int
		connects, publish      int
		bytes                  int64
		connections, perClient int
	}{
		{"not in a cell", q, 0, 10, 100, 1000, 50, 7},
		{"one node", q, 1, 10, 100, 1000, 50, 7},
		{"three nodes round down", q, 3, 3, 33, 333, 50, 7},
		{"two nodes", q, 2, 5, 50, 500, 50, 7},
		{"more nodes than the rate", config.Quotas{MaxConnectsPerSecond: 2}, 5, 1, 0, 0, 0, 0},
		{"unlimited stays unlimited", config.Quotas{}, 3, 0, 0, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := cellShare(tc.q, tc.nodes)
			if got.MaxConnectsPerSecond != tc.connects || got.MaxPublishPerSecond != tc.publish || got.MaxBytesPerSecond != tc.bytes {
				t.Fatalf("rates = %d/%d/%d, want %d/%d/%d", got.MaxConnectsPerSecond, got.MaxPublishPerSecond, got.MaxBytesPerSecond, tc.connects, tc.publish, tc.bytes)
			}
			if got.MaxConnections != tc.connections || got.MaxPublishPerSecondPerClient != tc.perClient {
				t.Fatalf("connections %d, per client %d: must not be divided", got.MaxConnections, got.MaxPublishPerSecondPerClient)
			}
		})
	}
}

// TestCellShareNeverExceeds: whenever a rate is at least the node count,
// the live nodes' shares add up to at most the quota.
func TestCellShareNeverExceeds(t *testing.T) {
	for n := 2; n <= 7; n++ {
		for v := n; v <= 1000; v++ {
			got := cellShare(config.Quotas{MaxConnectsPerSecond: v, MaxPublishPerSecond: v, MaxBytesPerSecond: int64(v)}, n)
			if got.MaxConnectsPerSecond*n > v || got.MaxPublishPerSecond*n > v || got.MaxBytesPerSecond*int64(n) > int64(v) {
				t.Fatalf("%d nodes, rate %d: shares %d add up to more", n, v, got.MaxConnectsPerSecond)
			}
			if got.MaxConnectsPerSecond < 1 {
				t.Fatalf("%d nodes, rate %d: share %d (0 would be unlimited)", n, v, got.MaxConnectsPerSecond)
			}
		}
	}
}
