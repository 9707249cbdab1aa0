package jsstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/nats-io/nats.go"
)

// directGetRequest is JetStream's batched direct get (server ≥ 2.11).
type directGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	Batch   int    `json:"batch,omitempty"`
}

// directBatch returns up to limit messages of stream with sequence ≥ seq
// whose subjects match subj, in one request (any replica may answer: a
// follower can lag its leader by the entries it has not applied yet, which
// a later pull then returns). A stream that does not exist reads as empty.
func (s *Store) directBatch(ctx context.Context, stream string, seq uint64, subj string, limit int) ([]rawMsg, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errDirectGet, err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // best effort
	req, _ := json.Marshal(directGetRequest{Seq: seq, NextFor: subj, Batch: limit})
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
		out = append(out, rawMsg{seq: n, data: m.Data})
	}
}

// events coalesces "queue has new entries" notifications, as the RocksDB
// store does: only queues with a persistent subscriber are raised.
type events struct {
	mu      sync.Mutex
	pending map[store.QueueRef]uint64
	ch      chan struct{}
}

func (e *events) init() { e.pending = map[store.QueueRef]uint64{}; e.ch = make(chan struct{}, 1) }

// raise records events for the appended messages (local appends only: the
// cross-node fan-out of a cell is not part of this backend yet).
func (s *Store) raise(msgs []store.Message, offs []uint64) {
	var qs []string
	s.ss.mu.RLock()
	s.ev.mu.Lock()
	n := 0
	for i := range msgs {
		inst := msgs[i].Instance
		qs = qs[:0]
		if len(s.ss.byQueue[inst][msgs[i].Topic]) > 0 {
			qs = append(qs, msgs[i].Topic)
		}
		if t := s.ss.tries[inst]; t != nil {
			qs = t.Match(qs, msgs[i].Topic)
		}
		for _, q := range qs {
			s.ev.pending[store.QueueRef{Instance: inst, Queue: q}] = offs[i]
			n++
		}
	}
	s.ev.mu.Unlock()
	s.ss.mu.RUnlock()
	if n > 0 {
		select {
		case s.ev.ch <- struct{}{}:
		default:
		}
	}
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
