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
// (Feed.Run), so a request waiting for its change to reach a node
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
// nodes (a missing or revoked node is left out).
func (s *Service) AppliedRevisions(ctx context.Context, nodes []string) (Revisions, error) {
	rows, err := s.db.Query(ctx, `SELECT id, applied_revision FROM nodes WHERE id = ANY($1) AND revoked_at IS NULL`, nodes)
	if err != nil {
		return nil, fmt.Errorf("applied revisions: %w", err)
	}
	defer rows.Close()
	out := Revisions{}
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

// appliedPoll is how often a waiter re-reads the nodes' applied revisions
// in case a notification was lost (or LISTEN is down).
const appliedPoll = 250 * time.Millisecond

// WaitApplied returns once every node in want has acknowledged applying at
// least its revision, or with ctx's error when ctx ends first (the caller
// bounds the wait with a deadline). It wakes on the node's acknowledgement
// (NodeAppliedChannel, or directly for the in-process node), not by
// sleeping; a slow poll covers a lost notification.
func (f *Feed) WaitApplied(ctx context.Context, want Revisions) error {
	if len(want) == 0 {
		return nil
	}
	nodes := make([]string, 0, len(want))
	for n := range want {
		nodes = append(nodes, n)
	}
	wake := make(chan struct{}, 1)
	f.mu.Lock()
	for _, n := range nodes {
		if f.applied[n] == nil {
			f.applied[n] = map[chan struct{}]struct{}{}
		}
		f.applied[n][wake] = struct{}{}
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		for _, n := range nodes {
			delete(f.applied[n], wake)
			if len(f.applied[n]) == 0 {
				delete(f.applied, n)
			}
		}
		f.mu.Unlock()
	}()
	tick := time.NewTicker(appliedPoll)
	defer tick.Stop()
	for {
		got, err := f.svc.AppliedRevisions(ctx, nodes)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			f.log.Warn("read-your-writes: reading applied revisions", "error", err)
		} else {
			done := true
			for n, rev := range want {
				if got[n] < rev {
					done = false
					break
				}
			}
			if done {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-tick.C:
		}
	}
}

// wakeApplied wakes the requests waiting for the node.
func (f *Feed) wakeApplied(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.applied[node] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func appliedPayload(nodeID string, rev int64) string {
	return nodeID + ":" + strconv.FormatInt(rev, 10)
}
