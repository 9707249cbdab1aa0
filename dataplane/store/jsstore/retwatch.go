package jsstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/nats-io/nats.go/jetstream"
)

// watchRetained starts the ordered consumer of the retained stream that
// keeps the counts exact across the cell and emits CellRetained for the
// other nodes' writes after Open; it returns once the stream's current
// content is counted.
func (s *Store) watchRetained(ctx context.Context) error {
	info, err := s.retain.Info(ctx)
	if err != nil {
		return fmt.Errorf("jsstore: retained stream info: %w", err)
	}
	start := info.State.LastSeq
	ready := make(chan struct{})
	var once sync.Once
	err = s.follow(ctx, s.name+"_RETAINED", s.sub+".r.>", 1, func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		s.onRetained(m, md.Sequence.Stream, md.Sequence.Stream > start)
		if md.NumPending == 0 {
			once.Do(func() { close(ready) })
		}
	})
	if err != nil {
		return err
	}
	return s.awaitRetained(ctx, ready)
}

// awaitRetained waits until the consumer has caught up, or the stream
// holds nothing (no message will come).
func (s *Store) awaitRetained(ctx context.Context, ready chan struct{}) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ready:
			return nil
		case <-t.C:
			if info, err := s.retain.Info(ctx); err == nil && info.State.Msgs == 0 {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("jsstore: load retained: %w", ctx.Err())
		}
	}
}

// onRetained applies a write of the retained stream; a new one made on
// another node is a CellRetained.
func (s *Store) onRetained(m jetstream.Msg, seq uint64, isNew bool) {
	inst, _, err := SubjectTopic(s.sub, "r", m.Subject())
	if err != nil {
		return
	}
	rec, err := store.DecodeRecord(m.Data())
	if err != nil {
		return
	}
	size := len(m.Data())
	if len(rec.Payload) == 0 {
		size = -1
	}
	s.rt.apply(inst, m.Subject(), seq, size, true)
	if isNew && s.opts.Node != "" && m.Headers().Get(nodeHeader) != s.opts.Node {
		s.cell.push(store.CellEvent{Kind: store.CellRetained, Message: *rec})
	}
}
