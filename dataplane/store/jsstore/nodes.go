package jsstore

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Node liveness in a cell: every node puts a heartbeat (its name and
// connection count per instance) under its name in the memory-stored,
// replicated KV bucket "<PREFIX>_nodes" every heartbeat interval
// (NodeTimeout/4, at most 1s); the bucket's TTL (MaxAge) is NodeTimeout,
// so the servers themselves drop the entry of a node that stopped
// beating: a node is live while its entry exists. A node that closes
// deletes its entry (it leaves at once).
//
// After each heartbeat a node reads all entries in one batched direct get
// (its view for LiveNodes and PeerConnections, stale after NodeTimeout
// without a successful read). Before it treats a session owner as gone it
// asks the bucket's leader (a lagging view must never reap a live node).

type heartbeat struct {
	Node  string         `json:"n"`
	Conns map[string]int `json:"c,omitempty"`
}

// nodesState is this node's view of the cell's nodes.
type nodesState struct {
	mu       sync.Mutex
	conns    map[string]int            // this node's, published by the next heartbeat
	peers    map[string]map[string]int // live peers → their connection counts
	seen     map[string]time.Time      // a peer's last heartbeat (server time stamp)
	polledAt time.Time                 // last successful read of the bucket
	// writableSince is when this node's heartbeats started to succeed
	// again (zero while its last one failed). While the bucket has no
	// leader (an election after a node died takes 4–9 s) nobody can beat,
	// and entries older than NodeTimeout expire: an absent entry proves a
	// node gone only once heartbeats have been writable for a whole
	// NodeTimeout, long enough for every live node to have beaten again.
	writableSince time.Time
}

func (s *Store) heartbeatInterval() time.Duration {
	return min(time.Second, s.opts.NodeTimeout/4)
}

func (s *Store) nodesBucket() string { return s.name + "_nodes" }

// startNodes creates the nodes bucket, puts the first heartbeat and starts
// the heartbeat loop.
func (s *Store) startNodes(ctx context.Context) error {
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: s.nodesBucket(), History: 1, TTL: s.opts.NodeTimeout,
		Storage: jetstream.MemoryStorage, Replicas: s.opts.Replicas,
	})
	if err != nil {
		return fmt.Errorf("jsstore: nodes bucket: %w", err)
	}
	s.nodesKV = kv
	s.nodes.peers, s.nodes.seen = map[string]map[string]int{}, map[string]time.Time{}
	s.beat(ctx)
	s.wg.Add(1)
	go s.heartbeatLoop()
	return nil
}

func (s *Store) heartbeatLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.heartbeatInterval())
	defer t.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-t.C:
			s.beat(s.bg)
		}
	}
}

// beat puts this node's heartbeat (best effort: a node that cannot reach
// a quorum is not live for the others) and reads the others'.
func (s *Store) beat(ctx context.Context) {
	s.nodes.mu.Lock()
	hb, _ := json.Marshal(heartbeat{Node: s.opts.Node, Conns: s.nodes.conns})
	s.nodes.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.heartbeatInterval())
	defer cancel()
	_, err := s.nodesKV.Put(ctx, tok(s.opts.Node), hb)
	s.nodes.mu.Lock()
	switch {
	case err != nil:
		s.nodes.writableSince = time.Time{}
	case s.nodes.writableSince.IsZero():
		s.nodes.writableSince = s.opts.Now()
	}
	s.nodes.mu.Unlock()
	if err == nil {
		s.cell.beats.Add(1)
	}
	s.readPeers(ctx)
}

// readPeers refreshes the view of the other nodes' heartbeats.
func (s *Store) readPeers(ctx context.Context) {
	all := "$KV." + s.nodesBucket() + ".>"
	msgs, err := s.direct(ctx, "KV_"+s.nodesBucket(), directGetRequest{MultiLast: []string{all}, Batch: 100000})
	if err != nil {
		return
	}
	peers := map[string]map[string]int{}
	now := s.opts.Now()
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	for _, m := range msgs {
		var hb heartbeat
		if m.hdr.Get(kvOpHeader) != "" || json.Unmarshal(m.data, &hb) != nil || hb.Node == s.opts.Node {
			continue
		}
		peers[hb.Node] = hb.Conns
		at, err := time.Parse(time.RFC3339Nano, m.hdr.Get(nats.JSTimeStamp))
		if err != nil {
			at = now
		}
		s.nodes.seen[hb.Node] = at
	}
	s.nodes.peers, s.nodes.polledAt = peers, now
}

// leave deletes this node's heartbeat (a clean shutdown).
func (s *Store) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.nodesKV.Delete(ctx, tok(s.opts.Node)) //nolint:errcheck // best effort: the TTL removes it anyway
}

// livePeers returns the view of the other live nodes (nil when stale).
// It runs under nodes.mu.
func (s *Store) livePeersLocked() map[string]map[string]int {
	if s.opts.Now().Sub(s.nodes.polledAt) >= s.opts.NodeTimeout {
		return nil
	}
	return s.nodes.peers
}

// ownerGone reports whether a session owner is a node that left the cell
// (its heartbeat entry is gone: none within NodeTimeout, or it closed) and
// when it was last seen (now if never). gone caches the answers of one
// ExpireSessions pass.
func (s *Store) ownerGone(ctx context.Context, owner string, gone map[string]*time.Time) (time.Time, bool) {
	if s.opts.Node == "" || owner == "" || owner == s.opts.Node || s.nodesKV == nil {
		return time.Time{}, false
	}
	if at, ok := gone[owner]; ok {
		return derefTime(at), at != nil
	}
	s.nodes.mu.Lock()
	_, live := s.livePeersLocked()[owner]
	last, seen := s.nodes.seen[owner]
	since := s.nodes.writableSince
	s.nodes.mu.Unlock()
	if since.IsZero() || s.opts.Now().Sub(since) < s.opts.NodeTimeout+s.heartbeatInterval() {
		// Heartbeats were not writable for a whole window: an absent
		// entry may have expired during an election. Decide later.
		gone[owner] = nil
		return time.Time{}, false
	}
	if !live {
		// Confirm with the bucket's leader: only an absent entry is gone.
		v, _, err := s.leaderLast(ctx, "KV_"+s.nodesBucket(), "$KV."+s.nodesBucket()+"."+tok(owner))
		live = err != nil || v != nil
	}
	if live {
		gone[owner] = nil
		return time.Time{}, false
	}
	if !seen {
		last = s.opts.Now()
	}
	gone[owner] = &last
	return last, true
}

func derefTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// SetConnections publishes this node's connection count per instance with
// its next heartbeat.
func (s *Store) SetConnections(conns map[string]int) {
	s.nodes.mu.Lock()
	s.nodes.conns = maps.Clone(conns)
	s.nodes.mu.Unlock()
}

// PeerConnections is the sum of the live other nodes' last published
// connection counts of an instance.
func (s *Store) PeerConnections(instance string) int {
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	n := 0
	for _, c := range s.livePeersLocked() {
		n += c[instance]
	}
	return n
}

// LiveNodes counts the cell's live nodes, this one included.
func (s *Store) LiveNodes() int {
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	return 1 + len(s.livePeersLocked())
}
