package jsstore

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Node liveness in a cell: every node puts a heartbeat (its name and
// connection count per instance) under its name in the memory-stored,
// replicated KV bucket "<PREFIX>_nodes" every heartbeat interval
// (NodeTimeout/4, at most 1s); the bucket's TTL is NodeTimeout. Every
// node watches the bucket and keeps, on its own clock, when it last
// received each peer's heartbeat: a peer is live while that is within
// NodeTimeout. A node that closes deletes its entry (it leaves at once).

type heartbeat struct {
	Node  string         `json:"n"`
	Conns map[string]int `json:"c,omitempty"`
}

type peer struct {
	seen  time.Time
	conns map[string]int
}

// nodesState is this node's view of the cell's nodes.
type nodesState struct {
	mu      sync.Mutex
	conns   map[string]int // this node's, published by the next heartbeat
	peers   map[string]*peer
	started time.Time // when this node began to watch heartbeats
}

func (s *Store) heartbeatInterval() time.Duration {
	return min(time.Second, s.opts.NodeTimeout/4)
}

// startNodes creates the nodes bucket, puts the first heartbeat and starts
// the heartbeat loop and the watcher.
func (s *Store) startNodes(ctx context.Context) error {
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: s.name + "_nodes", History: 1, TTL: s.opts.NodeTimeout,
		Storage: jetstream.MemoryStorage, Replicas: s.opts.Replicas,
	})
	if err != nil {
		return fmt.Errorf("jsstore: nodes bucket: %w", err)
	}
	s.nodesKV = kv
	s.nodes.peers = map[string]*peer{}
	s.nodes.started = s.opts.Now()
	w, err := kv.WatchAll(s.bg)
	if err != nil {
		return fmt.Errorf("jsstore: watch nodes: %w", err)
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		defer w.Stop() //nolint:errcheck // best effort
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					s.seeNode(e)
				}
			case <-s.bg.Done():
				return
			}
		}
	}()
	s.beat(ctx)
	go s.heartbeatLoop()
	return nil
}

func (s *Store) seeNode(e jetstream.KeyValueEntry) {
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		for name, p := range s.nodes.peers {
			if tok(name) == e.Key() {
				p.seen = time.Time{}
			}
		}
		return
	}
	var hb heartbeat
	if json.Unmarshal(e.Value(), &hb) != nil || hb.Node == s.opts.Node {
		return
	}
	s.nodes.peers[hb.Node] = &peer{seen: s.opts.Now(), conns: hb.Conns}
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
// a quorum is not live for the others).
func (s *Store) beat(ctx context.Context) {
	s.nodes.mu.Lock()
	hb, _ := json.Marshal(heartbeat{Node: s.opts.Node, Conns: s.nodes.conns})
	s.nodes.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.heartbeatInterval())
	defer cancel()
	if _, err := s.nodesKV.Put(ctx, tok(s.opts.Node), hb); err == nil {
		s.cell.beats.Add(1)
	}
}

// leave deletes this node's heartbeat (a clean shutdown).
func (s *Store) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.nodesKV.Delete(ctx, tok(s.opts.Node)) //nolint:errcheck // best effort: the TTL removes it anyway
}

// ownerGone reports whether a session owner is a node that left the cell
// (no heartbeat within NodeTimeout) and when it was last seen (now if
// never). Only a node that has itself watched the heartbeats for a whole
// NodeTimeout judges (a node that just started has not seen them yet).
func (s *Store) ownerGone(owner string) (time.Time, bool) {
	if s.opts.Node == "" || owner == "" || owner == s.opts.Node {
		return time.Time{}, false
	}
	now := s.opts.Now()
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	if now.Sub(s.nodes.started) < s.opts.NodeTimeout {
		return time.Time{}, false
	}
	p := s.nodes.peers[owner]
	if p == nil || p.seen.IsZero() {
		return now, true
	}
	if now.Sub(p.seen) < s.opts.NodeTimeout {
		return time.Time{}, false
	}
	return p.seen, true
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
	now := s.opts.Now()
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	n := 0
	for _, p := range s.nodes.peers {
		if !p.seen.IsZero() && now.Sub(p.seen) < s.opts.NodeTimeout {
			n += p.conns[instance]
		}
	}
	return n
}

// LiveNodes counts the cell's live nodes, this one included.
func (s *Store) LiveNodes() int {
	now := s.opts.Now()
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	n := 1
	for _, p := range s.nodes.peers {
		if !p.seen.IsZero() && now.Sub(p.seen) < s.opts.NodeTimeout {
			n++
		}
	}
	return n
}
