package store

import (
	"github.com/aeriemq/aerie/internal/mqtttopic"

	"context"
	"fmt"

	"github.com/linxGnu/grocksdb"
)

func (s *Store) addFilterLocked(inst, f string) {
	m := s.filters[inst]
	if m == nil {
		m = map[string]int{}
		s.filters[inst] = m
	}
	if m[f]++; m[f] == 1 {
		t := s.tries[inst]
		if t == nil {
			t = mqtttopic.NewIndex()
			s.tries[inst] = t
		}
		t.Add(f)
	}
}

// Subscribe adds (or updates) a subscription of an existing persistent
// session. The first persistent subscription to a wildcard filter creates
// its queue. A new subscription's cursor starts at the current log end (it
// receives messages published after the call; retained ones come from
// Retained). It returns the subscription's cursor.
func (s *Store) Subscribe(ctx context.Context, instance, clientID string, sub Subscription) (uint64, error) {
	if mqtttopic.CheckFilter(sub.Filter) != nil {
		return 0, fmt.Errorf("%w: filter %q", ErrInvalidName, sub.Filter)
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	rec, err := s.readRecord(instance, clientID)
	if err != nil {
		return 0, err
	}
	if rec == nil {
		return 0, fmt.Errorf("%w: %s/%s", ErrNoSession, instance, clientID)
	}
	if rec.Subs == nil {
		rec.Subs = map[string]Subscription{}
	}
	prev, existed := rec.Subs[sub.Filter]
	if existed {
		sub.Since = prev.Since
	}
	rec.Subs[sub.Filter] = sub
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	if err := s.writeRecord(wb, instance, clientID, rec); err != nil {
		return 0, err
	}
	if existed {
		return s.cursor(instance, clientID, sub.Filter), s.write(wb)
	}
	// Register the queue between two group commits: every message after
	// boundary is indexed in it, none before.
	var boundary uint64
	if err := s.control(ctx, func() {
		s.filtersMu.Lock()
		if mqtttopic.HasWildcard(sub.Filter) {
			s.addFilterLocked(instance, sub.Filter)
		}
		boundary = s.next.Load() - 1
		s.filtersMu.Unlock()
	}); err != nil {
		return 0, err
	}
	sub.Since = boundary
	rec.Subs[sub.Filter] = sub
	if err := s.writeRecord(wb, instance, clientID, rec); err != nil {
		return 0, err
	}
	wb.PutCF(s.sess, sessCursorKey(instance, clientID, sub.Filter), u64b(boundary))
	if err := s.write(wb); err != nil {
		return 0, err
	}
	s.ss.mu.Lock()
	s.ss.addSub(instance, sub.Filter, clientID)
	if ls := s.ss.live[sessKey{instance, clientID}]; ls != nil {
		ls.mu.Lock()
		ls.queues[sub.Filter] = &cursorState{committed: boundary, read: boundary, acked: map[uint64]bool{}}
		ls.mu.Unlock()
	}
	s.ss.mu.Unlock()
	return boundary, nil
}

func (s *Store) cursor(instance, clientID, queue string) uint64 {
	v, _ := s.getCF(s.sess, sessCursorKey(instance, clientID, queue))
	return u64(v)
}

// Unsubscribe removes a subscription; the last persistent subscriber of a
// wildcard filter drops its queue (one range delete).
func (s *Store) Unsubscribe(ctx context.Context, instance, clientID, filter string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	rec, err := s.readRecord(instance, clientID)
	if err != nil || rec == nil {
		return err
	}
	if _, ok := rec.Subs[filter]; !ok {
		return nil
	}
	delete(rec.Subs, filter)
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	if err := s.writeRecord(wb, instance, clientID, rec); err != nil {
		return err
	}
	wb.DeleteCF(s.sess, sessCursorKey(instance, clientID, filter))
	if err := s.write(wb); err != nil {
		return err
	}
	s.forgetSubs(instance, clientID, []string{filter})
	return s.releaseFilters(ctx, instance, []string{filter})
}

func (s *Store) forgetSubs(instance, clientID string, filters []string) {
	s.ss.mu.Lock()
	defer s.ss.mu.Unlock()
	ls := s.ss.live[sessKey{instance, clientID}]
	for _, f := range filters {
		s.ss.delSub(instance, f, clientID)
		if _, read := s.ss.byQueue[instance][f]; !read {
			s.tc.drop(QueueRef{instance, f}) // nobody left to read it
		}
		if ls != nil {
			ls.mu.Lock()
			delete(ls.queues, f)
			ls.mu.Unlock()
		}
	}
}

// releaseFilters drops one persistent subscriber from each wildcard filter
// and deletes the queues nobody subscribes to any more.
func (s *Store) releaseFilters(ctx context.Context, instance string, filters []string) error {
	var werr error
	err := s.control(ctx, func() {
		wb := grocksdb.NewWriteBatch()
		defer wb.Destroy()
		s.filtersMu.Lock()
		for _, f := range filters {
			if !mqtttopic.HasWildcard(f) {
				continue
			}
			m := s.filters[instance]
			if m[f]--; m[f] > 0 {
				continue
			}
			delete(m, f)
			if len(m) == 0 {
				delete(s.filters, instance)
			}
			if t := s.tries[instance]; t != nil && t.Remove(f) {
				delete(s.tries, instance)
			}
			p := lqPrefix(instance, f)
			wb.DeleteRangeCF(s.lq, p, prefixEnd(p))
			s.tc.drop(QueueRef{instance, f})
		}
		s.filtersMu.Unlock()
		if wb.Count() > 0 {
			werr = s.write(wb)
		}
	})
	if err != nil {
		return err
	}
	return werr
}
