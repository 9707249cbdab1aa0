package tenancy

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// NodeStats is one data-plane node as operators watch it.
type NodeStats struct {
	ID, Name string
	Cell     string // the cell's name
	// Up: the node reported within the liveness window (placement uses it).
	Up bool
	// RevisionLag is how many config revisions meant for the node it has
	// not applied yet.
	RevisionLag int64
	Instances   int64 // of its cell
}

// CellStats is one cell as operators watch it.
type CellStats struct {
	Name           string
	Nodes, NodesUp int
	Status         string // CellHealthy, CellDegraded or CellDown
}

// OpsStats are the control plane's gauges for operators.
type OpsStats struct {
	Nodes []NodeStats // registered, unrevoked
	Cells []CellStats // by name
	// OutboxDepth is the number of config changes kept for nodes.
	OutboxDepth int64
}

// nodeLiveWindow is how recently a node must have reported to count as up:
// placement and requests skip older ones, read-your-writes waits do not
// wait for them, their cell is degraded (or down, and its instances show
// as unavailable).
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
	rows, err := s.db.Query(ctx, `SELECT n.id, n.name, c.name, COALESCE(n.last_seen_at > $1, false),
		GREATEST(0, COALESCE((SELECT max(o.revision) FROM config_outbox o WHERE o.cell_id = n.cell_id), 0) - n.applied_revision),
		(SELECT count(*) FROM instances i WHERE i.cell_id = n.cell_id)
		FROM nodes n JOIN cells c ON c.id = n.cell_id WHERE n.revoked_at IS NULL ORDER BY n.name`, s.liveSince())
	if err != nil {
		return st, fmt.Errorf("ops stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n NodeStats
		if err := rows.Scan(&n.ID, &n.Name, &n.Cell, &n.Up, &n.RevisionLag, &n.Instances); err != nil {
			return st, fmt.Errorf("ops stats: %w", err)
		}
		st.Nodes = append(st.Nodes, n)
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("ops stats: %w", err)
	}
	st.Cells = cellStats(st.Nodes)
	return st, nil
}

// cellStats counts the nodes of each cell (cells without nodes are left
// out).
func cellStats(nodes []NodeStats) []CellStats {
	by := map[string]int{} // index in out
	var out []CellStats
	for _, n := range nodes {
		i, ok := by[n.Cell]
		if !ok {
			i = len(out)
			by[n.Cell] = i
			out = append(out, CellStats{Name: n.Cell})
		}
		out[i].Nodes++
		if n.Up {
			out[i].NodesUp++
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	for i := range out {
		out[i].Status = cellStatus(out[i].NodesUp, out[i].Nodes)
	}
	return out
}
