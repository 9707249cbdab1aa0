package store

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/linxGnu/grocksdb"
)

// SessionsOn lists the persistent sessions subscribed to a queue (the
// gateway intersects it with its online clients after a queue event).
func (s *Store) SessionsOn(instance, queue string) []string {
	s.ss.mu.RLock()
	defer s.ss.mu.RUnlock()
	out := make([]string, 0, len(s.ss.byQueue[instance][queue]))
	for c := range s.ss.byQueue[instance][queue] {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// Resume marks a persistent session connected and sets its delivery
// positions to the persisted cursors: unacknowledged messages are delivered
// again (QoS1 duplicates), nothing after a cursor is skipped.
func (s *Store) Resume(ctx context.Context, instance, clientID string) (*Session, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	rec, err := s.readRecord(instance, clientID)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: %s/%s", ErrNoSession, instance, clientID)
	}
	if rec.Disc != 0 {
		rec.Disc = 0
		wb := grocksdb.NewWriteBatch()
		defer wb.Destroy()
		if err := s.writeRecord(wb, instance, clientID, rec); err != nil {
			return nil, err
		}
		if err := s.write(wb); err != nil {
			return nil, err
		}
	}
	sess, err := s.loadSession(ctx, instance, clientID)
	if err != nil {
		return nil, err
	}
	ls := &liveSession{queues: map[string]*cursorState{}, volatile: rec.Exp == 0}
	for q, c := range sess.Cursors {
		ls.queues[q] = &cursorState{committed: c, read: c, acked: map[uint64]bool{}}
	}
	s.ss.mu.Lock()
	s.ss.live[sessKey{instance, clientID}] = ls
	s.ss.mu.Unlock()
	return sess, nil
}

// Disconnect marks a persistent session offline at `at` (its expiry and
// will delay run from then) and forgets its in-memory delivery state.
func (s *Store) Disconnect(ctx context.Context, instance, clientID string, at time.Time) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	s.ss.mu.Lock()
	delete(s.ss.live, sessKey{instance, clientID})
	s.ss.mu.Unlock()
	rec, err := s.readRecord(instance, clientID)
	if err != nil || rec == nil {
		return err
	}
	rec.Disc = at.UnixMilli()
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	if err := s.writeRecord(wb, instance, clientID, rec); err != nil {
		return err
	}
	if err := s.write(wb); err != nil {
		return err
	}
	return ctx.Err()
}

func (s *Store) liveQueue(instance, clientID, queue string) (*liveSession, *cursorState, error) {
	s.ss.mu.RLock()
	ls := s.ss.live[sessKey{instance, clientID}]
	s.ss.mu.RUnlock()
	if ls == nil {
		return nil, nil, fmt.Errorf("%w: %s/%s is not resumed", ErrNoSession, instance, clientID)
	}
	ls.mu.Lock()
	cs := ls.queues[queue]
	if cs == nil {
		ls.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: %s/%s has no subscription %q", ErrNoSession, instance, clientID, queue)
	}
	return ls, cs, nil
}

// PullSession returns up to limit new entries for a resumed session's
// queue (limit = the client's free receive-maximum/inflight window) and
// records them as in flight. Entries come from the tail cache when the
// session is near the head, so a broadcast costs about one store read.
func (s *Store) PullSession(ctx context.Context, instance, clientID, queue string, limit int) ([]Entry, error) {
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
	return ents, nil
}

// Ack records the acknowledgement (PUBACK, PUBCOMP; or immediately after
// sending for QoS0 delivery) of an entry pulled by PullSession. The
// persisted cursor advances over the leading run of acknowledged entries
// only. It reports whether the cursor moved.
func (s *Store) Ack(ctx context.Context, instance, clientID, queue string, offset uint64) (bool, error) {
	ls, cs, err := s.liveQueue(instance, clientID, queue)
	if err != nil {
		return false, err
	}
	defer ls.mu.Unlock()
	i := sort.Search(len(cs.inflight), func(i int) bool { return cs.inflight[i] >= offset })
	if i == len(cs.inflight) || cs.inflight[i] != offset {
		return false, nil // duplicate or unknown ack
	}
	cs.acked[offset] = true
	moved := false
	for len(cs.inflight) > 0 && cs.acked[cs.inflight[0]] {
		delete(cs.acked, cs.inflight[0])
		cs.committed = cs.inflight[0]
		cs.inflight = cs.inflight[1:]
		moved = true
	}
	if !moved || ls.volatile {
		return moved, nil
	}
	if err := s.enter(); err != nil {
		return false, err
	}
	defer s.leave()
	if err := s.db.PutCF(s.woWAL, s.sess, sessCursorKey(instance, clientID, queue), u64b(cs.committed)); err != nil {
		return false, fmt.Errorf("store: save cursor: %w", err)
	}
	s.written.Add(uint64(len(instance) + len(clientID) + len(queue) + 3 + 8))
	return true, ctx.Err()
}

// Inflight returns how many pulled entries of a session await an ack.
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
