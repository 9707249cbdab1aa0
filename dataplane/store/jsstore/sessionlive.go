package jsstore

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
)

// Resume marks a session connected, claims it for this node by
// compare-and-set (the node that served it before gets a CellTakeover) and
// sets its read positions to the persisted cursors.
func (s *Store) Resume(ctx context.Context, instance, clientID string) (*store.Session, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	var cur *sessionRecord
	_, rev, err := s.updateRecord(ctx, instance, clientID, func(rec *sessionRecord) (*sessionRecord, error) {
		cur = rec
		if rec == nil {
			return nil, fmt.Errorf("%w: %s/%s", store.ErrNoSession, instance, clientID)
		}
		if rec.Disc == 0 && rec.Owner == s.opts.Node {
			return nil, errSkip
		}
		rec.Disc, rec.Owner = 0, s.opts.Node
		return rec, nil
	})
	if err != nil {
		return nil, err
	}
	sess, err := s.loadSession(ctx, cur, instance, clientID)
	if err != nil {
		return nil, err
	}
	ls := &liveSession{queues: map[string]*cursorState{}, volatile: cur.Exp == 0}
	for q, c := range sess.Cursors {
		ls.queues[q] = &cursorState{committed: c, read: c, acked: map[uint64]bool{}}
	}
	k := sessKey{instance, clientID}
	s.ss.mu.Lock()
	s.ss.live[k] = ls
	if st := s.ss.recs[k]; st != nil && st.rev > rev && (st.deleted || st.owner != s.opts.Node) {
		// Claimed by another node between this claim and now.
		ls.lost.Store(true)
		s.cell.push(store.CellEvent{Kind: store.CellTakeover, Instance: instance, ClientID: clientID})
	}
	s.ss.mu.Unlock()
	return sess, nil
}

// Disconnect marks a session offline at `at` and forgets its read state.
// It changes nothing in the record when another node owns the session (a
// stale owner's Disconnect after a takeover is a no-op).
func (s *Store) Disconnect(ctx context.Context, instance, clientID string, at time.Time) error {
	if err := s.check(); err != nil {
		return err
	}
	k := sessKey{instance, clientID}
	s.flushCursors(ctx, &k) // the session's last acknowledged positions
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	s.ss.mu.Lock()
	lost := s.ss.live[k] != nil && s.ss.live[k].lost.Load()
	delete(s.ss.live, k)
	s.ss.mu.Unlock()
	if lost {
		return nil
	}
	_, _, err := s.updateRecord(ctx, instance, clientID, func(rec *sessionRecord) (*sessionRecord, error) {
		if rec == nil || rec.Owner != s.opts.Node && rec.Owner != "" {
			return nil, errSkip
		}
		rec.Disc = at.UnixMilli()
		return rec, nil
	})
	return err
}

func (s *Store) liveQueue(instance, clientID, queue string) (*liveSession, *cursorState, error) {
	s.ss.mu.RLock()
	ls := s.ss.live[sessKey{instance, clientID}]
	s.ss.mu.RUnlock()
	if ls == nil {
		return nil, nil, fmt.Errorf("%w: %s/%s is not resumed", store.ErrNoSession, instance, clientID)
	}
	ls.mu.Lock()
	cs := ls.queues[queue]
	if cs == nil {
		ls.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: %s/%s has no subscription %q", store.ErrNoSession, instance, clientID, queue)
	}
	return ls, cs, nil
}

// PullSession reads a resumed session's queue after its read position and
// marks the entries in flight.
func (s *Store) PullSession(ctx context.Context, instance, clientID, queue string, limit int) ([]store.Entry, error) {
	ls, cs, err := s.liveQueue(instance, clientID, queue)
	if err != nil {
		return nil, err
	}
	defer ls.mu.Unlock()
	ents, err := s.Pull(ctx, instance, queue, cs.read, limit)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		cs.inflight = append(cs.inflight, e.Offset)
	}
	if len(ents) > 0 {
		cs.read = ents[len(ents)-1].Offset
	}
	s.ev.pulled(store.QueueRef{Instance: instance, Queue: queue}, cs.read, len(ents), limit)
	return ents, nil
}

// Ack acknowledges an in-flight entry; the persisted cursor advances over
// the leading run of acknowledged entries (one KV put when it moves).
func (s *Store) Ack(ctx context.Context, instance, clientID, queue string, offset uint64) (bool, error) {
	ls, cs, err := s.liveQueue(instance, clientID, queue)
	if err != nil {
		return false, err
	}
	defer ls.mu.Unlock()
	i := sort.Search(len(cs.inflight), func(i int) bool { return cs.inflight[i] >= offset })
	if i == len(cs.inflight) || cs.inflight[i] != offset {
		return false, nil
	}
	cs.acked[offset] = true
	moved := false
	for len(cs.inflight) > 0 && cs.acked[cs.inflight[0]] {
		delete(cs.acked, cs.inflight[0])
		cs.committed = cs.inflight[0]
		cs.inflight = cs.inflight[1:]
		moved = true
	}
	if !moved || ls.volatile || ls.lost.Load() {
		return moved, nil
	}
	if err := s.check(); err != nil {
		return false, err
	}
	s.moved.mark(cursorRef{sessKey{instance, clientID}, queue}, ls) // written by the flusher (cursors.go)
	return true, nil
}

// liveCursors raises sess's cursors to this node's in-memory ones when it
// serves the session (moves not yet written by the flusher).
func (s *Store) liveCursors(sess *store.Session) {
	s.ss.mu.RLock()
	ls := s.ss.live[sessKey{sess.Instance, sess.ClientID}]
	s.ss.mu.RUnlock()
	if ls == nil || ls.lost.Load() {
		return
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for q, cs := range ls.queues {
		if c, ok := sess.Cursors[q]; ok && cs.committed > c {
			sess.Cursors[q] = cs.committed
		}
	}
}

// Inflight counts a session's pulled entries awaiting an ack.
func (s *Store) Inflight(instance, clientID string) int {
	s.ss.mu.RLock()
	ls := s.ss.live[sessKey{instance, clientID}]
	s.ss.mu.RUnlock()
	if ls == nil {
		return 0
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	n := 0
	for _, cs := range ls.queues {
		n += len(cs.inflight) - len(cs.acked)
	}
	return n
}

// Sessions lists the instance's sessions that hold subscriptions, with
// their backlog counted up to capPerQueue entries per subscription.
func (s *Store) Sessions(ctx context.Context, instance string, capPerQueue int) ([]store.SessionInfo, error) {
	s.ss.mu.RLock()
	seen := map[string]bool{}
	for _, clients := range s.ss.byQueue[instance] {
		for c := range clients {
			seen[c] = true
		}
	}
	s.ss.mu.RUnlock()
	ids := make([]string, 0, len(seen))
	for c := range seen {
		ids = append(ids, c)
	}
	sort.Strings(ids)
	out := make([]store.SessionInfo, 0, len(ids))
	for _, id := range ids {
		sess, err := s.LoadSession(ctx, instance, id)
		if err != nil {
			continue // ended meanwhile
		}
		info := store.SessionInfo{ClientID: id, Online: sess.DisconnectedAt.IsZero(), DisconnectedAt: sess.DisconnectedAt, Expiry: sess.Expiry}
		for f := range sess.Subscriptions {
			info.Subscriptions = append(info.Subscriptions, f)
		}
		sort.Strings(info.Subscriptions)
		for q, cur := range sess.Cursors {
			ents, err := s.Pull(ctx, instance, q, cur, capPerQueue)
			if err != nil {
				return nil, fmt.Errorf("backlog of %s: %w", id, err)
			}
			info.Backlog += len(ents)
			info.Capped = info.Capped || len(ents) == capPerQueue
			if len(ents) > 0 && (info.Oldest.IsZero() || ents[0].Message.Time.Before(info.Oldest)) {
				info.Oldest = ents[0].Message.Time
			}
		}
		out = append(out, info)
	}
	return out, nil
}
