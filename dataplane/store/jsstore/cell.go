package jsstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/nats-io/nats.go"
)

var _ store.Cell = (*Store)(nil)

// Core NATS subjects of a cell (not stored, at most once):
//
//	<prefix>.ev.<inst-token>  an Append's (topic, offset) pairs, for the
//	                          other nodes' queue events
//	<prefix>.q0.<inst-token>  a QoS 0 message relayed to the other nodes
//
// Both carry the origin node in the nodeHeader header; a node ignores its own.
const nodeHeader = "Aerie-Node"

// changedRetry is when Changed fires again after another node's append.
const changedRetry = 25 * time.Millisecond

// CellIOStats count a node's cell traffic.
type CellIOStats struct {
	RelayedOut    uint64 // QoS 0 messages this node relayed to the cell
	RelayedIn     uint64 // QoS 0 messages received from other nodes
	RelayDropped  uint64 // of those, dropped: the CellEvents consumer lagged
	RemoteAppends uint64 // append notifications received from other nodes
	Takeovers     uint64 // CellTakeover events emitted
	RetainedIn    uint64 // CellRetained events emitted
	Reaped        uint64 // sessions of departed nodes this node marked disconnected
	Heartbeats    uint64 // heartbeats this node put
	CaughtUp      uint64 // instances found ahead of their notices (catchup.go)
}

// cellQueue delivers CellEvents in order. It never drops CellTakeover and
// CellRetained; CellPublish events beyond max waiting are dropped.
type cellQueue struct {
	mu   sync.Mutex
	q    []store.CellEvent
	pubs int // CellPublish events waiting
	max  int
	wake chan struct{}
	out  chan store.CellEvent

	relayedOut, relayedIn, dropped, remote, takeovers, retained, reaped, beats, caughtUp atomic.Uint64
}

func (c *cellQueue) init(max int) {
	c.max, c.wake, c.out = max, make(chan struct{}, 1), make(chan store.CellEvent)
}

func (c *cellQueue) push(ev store.CellEvent) {
	c.mu.Lock()
	switch ev.Kind {
	case store.CellPublish:
		if c.pubs >= c.max {
			c.mu.Unlock()
			c.dropped.Add(1)
			return
		}
		c.pubs++
	case store.CellTakeover:
		c.takeovers.Add(1)
	case store.CellRetained:
		c.retained.Add(1)
	}
	c.q = append(c.q, ev)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// pump hands queued events to the CellEvents channel until ctx ends.
func (c *cellQueue) pump(ctx context.Context) {
	for {
		c.mu.Lock()
		if len(c.q) == 0 {
			c.mu.Unlock()
			select {
			case <-c.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		ev := c.q[0]
		c.q[0] = store.CellEvent{}
		c.q = c.q[1:]
		if ev.Kind == store.CellPublish {
			c.pubs--
		}
		c.mu.Unlock()
		select {
		case c.out <- ev:
		case <-ctx.Done():
			return
		}
	}
}

// NodeName is this node's name in the cell (Options.Node).
func (s *Store) NodeName() string { return s.opts.Node }

// CellEvents delivers what the other nodes did (see store.Cell).
func (s *Store) CellEvents() <-chan store.CellEvent { return s.cell.out }

// CellIO returns the node's cell counters.
func (s *Store) CellIO() CellIOStats {
	c := &s.cell
	return CellIOStats{RelayedOut: c.relayedOut.Load(), RelayedIn: c.relayedIn.Load(), RelayDropped: c.dropped.Load(),
		RemoteAppends: c.remote.Load(), Takeovers: c.takeovers.Load(), RetainedIn: c.retained.Load(),
		Reaped: c.reaped.Load(), Heartbeats: c.beats.Load(), CaughtUp: c.caughtUp.Load()}
}

// RelayQoS0 publishes a QoS 0 message for the other nodes' live
// subscribers (core NATS: at most once, like QoS 0). Without a node name
// (not in a cell) it does nothing.
func (s *Store) RelayQoS0(_ context.Context, m store.Message) error {
	if s.opts.Node == "" {
		return nil
	}
	if err := s.check(); err != nil {
		return err
	}
	msg := &nats.Msg{Subject: s.sub + ".q0." + tok(m.Instance), Header: nats.Header{}, Data: store.EncodeRecord(nil, &m)}
	msg.Header.Set(nodeHeader, s.opts.Node)
	if err := s.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("jsstore: relay: %w", err)
	}
	s.cell.relayedOut.Add(1)
	return nil
}

func (s *Store) onRelay(msg *nats.Msg) {
	if msg.Header.Get(nodeHeader) == s.opts.Node {
		return
	}
	m, err := store.DecodeRecord(msg.Data)
	if err != nil {
		return
	}
	s.cell.relayedIn.Add(1)
	s.cell.push(store.CellEvent{Kind: store.CellPublish, Message: *m})
}

// appendNote is the payload of an append notification.
type appendNote struct {
	Inst   string   `json:"i"`
	Topics []string `json:"t"`
	Offs   []uint64 `json:"o"`
}

// notifyAppends tells the other nodes what an Append stored, one
// notification per instance, so they raise their queue events.
func (s *Store) notifyAppends(msgs []store.Message, offs []uint64) {
	if s.opts.Node == "" {
		return
	}
	notes := map[string]*appendNote{}
	for i := range msgs {
		n := notes[msgs[i].Instance]
		if n == nil {
			n = &appendNote{Inst: msgs[i].Instance}
			notes[msgs[i].Instance] = n
		}
		n.Topics = append(n.Topics, msgs[i].Topic)
		n.Offs = append(n.Offs, offs[i])
	}
	for inst, n := range notes {
		data, _ := json.Marshal(n)
		msg := &nats.Msg{Subject: s.sub + ".ev." + tok(inst), Header: nats.Header{}, Data: data}
		msg.Header.Set(nodeHeader, s.opts.Node)
		_ = s.nc.PublishMsg(msg) //nolint:errcheck // best effort: a session also reads on its next wake
	}
}

func (s *Store) onAppendNote(msg *nats.Msg) {
	if msg.Header.Get(nodeHeader) == s.opts.Node {
		return
	}
	var n appendNote
	if json.Unmarshal(msg.Data, &n) != nil || len(n.Topics) != len(n.Offs) {
		return
	}
	s.cell.remote.Add(1)
	s.raiseTopics(n.Inst, n.Topics, n.Offs)
	s.tp.signalChanged()
	// Reads may go to a replica that has not applied the append yet.
	time.AfterFunc(changedRetry, s.tp.signalChanged)
}

// startCell subscribes to the cell subjects and starts the event pump.
func (s *Store) startCell() error {
	for subj, h := range map[string]nats.MsgHandler{s.sub + ".ev.*": s.onAppendNote, s.sub + ".q0.*": s.onRelay} {
		sub, err := s.nc.Subscribe(subj, h)
		if err != nil {
			return fmt.Errorf("jsstore: subscribe %s: %w", subj, err)
		}
		_ = sub.SetPendingLimits(1<<20, 256<<20) //nolint:errcheck // limits are valid
		s.subs = append(s.subs, sub)
	}
	s.wg.Add(1)
	go s.catchUpLoop()
	return nil
}
