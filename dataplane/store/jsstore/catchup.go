package jsstore

import (
	"context"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
)

// Catch-up of lost append notices. The notices that wake other nodes'
// sessions travel on core NATS, at most once: one sent while a route is
// reconnecting (a node just restarted) is lost, and a session whose queue
// gets no later message would never read the tail. Every catchUpInterval
// a cell node compares, for each instance it serves sessions of, the
// stream's last sequence with the highest offset it was told of; when the
// stream is ahead, it raises every queue its online sessions read of that
// instance (their pulls find the missed messages, or nothing). One stream
// info request per such instance per interval.

const catchUpInterval = 500 * time.Millisecond

func (s *Store) catchUpLoop() {
	defer s.wg.Done()
	t := time.NewTicker(catchUpInterval)
	defer t.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-t.C:
			s.catchUp(s.bg)
		}
	}
}

// noted records that offsets up to off of inst were raised here.
func (e *events) noted(inst string, off uint64) {
	if off > e.instMax[inst] {
		e.instMax[inst] = off
	}
}

func (s *Store) catchUp(ctx context.Context) {
	s.ss.mu.RLock()
	queues := map[string][]string{}
	for k, ls := range s.ss.live {
		ls.mu.Lock()
		for q := range ls.queues {
			queues[k.instance] = append(queues[k.instance], q)
		}
		ls.mu.Unlock()
	}
	s.ss.mu.RUnlock()
	for inst, qs := range queues {
		last, err := s.lastSeq(ctx, inst)
		if err != nil || last == 0 {
			continue
		}
		s.ev.mu.Lock()
		behind := last > s.ev.instMax[inst]
		if behind {
			s.ev.instMax[inst] = last
			for _, q := range qs {
				ref := store.QueueRef{Instance: inst, Queue: q}
				if last > s.ev.pending[ref] {
					s.ev.pending[ref] = last
				}
			}
		}
		s.ev.mu.Unlock()
		if behind {
			s.cell.caughtUp.Add(1)
			s.ev.signal()
		}
	}
}
