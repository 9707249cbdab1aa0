package jsstore

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cursor persistence is coalesced: Ack moves a session's cursor in memory
// and marks it dirty; the flusher writes the latest cursor of every dirty
// queue once per Options.CursorFlush (all of them in one round of
// asynchronous KV publishes), and Disconnect and Close write a session's
// dirty cursors before they return. One replicated, fsynced write per
// queue per interval replaces one per acknowledged message (which held
// every session at the cell's fsync latency). What a crash costs: the
// cursor moves of the last interval, i.e. messages redelivered (at most
// the acks of one interval per queue: duplicates, never a loss — a cursor
// only ever persists a position every message before which was acked).

// cursorRef names one queue cursor of a live session.
type cursorRef struct {
	k     sessKey
	queue string
}

// dirtyCursors is the set of cursors moved since they were last written.
type dirtyCursors struct {
	mu  sync.Mutex
	set map[cursorRef]*liveSession
}

func (d *dirtyCursors) mark(r cursorRef, ls *liveSession) {
	d.mu.Lock()
	if d.set == nil {
		d.set = map[cursorRef]*liveSession{}
	}
	d.set[r] = ls
	d.mu.Unlock()
}

// take returns and clears the dirty cursors (only those of k when k is
// not nil).
func (d *dirtyCursors) take(k *sessKey) map[cursorRef]*liveSession {
	d.mu.Lock()
	defer d.mu.Unlock()
	if k == nil {
		out := d.set
		d.set = nil
		return out
	}
	out := map[cursorRef]*liveSession{}
	for r, ls := range d.set {
		if r.k == *k {
			out[r] = ls
			delete(d.set, r)
		}
	}
	return out
}

// flushLoop writes the dirty cursors every CursorFlush until the store closes.
func (s *Store) flushLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.CursorFlush)
	defer t.Stop()
	for {
		select {
		case <-s.bg.Done():
			s.flushCursors(context.Background(), nil) // Close: the last moves
			return
		case <-t.C:
			s.flushCursors(s.bg, nil)
		}
	}
}

// flushCursors writes the dirty cursors (of session k only, when set); a
// failed write leaves its cursor dirty for the next round.
func (s *Store) flushCursors(ctx context.Context, k *sessKey) {
	dirty := s.moved.take(k)
	if len(dirty) == 0 {
		return
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	type pending struct {
		r   cursorRef
		ls  *liveSession
		off uint64
		f   jetstream.PubAckFuture
	}
	var ps []pending
	for r, ls := range dirty {
		ls.mu.Lock()
		cs := ls.queues[r.queue]
		if cs == nil || ls.lost.Load() || cs.committed <= cs.persisted {
			ls.mu.Unlock()
			continue
		}
		off := cs.committed
		ls.mu.Unlock()
		key := cursorKey(r.k.instance, r.k.client, r.queue)
		f, err := s.js.PublishMsgAsync(&nats.Msg{Subject: s.kvSubject(key), Data: binary.BigEndian.AppendUint64(nil, off)})
		if err != nil {
			s.moved.mark(r, ls)
			continue
		}
		s.written.Add(uint64(len(key) + 8))
		ps = append(ps, pending{r, ls, off, f})
	}
	for _, p := range ps {
		select {
		case <-p.f.Ok():
			p.ls.mu.Lock()
			if cs := p.ls.queues[p.r.queue]; cs != nil && p.off > cs.persisted {
				cs.persisted = p.off
			}
			p.ls.mu.Unlock()
		case <-p.f.Err():
			s.moved.mark(p.r, p.ls)
		case <-ctx.Done():
			s.moved.mark(p.r, p.ls)
		}
	}
}
