package jsstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/nats-io/nats.go"
)

// directGetRequest is JetStream's batched direct get (server ≥ 2.11).
type directGetRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	MultiLast []string   `json:"multi_last,omitempty"`
	Batch     int        `json:"batch,omitempty"`
}

// directBatch returns up to limit messages of stream with sequence ≥ seq
// whose subjects match subj, in one request (any replica may answer: a
// follower can lag its leader by the entries it has not applied yet, which
// a later pull then returns). A stream that does not exist reads as empty.
func (s *Store) directBatch(ctx context.Context, stream string, seq uint64, subj string, limit int) ([]rawMsg, error) {
	return s.direct(ctx, stream, directGetRequest{Seq: seq, NextFor: subj, Batch: limit})
}

// direct runs one batched direct get.
func (s *Store) direct(ctx context.Context, stream string, r directGetRequest) ([]rawMsg, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errDirectGet, err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // best effort
	req, _ := json.Marshal(r)
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, req); err != nil {
		return nil, fmt.Errorf("%w: %w", errDirectGet, err)
	}
	s.reads.Add(1)
	var out []rawMsg
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", errDirectGet, stream, err)
		}
		switch st := m.Header.Get("Status"); st {
		case "":
		case "204": // end of batch
			return out, nil
		case "404", "503": // nothing matches / no such stream
			return out, nil
		default:
			return nil, fmt.Errorf("%w: %s: status %s %s", errDirectGet, stream, st, m.Header.Get("Description"))
		}
		n, err := strconv.ParseUint(m.Header.Get(nats.JSSequence), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: sequence header: %w", errDirectGet, stream, err)
		}
		out = append(out, rawMsg{seq: n, data: m.Data, hdr: m.Header})
	}
}

// events coalesces "queue has new entries" notifications, as the RocksDB
// store does: only queues with a persistent subscriber are raised. Appends
// made on other nodes of a cell are raised too (their notifications).
//
// Reads are direct gets that any replica may answer, and a follower may
// not have applied an entry yet when the session woken for it pulls. So
// the highest offset raised per queue is remembered, and a PullSession
// that ends short of it while returning less than asked re-raises the
// queue after a short delay (doubling from retryBase, at most retryMax
// times per offset): the session pulls again until it reads the entry.
type events struct {
	mu      sync.Mutex
	pending map[store.QueueRef]uint64
	max     map[store.QueueRef]uint64
	instMax map[string]uint64 // highest offset raised per instance (catchup.go)
	retry   map[store.QueueRef]*retryState
	ch      chan struct{}
}

type retryState struct {
	target uint64
	n      int
	armed  bool
}

const (
	retryBase = 5 * time.Millisecond
	retryMax  = 10 // 5ms·(2^10-1) ≈ 5s in all
)

func (e *events) init() {
	e.pending, e.max, e.retry = map[store.QueueRef]uint64{}, map[store.QueueRef]uint64{}, map[store.QueueRef]*retryState{}
	e.instMax = map[string]uint64{}
	e.ch = make(chan struct{}, 1)
}

// raise records events for locally appended messages.
func (s *Store) raise(msgs []store.Message, offs []uint64) {
	byInst := map[string][]int{}
	for i := range msgs {
		byInst[msgs[i].Instance] = append(byInst[msgs[i].Instance], i)
	}
	for inst, idx := range byInst {
		topics, o := make([]string, len(idx)), make([]uint64, len(idx))
		for j, i := range idx {
			topics[j], o[j] = msgs[i].Topic, offs[i]
		}
		s.raiseTopics(inst, topics, o)
	}
}

// raiseTopics records events for messages of one instance.
func (s *Store) raiseTopics(inst string, topics []string, offs []uint64) {
	var qs []string
	s.ss.mu.RLock()
	s.ev.mu.Lock()
	n := 0
	for i, topic := range topics {
		s.ev.noted(inst, offs[i])
		qs = qs[:0]
		if len(s.ss.byQueue[inst][topic]) > 0 {
			qs = append(qs, topic)
		}
		if t := s.ss.tries[inst]; t != nil {
			qs = t.Match(qs, topic)
		}
		for _, q := range qs {
			ref := store.QueueRef{Instance: inst, Queue: q}
			if offs[i] > s.ev.pending[ref] {
				s.ev.pending[ref] = offs[i]
			}
			if offs[i] > s.ev.max[ref] {
				s.ev.max[ref] = offs[i]
			}
			n++
		}
	}
	s.ev.mu.Unlock()
	s.ss.mu.RUnlock()
	if n > 0 {
		s.ev.signal()
	}
}

func (e *events) signal() {
	select {
	case e.ch <- struct{}{}:
	default:
	}
}

// pulled is told that a session's PullSession of q returned n of limit
// entries and left its read position at read; it arms a re-raise when the
// queue was raised beyond read (a lagging replica answered).
func (e *events) pulled(ref store.QueueRef, read uint64, n, limit int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	target := e.max[ref]
	if target <= read || n >= limit {
		if r := e.retry[ref]; r != nil && r.target <= read && !r.armed {
			delete(e.retry, ref)
		}
		return
	}
	r := e.retry[ref]
	if r == nil || r.target != target {
		r = &retryState{target: target}
		e.retry[ref] = r
	}
	if r.armed || r.n >= retryMax {
		return
	}
	r.armed = true
	time.AfterFunc(retryBase<<r.n, func() {
		e.mu.Lock()
		r.armed = false
		r.n++
		if r.target > e.pending[ref] {
			e.pending[ref] = r.target
		}
		e.mu.Unlock()
		e.signal()
	})
}

// forget drops the remembered offsets of a queue nobody subscribes to.
func (e *events) forget(ref store.QueueRef) {
	e.mu.Lock()
	delete(e.max, ref)
	delete(e.retry, ref)
	e.mu.Unlock()
}

// Events signals that TakeEvents has something.
func (s *Store) Events() <-chan struct{} { return s.ev.ch }

// TakeEvents returns and clears the pending queue events.
func (s *Store) TakeEvents() []store.QueueEvent {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	out := make([]store.QueueEvent, 0, len(s.ev.pending))
	for q, last := range s.ev.pending {
		out = append(out, store.QueueEvent{QueueRef: q, Last: last})
	}
	clear(s.ev.pending)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Instance != out[j].Instance {
			return out[i].Instance < out[j].Instance
		}
		return out[i].Queue < out[j].Queue
	})
	return out
}
