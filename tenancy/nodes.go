package tenancy

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/nodelink"
)

// Node is a registered data-plane node.
type Node struct {
	ID              string
	Name            string
	CellID          string
	Cell            string // the cell's name
	Up              bool   // reported within the liveness window
	Endpoints       map[string]string
	Connections     int64
	Instances       int
	AppliedRevision int64
	CreatedAt       time.Time
	LastSeenAt      *time.Time
}

// nodeLiveWindow: a node seen within it counts as up (placement, requests,
// read-your-writes waits, cell health); nodes report every 5 s.
const nodeLiveWindow = 15 * time.Second

// ErrNoNode: no live data-plane node can take a new instance.
var ErrNoNode = errors.New("no data-plane node is available")

// CreateNode registers a node in a cell of its own, named after it, and
// returns its token (aen_<id>_<secret>), shown once and stored as SHA-256.
func (s *Service) CreateNode(ctx context.Context, name string) (Node, string, error) {
	return s.CreateNodeInCell(ctx, name, "")
}

// CreateNodeInCell registers a node in the cell named cell, creating the
// cell when missing, and returns its token. An empty cell is a cell named
// after the node, which must not exist yet (joining an existing cell takes
// naming it).
func (s *Service) CreateNodeInCell(ctx context.Context, name, cell string) (Node, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return Node{}, "", invalid("name", "must be 1 to 100 characters")
	}
	own := cell == ""
	if own {
		cell = name
	} else if !cellNamePattern.MatchString(cell) {
		// A cell that nodes join is a JetStream cluster name too.
		return Node{}, "", invalid("cell", "1 to 64 letters, digits, '-' or '_' (it names the cell's JetStream cluster)")
	}
	cell, err := checkCellName(cell)
	if err != nil {
		return Node{}, "", err
	}
	n := Node{ID: "n-" + randomToken(8), Name: name, Cell: cell, Endpoints: map[string]string{}, CreatedAt: s.nowUTC()}
	secret := randomToken(32)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM nodes WHERE name = $1)`, name).Scan(&exists); err != nil {
			return fmt.Errorf("create node: %w", err)
		}
		if exists {
			return fmt.Errorf("%w: a node named %q exists", ErrConflict, name)
		}
		id, created, err := s.ensureCell(ctx, tx, cell)
		if err != nil {
			return err
		}
		if own && !created {
			return invalid("cell", fmt.Sprintf("a cell named %q exists; name it (--cell %s) to add the node to it", cell, cell))
		}
		n.CellID = id
		_, err = tx.Exec(ctx, `INSERT INTO nodes (id, name, token_hash, created_at, cell_id) VALUES ($1,$2,$3,$4,$5)`, n.ID, n.Name, sha(secret), n.CreatedAt, id)
		if isUniqueViolation(err) {
			return fmt.Errorf("%w: a node named %q exists", ErrConflict, name)
		}
		if err != nil {
			return fmt.Errorf("create node: %w", err)
		}
		return nil
	})
	if err != nil {
		return Node{}, "", err
	}
	return n, "aen_" + n.ID + "_" + secret, nil
}

// EnsureNode returns the node with this name, creating it (in a cell of
// its own, named after it) when missing, with a fresh token (the old one
// stops working): `aerie serve` registers its own node this way at every
// start.
func (s *Service) EnsureNode(ctx context.Context, name string, endpoints map[string]string) (Node, string, error) {
	if _, _, err := s.CreateNode(ctx, name); err != nil && !errors.Is(err, ErrConflict) {
		return Node{}, "", err
	}
	secret := randomToken(32)
	var id string
	if err := s.db.QueryRow(ctx, `UPDATE nodes SET token_hash = $2, revoked_at = NULL WHERE name = $1 RETURNING id`, name, sha(secret)).Scan(&id); err != nil {
		return Node{}, "", fmt.Errorf("find node %s: %w", name, err)
	}
	if err := s.NodeHeartbeat(ctx, id, nodelink.Ack{Endpoints: endpoints, Revision: -1}); err != nil {
		return Node{}, "", err
	}
	n, err := s.NodeByID(ctx, id)
	return n, "aen_" + id + "_" + secret, err
}

// AuthenticateNode checks a node token against the node ID it claims.
func (s *Service) AuthenticateNode(ctx context.Context, nodeID, token string) error {
	rest, ok := strings.CutPrefix(token, "aen_")
	if !ok {
		return ErrUnauthenticated
	}
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 || rest[:i] != nodeID {
		return ErrUnauthenticated
	}
	var hash []byte
	err := s.db.QueryRow(ctx, `SELECT token_hash FROM nodes WHERE id = $1 AND revoked_at IS NULL`, nodeID).Scan(&hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrUnauthenticated
	}
	if err != nil {
		return fmt.Errorf("authenticate node: %w", err)
	}
	if subtle.ConstantTimeCompare(hash, sha(rest[i+1:])) != 1 {
		return ErrUnauthenticated
	}
	return nil
}

// NodeHeartbeat records that the node is alive, what it has applied (a
// negative revision leaves it unchanged), its endpoints and load. Instances
// provisioned on its cell whose creation it has applied become running. A
// node stating a cell (ack.Cell) other than its registered one is refused
// with a *CellMismatchError and not recorded.
func (s *Service) NodeHeartbeat(ctx context.Context, nodeID string, ack nodelink.Ack) error {
	if err := s.checkNodeCell(ctx, nodeID, ack.Cell); err != nil {
		return err
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		var eps []byte
		if len(ack.Endpoints) > 0 {
			eps, _ = json.Marshal(ack.Endpoints)
		}
		// prev is the applied revision before this heartbeat (the CTE
		// reads the row as it was).
		var prev int64
		var cellID string
		err := tx.QueryRow(ctx, `WITH old AS (SELECT applied_revision FROM nodes WHERE id = $1)
			UPDATE nodes SET last_seen_at = $2, applied_revision = greatest(applied_revision, $3),
			endpoints = coalesce($4::jsonb, endpoints), connections = $5 WHERE id = $1
			RETURNING (SELECT applied_revision FROM old), cell_id`, nodeID, s.now(), ack.Revision, eps, ack.Connections).Scan(&prev, &cellID)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("node %s: %w", nodeID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("node heartbeat: %w", err)
		}
		if ack.Revision <= 0 {
			return nil
		}
		if ack.Revision > prev {
			// Wake the requests waiting for this node (read-your-writes),
			// on every control-plane replica, at commit.
			if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NodeAppliedChannel, appliedPayload(nodeID, ack.Revision)); err != nil {
				return fmt.Errorf("notify applied revision: %w", err)
			}
		}
		rows, err := tx.Query(ctx, `SELECT id, allow_anonymous, limited FROM instances
			WHERE cell_id = $1 AND status = 'provisioning' AND provisioned_revision <= $2 FOR UPDATE`, cellID, ack.Revision)
		if err != nil {
			return fmt.Errorf("node heartbeat: %w", err)
		}
		type ready struct {
			id, limited string
			anon        bool
		}
		var list []ready
		for rows.Next() {
			var r ready
			if err := rows.Scan(&r.id, &r.anon, &r.limited); err != nil {
				rows.Close()
				return fmt.Errorf("node heartbeat: %w", err)
			}
			list = append(list, r)
		}
		rows.Close()
		for _, r := range list {
			if _, err := tx.Exec(ctx, `UPDATE instances SET status = 'running', updated_at = $2 WHERE id = $1`, r.id, s.nowUTC()); err != nil {
				return fmt.Errorf("instance running: %w", err)
			}
			ev := nodelink.Event{Kind: nodelink.KindInstanceStatus, InstanceID: r.id,
				Instance: &nodelink.Instance{ID: r.id, Status: nodelink.StatusRunning, AllowAnonymous: r.anon, Limited: r.limited}}
			if _, err := emit(ctx, tx, nodeID, r.id, ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// nodeCols reads a node (alias n) with its cell; $1 is the liveness
// threshold.
const nodeCols = `n.id, n.name, n.cell_id, (SELECT c.name FROM cells c WHERE c.id = n.cell_id), coalesce(n.last_seen_at > $1, false),
	n.endpoints, n.connections, n.applied_revision, n.created_at, n.last_seen_at,
	(SELECT count(*) FROM instances i WHERE i.cell_id = n.cell_id)`

func scanNode(r pgx.CollectableRow) (Node, error) {
	var n Node
	var eps []byte
	if err := r.Scan(&n.ID, &n.Name, &n.CellID, &n.Cell, &n.Up, &eps, &n.Connections, &n.AppliedRevision, &n.CreatedAt, &n.LastSeenAt, &n.Instances); err != nil {
		return Node{}, err
	}
	n.Endpoints = map[string]string{}
	_ = json.Unmarshal(eps, &n.Endpoints)
	return n, nil
}

// ListNodes lists the registered, unrevoked nodes.
func (s *Service) ListNodes(ctx context.Context) ([]Node, error) {
	rows, err := s.db.Query(ctx, `SELECT `+nodeCols+` FROM nodes n WHERE n.revoked_at IS NULL ORDER BY n.name`, s.liveSince())
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	ns, err := pgx.CollectRows(rows, scanNode)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return ns, nil
}

// NodeByID returns one node.
func (s *Service) NodeByID(ctx context.Context, id string) (Node, error) {
	rows, err := s.db.Query(ctx, `SELECT `+nodeCols+` FROM nodes n WHERE n.id = $2 AND n.revoked_at IS NULL`, s.liveSince(), id)
	if err != nil {
		return Node{}, fmt.Errorf("get node: %w", err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, scanNode)
	if err != nil {
		return Node{}, fmt.Errorf("node %s: %w", id, notFound(err))
	}
	return n, nil
}

// RevokeNode revokes a node's token; its watch is refused from then on.
func (s *Service) RevokeNode(ctx context.Context, id string) error {
	tag, err := s.db.Exec(ctx, `UPDATE nodes SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`, id, s.now())
	if err != nil {
		return fmt.Errorf("revoke node: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("node %s: %w", id, ErrNotFound)
	}
	return nil
}

// CheckUsageInstances returns nil when every one of the instances that
// exists is placed on the node's cell (unknown IDs, e.g. deleted instances, pass:
// their usage is billed to no one), and otherwise ErrForbidden naming the
// foreign instances: a node may only report usage for what it serves.
func (s *Service) CheckUsageInstances(ctx context.Context, nodeID string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	rows, err := s.db.Query(ctx, `SELECT id FROM instances WHERE id = ANY($1)
		AND cell_id IS DISTINCT FROM (SELECT cell_id FROM nodes WHERE id = $2) ORDER BY id LIMIT 10`, ids, nodeID)
	if err != nil {
		return fmt.Errorf("check usage instances: %w", err)
	}
	foreign, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("check usage instances: %w", err)
	}
	if len(foreign) > 0 {
		return &ForeignUsageError{NodeID: nodeID, Instances: foreign}
	}
	return nil
}

// ForeignUsageError: a node reported usage for instances placed on other
// cells (at most 10 named). It is ErrForbidden.
type ForeignUsageError struct {
	NodeID    string
	Instances []string
}

func (e *ForeignUsageError) Error() string {
	return fmt.Sprintf("node %s reported usage for instances it does not serve (%s); the whole report is refused",
		e.NodeID, strings.Join(e.Instances, ", "))
}

// Unwrap makes the error ErrForbidden.
func (e *ForeignUsageError) Unwrap() error { return ErrForbidden }

// checkNodeCell refuses a node stating a cell other than its registered
// one (logged once per node and stated cell); empty stated: no check.
func (s *Service) checkNodeCell(ctx context.Context, nodeID, stated string) error {
	if stated == "" {
		return nil
	}
	var registered string
	err := s.db.QueryRow(ctx, `SELECT c.name FROM nodes n JOIN cells c ON c.id = n.cell_id WHERE n.id = $1`, nodeID).Scan(&registered)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("node %s: %w", nodeID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("node cell: %w", err)
	}
	if stated == registered {
		return nil
	}
	e := &CellMismatchError{NodeID: nodeID, Stated: stated, Registered: registered}
	if _, seen := s.cellRefused.LoadOrStore(nodeID+"\x00"+stated, true); !seen {
		s.log.Error("node refused: wrong cell", "node", nodeID, "stated_cell", stated, "registered_cell", registered)
	}
	return e
}
