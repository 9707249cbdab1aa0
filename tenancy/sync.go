package tenancy

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// NodeAppliedChannel is the Postgres NOTIFY channel announcing that a node
// has applied a higher config revision; the payload is
// "<node_id>:<revision>". Every control-plane replica listens to it
// (ListenChanges), so a request waiting for its change to reach a node
// (read-your-writes) wakes on whichever replica the node acknowledged to.
const NodeAppliedChannel = "aerie_node_applied"

// Revisions maps a data-plane node ID to the highest config revision a
// piece of work produced for it.
type Revisions map[string]int64

// Max is the highest revision in r (0 when empty).
func (r Revisions) Max() int64 {
	var m int64
	for _, v := range r {
		m = max(m, v)
	}
	return m
}

type revisionsKey struct{}

type revisionRecorder struct {
	mu   sync.Mutex
	revs Revisions
}

// RecordRevisions returns a context under which every config change the
// service commits is noted, and a function returning the revisions noted
// so far per node: what a caller waits for (WaitApplied) to read its own
// writes on the data plane.
func RecordRevisions(ctx context.Context) (context.Context, func() Revisions) {
	rec := &revisionRecorder{revs: Revisions{}}
	return context.WithValue(ctx, revisionsKey{}, rec), func() Revisions {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		out := make(Revisions, len(rec.revs))
		for k, v := range rec.revs {
			out[k] = v
		}
		return out
	}
}

// noteRevision records rev for the node in ctx's recorder, if any.
func noteRevision(ctx context.Context, nodeID string, rev int64) {
	rec, ok := ctx.Value(revisionsKey{}).(*revisionRecorder)
	if !ok || nodeID == "" {
		return
	}
	rec.mu.Lock()
	rec.revs[nodeID] = max(rec.revs[nodeID], rev)
	rec.mu.Unlock()
}

// AppliedRevisions returns the applied config revision of each of the
// nodes that is up (a missing, revoked or down node is left out: a wait
// for read-your-writes does not wait for it).
func (s *Service) AppliedRevisions(ctx context.Context, nodes []string) (map[string]int64, error) {
	rows, err := s.db.Query(ctx, `SELECT id, applied_revision FROM nodes WHERE id = ANY($1) AND revoked_at IS NULL AND last_seen_at > $2`,
		nodes, s.liveSince())
	if err != nil {
		return nil, fmt.Errorf("applied revisions: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id string
		var rev int64
		if err := rows.Scan(&id, &rev); err != nil {
			return nil, fmt.Errorf("applied revisions: %w", err)
		}
		out[id] = rev
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("applied revisions: %w", err)
	}
	return out, nil
}

func appliedPayload(nodeID string, rev int64) string {
	return nodeID + ":" + strconv.FormatInt(rev, 10)
}

// ListenChanges implements nodelink.Store: it holds one pooled connection
// LISTENing on ConfigChannel and NodeAppliedChannel until ctx ends or the
// connection fails, calling changed or applied with each notification's
// node.
func (s *Service) ListenChanges(ctx context.Context, ready func(), changed, applied func(nodeID string)) error {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	defer conn.Release()
	for _, ch := range []string{ConfigChannel, NodeAppliedChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	defer func() {
		// Leave the pooled connection clean.
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, _ = conn.Exec(c, "UNLISTEN *")
	}()
	ready() // changes may have committed before LISTEN took effect
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return err
		}
		node, _, ok := ParseConfigNotification(n.Payload)
		switch {
		case !ok:
		case n.Channel == NodeAppliedChannel:
			applied(node)
		default:
			changed(node)
		}
	}
}
