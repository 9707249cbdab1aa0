package store

import (
	"github.com/aeriemq/aerie/internal/mqtttopic"

	"context"
	"fmt"
	"time"

	"github.com/linxGnu/grocksdb"
)

// Append stores msgs in the commit log and indexes them in their light
// queues. It returns once the group commit holding them is durable under
// the sync policy, so the gateway sends PUBACK/PUBREC after it returns nil.
// Offsets are assigned in order and are the queue sequence numbers.
// Append sets each message's Time and takes ownership of the payloads: the
// caller must not modify them afterwards. If ctx ends first the messages may
// still be committed.
func (s *Store) Append(ctx context.Context, msgs []Message) ([]uint64, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	for i := range msgs {
		if err := checkName("instance", msgs[i].Instance); err != nil {
			return nil, err
		}
		if err := checkName("topic", msgs[i].Topic); err != nil || mqtttopic.HasWildcard(msgs[i].Topic) {
			return nil, fmt.Errorf("%w: topic %q", ErrInvalidName, msgs[i].Topic)
		}
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	r := &appendReq{msgs: msgs, done: make(chan struct{})}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.leave()
		return nil, ctx.Err()
	}
	s.leave()
	select {
	case <-r.done:
		return r.offs, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// control runs f on the writer goroutine, between group commits.
// The caller must hold enter (so Close cannot stop the writer meanwhile).
func (s *Store) control(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case s.ctrl <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

func (s *Store) writer() {
	defer s.wg.Done()
	w := newBatchWriter(s)
	defer w.destroy()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var group []*appendReq
	for {
		group = group[:0]
		select {
		case r := <-s.reqs:
			group = append(group, r)
		case f := <-s.ctrl:
			f()
			continue
		case <-s.quit:
			for {
				select {
				case r := <-s.reqs:
					w.commit([]*appendReq{r})
				default:
					// Final checkpoint: Close flushes the unlogged index.
					_ = s.db.PutCF(s.woNoWAL, s.lq, ckptKey, u64b(s.next.Load()-1))
					return
				}
			}
		}
		n := len(group[0].msgs)
		if s.opts.Sync == SyncBatch {
			timer.Reset(s.opts.SyncDelay)
		gather:
			for n < s.opts.MaxBatch {
				select {
				case r := <-s.reqs:
					group = append(group, r)
					n += len(r.msgs)
				case <-timer.C:
					break gather
				}
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		} else {
		drain:
			for n < s.opts.MaxBatch {
				select {
				case r := <-s.reqs:
					group = append(group, r)
					n += len(r.msgs)
				default:
					break drain
				}
			}
		}
		w.commit(group)
	}
}

// indexEntry is one light-queue entry produced by a commit.
type indexEntry struct {
	instance, queue string
	off             uint64
	msg             *Message
}

type batchWriter struct {
	s      *Store
	log    *grocksdb.WriteBatch
	lq     *grocksdb.WriteBatch
	buf    []byte
	key    []byte
	idx    []indexEntry
	insts  map[string]uint64
	queues []string
	// The checkpoint may lag (re-indexing is idempotent): it is written at
	// most every ckptEvery commits or ckptInterval, and at Close.
	sinceCkpt int
	lastCkpt  time.Time
}

const (
	ckptEvery    = 256
	ckptInterval = 100 * time.Millisecond
)

func newBatchWriter(s *Store) *batchWriter {
	return &batchWriter{s: s, log: grocksdb.NewWriteBatch(), lq: grocksdb.NewWriteBatch(), insts: map[string]uint64{}}
}

func (w *batchWriter) destroy() { w.log.Destroy(); w.lq.Destroy() }

// queuesFor lists the queues a message to topic goes to: the topic's own
// queue and every wildcard queue of the instance it matches. Caller holds
// filtersMu (read).
func (s *Store) queuesFor(dst []string, instance, topic string) []string {
	dst = append(dst[:0], topic)
	if t := s.tries[instance]; t != nil {
		dst = t.Match(dst, topic)
	}
	return dst
}

func (w *batchWriter) commit(group []*appendReq) {
	s := w.s
	now := s.opts.Now()
	w.log.Clear()
	w.lq.Clear()
	w.idx = w.idx[:0]
	clear(w.insts)
	s.filtersMu.RLock()
	next := s.next.Load()
	for _, r := range group {
		r.offs = make([]uint64, len(r.msgs))
		for i := range r.msgs {
			m := new(Message)
			*m = r.msgs[i]
			m.Time = now
			off := next
			next++
			r.offs[i] = off
			w.buf = encodeMessage(w.buf[:0], m)
			w.log.PutCF(s.log, logKey(off), w.buf)
			w.insts[m.Instance] += uint64(8 + len(w.buf))
			w.queues = s.queuesFor(w.queues, m.Instance, m.Topic)
			for _, q := range w.queues {
				w.key = appendLqKey(w.key[:0], m.Instance, q, off)
				w.lq.PutCF(s.lq, w.key, nil)
				w.idx = append(w.idx, indexEntry{m.Instance, q, off, m})
				s.addTopicBytes(m.Instance, q, 8+len(w.buf))
			}
		}
	}
	s.next.Store(next)
	s.filtersMu.RUnlock()
	last := next - 1

	s.countersMu.Lock()
	for inst, b := range w.insts {
		s.bytes[inst] += b
		w.log.PutCF(s.meta, metaKey(metaBytes, inst), u64b(s.bytes[inst]))
	}
	s.countersMu.Unlock()
	if w.sinceCkpt++; w.sinceCkpt >= ckptEvery || time.Since(w.lastCkpt) >= ckptInterval {
		w.lq.PutCF(s.lq, ckptKey, u64b(last))
		w.sinceCkpt, w.lastCkpt = 0, time.Now()
	}

	err := s.db.Write(s.woLog, w.log)
	if err == nil {
		err = s.db.Write(s.woNoWAL, w.lq)
	}
	s.written.Add(uint64(len(w.log.Data()) + len(w.lq.Data())))
	s.commits.Add(1)
	if err != nil {
		err = fmt.Errorf("store: commit: %w", err)
	} else {
		s.tc.add(w.idx, last)
		s.raise(w.idx)
		s.changedMu.Lock()
		if s.changed != nil {
			close(s.changed)
			s.changed = nil
		}
		s.changedMu.Unlock()
	}
	for _, r := range group {
		r.err = err
		if err != nil {
			r.offs = nil
		}
		close(r.done)
	}
}
