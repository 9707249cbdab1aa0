package store

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/linxGnu/grocksdb"
)

// Entry is one light-queue entry: the log offset (the queue sequence) and
// the shared message. Messages are shared between readers: do not modify.
type Entry struct {
	Offset  uint64
	Message *Message
}

// QueueRef names a light queue: a concrete topic or a wildcard filter of an instance.
type QueueRef struct{ Instance, Queue string }

// QueueEvent says that queue has new entries up to Last.
type QueueEvent struct {
	QueueRef
	Last uint64
}

// events coalesces "queue has new entries" notifications.
type events struct {
	mu      sync.Mutex
	pending map[QueueRef]uint64
	ch      chan struct{}
}

func (e *events) init() { e.pending = map[QueueRef]uint64{}; e.ch = make(chan struct{}, 1) }

func (s *Store) raise(idx []indexEntry) {
	e := &s.ev
	raised := false
	s.ss.mu.RLock()
	e.mu.Lock()
	for _, x := range idx {
		if len(s.ss.byQueue[x.instance][x.queue]) == 0 {
			continue // nobody persistent listens; clean sessions use mochi's fan-out
		}
		e.pending[QueueRef{x.instance, x.queue}] = x.off
		raised = true
	}
	e.mu.Unlock()
	s.ss.mu.RUnlock()
	if raised {
		select {
		case e.ch <- struct{}{}:
		default:
		}
	}
}

// Events returns a channel that receives a signal (capacity 1, so signals
// coalesce) whenever queues with persistent subscribers got new entries.
// After a signal, call TakeEvents.
func (s *Store) Events() <-chan struct{} { return s.ev.ch }

// TakeEvents returns and clears the pending queue events: one per queue,
// however many messages arrived since the last call.
func (s *Store) TakeEvents() []QueueEvent {
	e := &s.ev
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]QueueEvent, 0, len(e.pending))
	for q, last := range e.pending {
		out = append(out, QueueEvent{q, last})
	}
	clear(e.pending)
	return out
}

// tailCaches keeps the newest entries of queues that are being read, filled
// by the writer as it indexes (so serving them costs no store read). The
// caches share a byte budget: a queue may hold budget/queues bytes (at
// least size entries), so a few queues read by lagging sessions keep a long
// tail and many queues a short one.
type tailCaches struct {
	mu      sync.Mutex
	maxQ    int
	size    int
	budget  int
	total   int // bytes held by all caches
	m       map[QueueRef]*tail
	indexed uint64 // last offset whose index entries are in the caches
}

// tail holds every entry of its queue with offset > covered.
type tail struct {
	ents    []Entry
	bytes   int
	covered uint64
}

// entryCost approximates the memory an entry keeps alive.
func entryCost(e Entry) int { return len(e.Message.Payload) + len(e.Message.Topic) + 160 }

func (c *tailCaches) init(maxQ, size, budget int) {
	c.maxQ, c.size, c.budget, c.m = maxQ, size, budget, map[QueueRef]*tail{}
}

func (c *tailCaches) setIndexed(off uint64) {
	c.mu.Lock()
	c.indexed = off
	c.mu.Unlock()
}

func (c *tailCaches) drop(q QueueRef) {
	c.mu.Lock()
	c.dropLocked(q)
	c.mu.Unlock()
}

func (c *tailCaches) dropLocked(q QueueRef) {
	if t := c.m[q]; t != nil {
		c.total -= t.bytes
		delete(c.m, q)
	}
}

func (c *tailCaches) reset() {
	c.mu.Lock()
	clear(c.m)
	c.total = 0
	c.mu.Unlock()
}

// perQueue is the bytes one queue's cache may hold now.
func (c *tailCaches) perQueue() int { return c.budget / max(len(c.m), 1) }

func (c *tailCaches) add(idx []indexEntry, last uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lim := c.perQueue()
	for _, x := range idx {
		t := c.m[QueueRef{x.instance, x.queue}]
		if t == nil {
			continue
		}
		e := Entry{x.off, x.msg}
		t.ents = append(t.ents, e)
		cost := entryCost(e)
		t.bytes += cost
		c.total += cost
		if t.bytes > lim && len(t.ents) > 2*c.size {
			// Drop the oldest entries down to half the allowance (keeping
			// at least size), so trimming is rare.
			k, b := 0, t.bytes
			for b > lim/2 && len(t.ents)-k > c.size {
				b -= entryCost(t.ents[k])
				k++
			}
			t.covered = t.ents[k-1].Offset
			c.total -= t.bytes - b
			t.bytes = b
			t.ents = append(t.ents[:0:0], t.ents[k:]...)
		}
	}
	c.indexed = last
}

// get serves entries after `after` from the cache; ok is false when the
// cache does not cover that position. A missing cache is created, covering
// everything indexed from now on.
func (c *tailCaches) get(q QueueRef, after uint64, limit int) ([]Entry, *tail, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.m[q]
	if t == nil {
		if len(c.m) >= c.maxQ {
			for k := range c.m { // evict an arbitrary queue
				c.dropLocked(k)
				break
			}
		}
		t = &tail{covered: c.indexed}
		c.m[q] = t
	}
	if after < t.covered {
		return nil, t, false
	}
	i := sort.Search(len(t.ents), func(i int) bool { return t.ents[i].Offset > after })
	n := min(limit, len(t.ents)-i)
	out := make([]Entry, n)
	copy(out, t.ents[i:i+n])
	return out, t, true
}

// backfill extends a queue's cache backwards with entries read from disk
// after `after`, when they join up with what the cache covers: then the
// other sessions at the same position are served from memory.
// t must be the cache that existed before the disk read.
func (c *tailCaches) backfill(q QueueRef, t *tail, after uint64, ents []Entry, end bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[q] != t || after >= t.covered {
		return
	}
	if !end && (len(ents) == 0 || ents[len(ents)-1].Offset < t.covered) {
		return // a gap would remain between the disk page and the cache
	}
	var pre []Entry
	bytes := 0
	for _, e := range ents {
		if e.Offset > t.covered {
			break
		}
		pre = append(pre, e)
		bytes += entryCost(e)
	}
	if t.bytes+bytes > c.perQueue() && len(pre)+len(t.ents) > 2*c.size {
		return
	}
	t.ents = append(pre, t.ents...)
	t.bytes += bytes
	c.total += bytes
	t.covered = after
}

// Pull returns up to limit entries of a queue with offsets greater than
// after, oldest first, skipping messages past their instance's retention
// or their MQTT 5 expiry. Recent entries come from the queue's tail cache;
// older ones from RocksDB (one index scan + one batched log read).
func (s *Store) Pull(ctx context.Context, instance, queue string, after uint64, limit int) ([]Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	if f := s.queueFloor(instance, queue); after < f {
		after = f
	}
	q := QueueRef{instance, queue}
	now := s.opts.Now()
	for {
		ents, t, ok := s.tc.get(q, after, limit)
		if !ok {
			var end bool
			var err error
			if ents, end, err = s.pullDisk(ctx, q, after, limit); err != nil {
				return nil, err
			}
			s.tc.backfill(q, t, after, ents, end)
		}
		if len(ents) == 0 {
			return nil, nil
		}
		out := ents[:0]
		for _, e := range ents {
			if !e.Message.Expired(now) {
				out = append(out, e)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		after = ents[len(ents)-1].Offset // all expired: look further
	}
}

// pullDisk reads from RocksDB; end reports that the scan reached the end of
// the queue.
func (s *Store) pullDisk(ctx context.Context, q QueueRef, after uint64, limit int) (ents []Entry, end bool, err error) {
	prefix := lqPrefix(q.Instance, q.Queue)
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	ro.SetIterateUpperBound(prefixEnd(prefix))
	it := s.db.NewIteratorCF(ro, s.lq)
	s.reads.Add(1)
	var offs []uint64
	for it.Seek(lqKey(q.Instance, q.Queue, after+1)); it.Valid() && len(offs) < limit; it.Next() {
		_, _, off, ok := parseLqKey(it.Key().Data())
		if ok {
			offs = append(offs, off)
		}
	}
	end = len(offs) < limit
	err = it.Err()
	it.Close()
	if err != nil {
		return nil, false, fmt.Errorf("store: scan queue %s: %w", q.Queue, err)
	}
	if len(offs) == 0 {
		return nil, true, ctx.Err()
	}
	keys := make([][]byte, len(offs))
	for i, o := range offs {
		keys[i] = logKey(o)
	}
	s.reads.Add(1)
	vals, err := s.db.MultiGetCF(s.ro, s.log, keys...)
	if err != nil {
		return nil, false, fmt.Errorf("store: read log: %w", err)
	}
	defer vals.Destroy()
	out := make([]Entry, 0, len(offs))
	last := offs[len(offs)-1]
	for i, v := range vals {
		if !v.Exists() {
			continue // range-deleted by retention
		}
		m, err := decodeMessage(v.Data())
		if err != nil {
			return nil, false, fmt.Errorf("store: offset %d: %w", offs[i], err)
		}
		out = append(out, Entry{offs[i], m})
	}
	if len(out) == 0 {
		// Everything in this page was dropped: continue past it.
		return s.pullDisk(ctx, q, last, limit)
	}
	return out, end, nil
}
