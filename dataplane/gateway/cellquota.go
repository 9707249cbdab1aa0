package gateway

import (
	"context"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
)

// Quotas in a cell. The nodes of a cell serve the same instances, so an
// instance's quotas hold for the cell, not for each node:
//
//   - max_connections is coordinated: a node admits a connection when its
//     own count plus the other live nodes' last published counts
//     (store.Cell PeerConnections, published every cellLoadInterval) stay
//     within the quota. It is exact up to the connections the other nodes
//     admitted since their last publication (at most one interval's).
//   - the instance-wide rates (max_connects_per_second,
//     max_publish_per_second, max_bytes_per_second) are divided between
//     the cell's live nodes, rounding down (cellShare): the sum never
//     exceeds the quota (unless the quota is below the node count);
//     a load skewed onto one node gets its share only (a device's
//     per-client rate is whole: a client is on one node). The shares follow
//     the live-node count as nodes come and go.

// cellLoadInterval is how often a node publishes its connection counts.
const cellLoadInterval = time.Second

// cellShare divides q's instance-wide rates between n live nodes,
// rounding down so that the shares never add up to more than the quota
// (Free's 10 connects/s on 3 nodes: 3 each, 9 in all). A rate below the
// node count still gets 1 per node (it cannot be 0, which is unlimited):
// only then can the cell's total exceed it, by at most n-1. 0 stays
// unlimited.
func cellShare(q config.Quotas, n int) config.Quotas {
	if n <= 1 {
		return q
	}
	div := func(v int) int {
		if v <= 0 {
			return v
		}
		return max(1, v/n)
	}
	q.MaxConnectsPerSecond = div(q.MaxConnectsPerSecond)
	q.MaxPublishPerSecond = div(q.MaxPublishPerSecond)
	if q.MaxBytesPerSecond > 0 {
		q.MaxBytesPerSecond = int64(div(int(q.MaxBytesPerSecond)))
	}
	return q
}

// peerConnections is the instance's connections on the cell's other nodes.
func (h *tenantHook) peerConnections(instance string) int64 {
	if h.cell == nil {
		return 0
	}
	return int64(h.cell.PeerConnections(instance))
}

// cellLoad publishes this node's connection count per instance to the
// cell and re-applies the rate shares when the live-node count changes.
func (h *tenantHook) cellLoad(ctx context.Context) {
	t := time.NewTicker(cellLoadInterval)
	defer t.Stop()
	for {
		counts := map[string]int{}
		for _, id := range h.limits.ids() {
			if l := h.limits.get(id); l != nil {
				if n := l.conns.Load(); n > 0 {
					counts[id] = int(n)
				}
			}
		}
		h.cell.SetConnections(counts)
		if n := int32(h.cell.LiveNodes()); n != h.limits.nodes.Swap(n) {
			h.refreshQuotas("")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
