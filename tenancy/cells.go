package tenancy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/nodelink"
)

// Cell health, from its nodes' heartbeats.
const (
	CellHealthy  = "healthy"  // every node up
	CellDegraded = "degraded" // some nodes down, at least one up
	CellDown     = "down"     // no node up
)

// Node statuses.
const (
	NodeUp   = "up"
	NodeDown = "down"
)

// Cell is a set of data-plane nodes serving the same instances: every
// node of the cell gets the config of every instance placed on it.
type Cell struct {
	ID   string
	Name string
	// Endpoints is the operator's override ("mqtt" → URL: a DNS name or
	// load balancer in front of the nodes); empty when not set.
	Endpoints map[string]string
	CreatedAt time.Time
	Nodes     int
	NodesUp   int
	Instances int
	Status    string // CellHealthy, CellDegraded or CellDown
}

// CellNode is one node of a cell as an instance shows it.
type CellNode struct {
	ID, Name        string
	Up              bool
	Endpoints       map[string]string
	AppliedRevision int64
	LastSeenAt      *time.Time
}

// CellInfo is the cell an instance is placed on: its status and every
// node with its endpoints (live nodes first, then by name).
type CellInfo struct {
	ID, Name  string
	Status    string
	Override  map[string]string
	Nodes     []CellNode
	LastSeen  *time.Time // the freshest heartbeat of its nodes
	minLive   int64      // the lowest applied revision of its live nodes
	anyLive   bool
	maxRevAll int64
}

// CellMismatchError: a node said it was started as a member of a cell other
// than the one it is registered in. It is refused, never re-homed; it is
// ErrConflict.
type CellMismatchError struct {
	NodeID, Stated, Registered string
}

func (e *CellMismatchError) Error() string {
	return fmt.Sprintf("node %s was started with --cell %s but is registered in cell %s; refused (restart it with --cell %s, or register a new node in %s)",
		e.NodeID, e.Stated, e.Registered, e.Registered, e.Stated)
}

// Unwrap makes the error ErrConflict and nodelink.ErrAckRefused.
func (e *CellMismatchError) Unwrap() []error { return []error{ErrConflict, nodelink.ErrAckRefused} }

// cellStatus is the health of a cell of total nodes, up of them up.
func cellStatus(up, total int) string {
	switch {
	case up == 0:
		return CellDown
	case up < total:
		return CellDegraded
	}
	return CellHealthy
}

// cellNamePattern is what a cell named explicitly (node create --cell,
// dataplane --cell) must match: it also names the cell's NATS cluster. A
// node's own implicit cell (named after the node) is exempt: it is never
// clustered.
var cellNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func checkCellName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return "", invalid("cell", "must be 1 to 100 characters")
	}
	return name, nil
}

// ensureCell returns the ID of the cell named name, creating it when
// missing; created reports whether it did.
func (s *Service) ensureCell(ctx context.Context, q querier, name string) (id string, created bool, err error) {
	err = q.QueryRow(ctx, `INSERT INTO cells (id, name, created_at) VALUES ($1,$2,$3) ON CONFLICT (name) DO NOTHING RETURNING id`,
		"c-"+randomToken(8), name, s.nowUTC()).Scan(&id)
	if err == nil {
		return id, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return "", false, fmt.Errorf("create cell: %w", err)
	}
	if err := q.QueryRow(ctx, `SELECT id FROM cells WHERE name = $1`, name).Scan(&id); err != nil {
		return "", false, fmt.Errorf("find cell %s: %w", name, err)
	}
	return id, false, nil
}

// liveSince is the heartbeat time after which a node counts as up.
func (s *Service) liveSince() time.Time { return s.now().Add(-s.nodeLiveWindow()) }

// ListCells lists every cell with its node counts, health and instances.
func (s *Service) ListCells(ctx context.Context) ([]Cell, error) {
	rows, err := s.db.Query(ctx, `SELECT c.id, c.name, c.endpoints, c.created_at,
		(SELECT count(*) FROM nodes n WHERE n.cell_id = c.id AND n.revoked_at IS NULL),
		(SELECT count(*) FROM nodes n WHERE n.cell_id = c.id AND n.revoked_at IS NULL AND n.last_seen_at > $1),
		(SELECT count(*) FROM instances i WHERE i.cell_id = c.id)
		FROM cells c ORDER BY c.name`, s.liveSince())
	if err != nil {
		return nil, fmt.Errorf("list cells: %w", err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Cell, error) {
		var c Cell
		var eps []byte
		if err := r.Scan(&c.ID, &c.Name, &eps, &c.CreatedAt, &c.Nodes, &c.NodesUp, &c.Instances); err != nil {
			return Cell{}, err
		}
		c.Endpoints = map[string]string{}
		_ = json.Unmarshal(eps, &c.Endpoints)
		c.Status = cellStatus(c.NodesUp, c.Nodes)
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list cells: %w", err)
	}
	return cs, nil
}

// endpointKinds are the endpoint names an instance shows.
var endpointKinds = map[string]string{"mqtt": "mqtt", "mqtts": "mqtts", "ws": "ws", "wss": "wss"}

// SetCellEndpoints sets the operator's endpoints of the cell named name
// (kind → URL, kinds mqtt, mqtts, ws, wss; a bare host:port takes the
// kind as its scheme). Instances of the cell show them instead of their
// nodes' own. An empty map clears the override.
func (s *Service) SetCellEndpoints(ctx context.Context, name string, eps map[string]string) (map[string]string, error) {
	clean := make(map[string]string, len(eps))
	for k, v := range eps {
		scheme, ok := endpointKinds[k]
		if !ok {
			return nil, invalid(k, "is not an endpoint kind (mqtt, mqtts, ws, wss)")
		}
		if !strings.Contains(v, "://") {
			v = scheme + "://" + v
		}
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			return nil, invalid(k, "must be host:port or a URL")
		}
		clean[k] = v
	}
	b, _ := json.Marshal(clean)
	tag, err := s.db.Exec(ctx, `UPDATE cells SET endpoints = $2 WHERE name = $1`, name, b)
	if err != nil {
		return nil, fmt.Errorf("set cell endpoints: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil, fmt.Errorf("cell %s: %w", name, ErrNotFound)
	}
	return clean, nil
}

// pickCell chooses the cell with a live node and the fewest instances
// (ties by name), and its live node with the freshest heartbeat (the
// instance's preferred node).
func (s *Service) pickCell(ctx context.Context, q querier) (cellID, nodeID string, err error) {
	err = q.QueryRow(ctx, `SELECT c.id, (SELECT n.id FROM nodes n WHERE n.cell_id = c.id AND n.revoked_at IS NULL
			AND n.last_seen_at > $1 ORDER BY n.last_seen_at DESC, n.id LIMIT 1) AS node
		FROM cells c WHERE EXISTS (SELECT 1 FROM nodes n WHERE n.cell_id = c.id AND n.revoked_at IS NULL AND n.last_seen_at > $1)
		ORDER BY (SELECT count(*) FROM instances i WHERE i.cell_id = c.id), c.name LIMIT 1`, s.liveSince()).Scan(&cellID, &nodeID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", ErrNoNode
	}
	if err != nil {
		return "", "", fmt.Errorf("pick cell: %w", err)
	}
	return cellID, nodeID, nil
}

// InstanceNodes returns the live nodes of the instance's cell, freshest
// heartbeat first: where the control plane sends requests about the
// instance (nodelink.Router). Empty when the instance is unknown or its
// cell has no live node.
func (s *Service) InstanceNodes(ctx context.Context, instanceID string) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT n.id FROM instances i JOIN nodes n ON n.cell_id = i.cell_id
		WHERE i.id = $1 AND n.revoked_at IS NULL AND n.last_seen_at > $2 ORDER BY n.last_seen_at DESC, n.id`, instanceID, s.liveSince())
	if err != nil {
		return nil, fmt.Errorf("instance nodes: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("instance nodes: %w", err)
	}
	return ids, nil
}

// cellInfos loads the cells with these IDs and their unrevoked nodes.
func (s *Service) cellInfos(ctx context.Context, q querier, ids []string) (map[string]*CellInfo, error) {
	out := map[string]*CellInfo{}
	rows, err := q.Query(ctx, `SELECT c.id, c.name, c.endpoints, n.id, n.name, n.endpoints, n.applied_revision, n.last_seen_at
		FROM cells c LEFT JOIN nodes n ON n.cell_id = c.id AND n.revoked_at IS NULL WHERE c.id = ANY($1) ORDER BY c.id, n.name`, ids)
	if err != nil {
		return nil, fmt.Errorf("cells: %w", err)
	}
	defer rows.Close()
	since := s.liveSince()
	for rows.Next() {
		var cid, cname string
		var ceps, neps []byte
		var nid, nname *string
		var applied *int64
		var seen *time.Time
		if err := rows.Scan(&cid, &cname, &ceps, &nid, &nname, &neps, &applied, &seen); err != nil {
			return nil, fmt.Errorf("cells: %w", err)
		}
		c := out[cid]
		if c == nil {
			c = &CellInfo{ID: cid, Name: cname, Override: map[string]string{}}
			_ = json.Unmarshal(ceps, &c.Override)
			out[cid] = c
		}
		if nid == nil {
			continue
		}
		n := CellNode{ID: *nid, Name: *nname, AppliedRevision: *applied, LastSeenAt: seen, Endpoints: map[string]string{},
			Up: seen != nil && seen.After(since)}
		_ = json.Unmarshal(neps, &n.Endpoints)
		c.add(n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cells: %w", err)
	}
	for _, c := range out {
		c.finish()
	}
	return out, nil
}

func (c *CellInfo) add(n CellNode) {
	c.Nodes = append(c.Nodes, n)
	if n.LastSeenAt != nil && (c.LastSeen == nil || n.LastSeenAt.After(*c.LastSeen)) {
		c.LastSeen = n.LastSeenAt
	}
	c.maxRevAll = max(c.maxRevAll, n.AppliedRevision)
	if n.Up {
		if !c.anyLive || n.AppliedRevision < c.minLive {
			c.minLive = n.AppliedRevision
		}
		c.anyLive = true
	}
}

// finish orders the nodes (live first, then by name) and sets the status.
func (c *CellInfo) finish() {
	sort.SliceStable(c.Nodes, func(i, j int) bool { return c.Nodes[i].Up && !c.Nodes[j].Up })
	up := 0
	for _, n := range c.Nodes {
		if n.Up {
			up++
		}
	}
	c.Status = cellStatus(up, len(c.Nodes))
}

// Endpoints is where devices connect: the operator's override when set,
// else the first live node's endpoints (the first node's when none is up).
func (c *CellInfo) Endpoints() map[string]string {
	if len(c.Override) > 0 {
		return c.Override
	}
	if len(c.Nodes) > 0 {
		return c.Nodes[0].Endpoints
	}
	return map[string]string{}
}

// AppliedRevision is what every live node of the cell has applied (the
// lowest of them), or the highest of any node when none is up.
func (c *CellInfo) AppliedRevision() int64 {
	if c.anyLive {
		return c.minLive
	}
	return c.maxRevAll
}
