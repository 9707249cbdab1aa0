package tenancy

import (
	"context"
	"fmt"
	"time"
)

// NodeStats is one data-plane node as operators watch it.
type NodeStats struct {
	ID, Name string
	// Up: the node reported within the liveness window (placement uses it).
	Up bool
	// RevisionLag is how many config revisions meant for the node it has
	// not applied yet.
	RevisionLag int64
	Instances   int64
}

// OpsStats are the control plane's gauges for operators.
type OpsStats struct {
	Nodes []NodeStats // registered, unrevoked
	// OutboxDepth is the number of config changes kept for nodes.
	OutboxDepth int64
}

// nodeLiveWindow is how recently a node must have reported to count as up:
// placement skips older ones and their instances show as unavailable.
func (s *Service) nodeLiveWindow() time.Duration {
	if s.liveWindow > 0 {
		return s.liveWindow
	}
	return nodeLiveWindow
}

// OpsStats reads the operator gauges in one round trip.
func (s *Service) OpsStats(ctx context.Context) (OpsStats, error) {
	var st OpsStats
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM config_outbox`).Scan(&st.OutboxDepth); err != nil {
		return st, fmt.Errorf("ops stats: %w", err)
	}
	rows, err := s.db.Query(ctx, `SELECT n.id, n.name, COALESCE(n.last_seen_at > $1, false),
		GREATEST(0, COALESCE((SELECT max(o.revision) FROM config_outbox o WHERE o.node_id = n.id), 0) - n.applied_revision),
		(SELECT count(*) FROM instances i WHERE i.node_id = n.id)
		FROM nodes n WHERE n.revoked_at IS NULL ORDER BY n.name`, s.now().Add(-s.nodeLiveWindow()))
	if err != nil {
		return st, fmt.Errorf("ops stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n NodeStats
		if err := rows.Scan(&n.ID, &n.Name, &n.Up, &n.RevisionLag, &n.Instances); err != nil {
			return st, fmt.Errorf("ops stats: %w", err)
		}
		st.Nodes = append(st.Nodes, n)
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("ops stats: %w", err)
	}
	return st, nil
}
