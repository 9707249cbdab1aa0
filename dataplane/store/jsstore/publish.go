package jsstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aeriemq/aerie/dataplane/store"
)

// Appends survive a stream leader change. Each message carries a message
// ID (Nats-Msg-Id) unique to this process; a message without its PubAck
// after appendAttempt is published again with the same ID, which the
// stream de-duplicates within dedupWindow (it answers with the first
// copy's sequence). When the leader dies with a publish in flight, the
// publish is answered by the new leader a moment after its election
// instead of failing after the whole call timeout; Append gives up only
// at the call's deadline (without one: Options.Timeout, at least
// appendDeadline).
const (
	appendAttempt = 1500 * time.Millisecond
	dedupWindow   = 20 * time.Second
	// appendDeadline is the least an Append without a deadline keeps
	// retrying: longer than a Raft election (NATS: 4–9 s plus detection).
	appendDeadline = 15 * time.Second
)

// newMsgIDs returns the prefix of this process's message IDs.
func newMsgIDs() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b) + "-"
}

// publish appends msgs (stamped with the store clock) and returns their
// sequences, retrying unanswered ones with their message IDs.
func (s *Store) publish(ctx context.Context, msgs []store.Message) ([]uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(s.opts.Timeout, appendDeadline))
		defer cancel()
	}
	now := s.opts.Now()
	out := make([]*nats.Msg, len(msgs))
	base := s.msgSeq.Add(uint64(len(msgs))) - uint64(len(msgs))
	for i := range msgs {
		m := &msgs[i]
		m.Time = now
		out[i] = &nats.Msg{Subject: TopicSubject(s.sub, "m", m.Instance, m.Topic), Data: store.EncodeRecord(nil, m), Header: nats.Header{}}
		out[i].Header.Set(nats.MsgIdHdr, s.msgIDs+strconv.FormatUint(base+uint64(i), 36))
		s.written.Add(uint64(len(out[i].Data)))
	}
	offs := make([]uint64, len(msgs))
	todo := make([]int, len(msgs))
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		var err error
		if todo, err = s.publishRound(ctx, msgs, out, offs, todo); err != nil {
			return nil, err
		}
		if len(todo) > 0 && attempt > 0 {
			select { // the stream may be electing a leader
			case <-ctx.Done():
				return nil, fmt.Errorf("jsstore: append: %w", ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return offs, nil
}

// publishRound publishes msgs[todo] and waits up to appendAttempt for
// their PubAcks; it returns those still unanswered.
func (s *Store) publishRound(ctx context.Context, msgs []store.Message, out []*nats.Msg, offs []uint64, todo []int) ([]int, error) {
	futs := make([]jetstream.PubAckFuture, len(todo))
	for j, i := range todo {
		f, err := s.js.PublishMsgAsync(out[i], jetstream.WithExpectStream(s.StreamName(msgs[i].Instance)))
		if err != nil {
			return nil, fmt.Errorf("jsstore: publish: %w", err)
		}
		futs[j] = f
	}
	timer := time.NewTimer(appendAttempt)
	defer timer.Stop()
	var again []int
	for j, f := range futs {
		select {
		case ack := <-f.Ok():
			offs[todo[j]] = ack.Sequence
		case err := <-f.Err():
			if ctx.Err() != nil {
				return nil, fmt.Errorf("jsstore: append: %w", err)
			}
			again = append(again, todo[j]) // no responders, leader lost, …: again
		case <-timer.C:
			again = append(again, todo[j:]...)
			return again, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("jsstore: append: %w", ctx.Err())
		}
	}
	return again, nil
}
