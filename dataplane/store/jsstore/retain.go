package jsstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/internal/mqtttopic"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// retainedCounts are the per-instance retained counts and bytes (the
// quota's answer). They follow the retained stream: this node applies its
// own writes at once (with their sequence) and an ordered consumer applies
// every write of the cell in sequence order, older than applied skipped,
// so the counts are exact on every node once it has seen the writes.
// A clear is a tombstone (the empty record, with a per-message TTL of
// tombstoneTTL) that replaces the subject's message, so that the other
// nodes see it too.
type retainedCounts struct {
	mu     sync.Mutex // serialises this node's Retain/DeleteRetained
	smu    sync.Mutex // guards the maps
	topics map[string]map[string]retEnt
	count  map[string]int
	bytes  map[string]int64
}

// retEnt is the last write applied of a retained subject.
type retEnt struct {
	seq  uint64
	size int // record bytes; -1: cleared
}

const tombstoneTTL = 10 * time.Minute

func (r *retainedCounts) init() {
	r.topics, r.count, r.bytes = map[string]map[string]retEnt{}, map[string]int{}, map[string]int64{}
}

// apply records the write seq of subj (size -1: a clear).
func (r *retainedCounts) apply(inst, subj string, seq uint64, size int, fromWatch bool) {
	r.smu.Lock()
	defer r.smu.Unlock()
	t := r.topics[inst]
	if t == nil {
		t = map[string]retEnt{}
		r.topics[inst] = t
	}
	cur, ok := t[subj]
	if ok && seq <= cur.seq {
		if fromWatch && cur.size < 0 && seq == cur.seq {
			delete(t, subj)
		}
		return
	}
	if ok && cur.size >= 0 {
		r.count[inst]--
		r.bytes[inst] -= int64(cur.size)
	}
	switch {
	case size >= 0:
		r.count[inst]++
		r.bytes[inst] += int64(size)
		t[subj] = retEnt{seq, size}
	case fromWatch:
		delete(t, subj)
	default:
		t[subj] = retEnt{seq, -1}
	}
	if r.count[inst] == 0 {
		delete(r.count, inst)
		delete(r.bytes, inst)
	}
}

// has reports whether subj has a retained message as far as this node knows.
func (r *retainedCounts) has(inst, subj string) bool {
	r.smu.Lock()
	defer r.smu.Unlock()
	e, ok := r.topics[inst][subj]
	return ok && e.size >= 0
}

func (r *retainedCounts) countOf(inst string) int {
	r.smu.Lock()
	defer r.smu.Unlock()
	return r.count[inst]
}

const scanBatch = 1024

// scanStream calls fn for every message of st matching subj.
func (s *Store) scanStream(ctx context.Context, stream, subj string, fn func(rawMsg) error) error {
	var seq uint64 = 1
	for {
		raw, err := s.directBatch(ctx, stream, seq, subj, scanBatch)
		if err != nil {
			return err
		}
		for _, r := range raw {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(raw) < scanBatch {
			return nil
		}
		seq = raw[len(raw)-1].seq + 1
	}
}

// retainedSize returns the stored record size of a topic's retained
// message, or -1 if it has none.
func (s *Store) retainedSize(ctx context.Context, instance, topic string) (int, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	m, err := s.retain.GetLastMsgForSubject(ctx, TopicSubject(s.sub, "r", instance, topic))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("jsstore: read retained: %w", err)
	}
	if rec, err := store.DecodeRecord(m.Data); err != nil || len(rec.Payload) == 0 {
		return -1, nil //nolint:nilerr // a tombstone or foreign record: none
	}
	return len(m.Data), nil
}

// Retain stores m as its topic's retained message (one per subject), or
// clears it for an empty payload (a tombstone); ErrRetainedQuota for a new
// topic beyond MaxRetained (as far as this node has seen the cell's
// writes). It returns after the PubAck.
func (s *Store) Retain(ctx context.Context, m store.Message) error {
	if err := store.CheckName("instance", m.Instance); err != nil {
		return err
	}
	if err := store.CheckName("topic", m.Topic); err != nil || mqtttopic.HasWildcard(m.Topic) {
		return fmt.Errorf("%w: topic %q", store.ErrInvalidName, m.Topic)
	}
	if err := s.check(); err != nil {
		return err
	}
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
	subj := TopicSubject(s.sub, "r", m.Instance, m.Topic)
	exists := s.rt.has(m.Instance, subj)
	if len(m.Payload) == 0 {
		if !exists {
			old, err := s.retainedSize(ctx, m.Instance, m.Topic)
			if err != nil || old < 0 {
				return err
			}
		}
		return s.writeRetained(ctx, m, true)
	}
	if q := s.limitsFor(m.Instance).MaxRetained; !exists && q > 0 && s.rt.countOf(m.Instance) >= q {
		return fmt.Errorf("%w: %d of %d", store.ErrRetainedQuota, s.rt.countOf(m.Instance), q)
	}
	return s.writeRetained(ctx, m, false)
}

// writeRetained publishes a retained message (or a clear's tombstone) and
// applies it to the counts.
func (s *Store) writeRetained(ctx context.Context, m store.Message, clear bool) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	m.Retain = true
	m.Time = s.opts.Now()
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(s.name + "_RETAINED")}
	if clear {
		m.Payload = nil
		opts = append(opts, jetstream.WithMsgTTL(tombstoneTTL))
	}
	subj := TopicSubject(s.sub, "r", m.Instance, m.Topic)
	msg := &nats.Msg{Subject: subj, Header: nats.Header{}, Data: store.EncodeRecord(nil, &m)}
	if s.opts.Node != "" {
		msg.Header.Set(nodeHeader, s.opts.Node)
	}
	ack, err := s.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		return fmt.Errorf("jsstore: write retained: %w", err)
	}
	s.written.Add(uint64(len(msg.Data)))
	size := len(msg.Data)
	if clear {
		size = -1
	}
	s.rt.apply(m.Instance, subj, ack.Sequence, size, false)
	return nil
}

// RetainedFull reports whether a new retained topic would exceed MaxRetained.
func (s *Store) RetainedFull(instance, topic string) bool {
	q := s.limitsFor(instance).MaxRetained
	if q <= 0 || s.rt.countOf(instance) < q {
		return false
	}
	return !s.rt.has(instance, TopicSubject(s.sub, "r", instance, topic))
}

// DeleteRetained removes every retained message of an instance (a
// tombstone each) and returns their topics.
func (s *Store) DeleteRetained(ctx context.Context, instance string) ([]string, error) {
	if err := store.CheckName("instance", instance); err != nil {
		return nil, err
	}
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
	msgs, err := s.retained(ctx, instance, AllSubject(s.sub, "r", instance), false)
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	topics := make([]string, len(msgs))
	for i := range msgs {
		if err := s.writeRetained(ctx, msgs[i], true); err != nil {
			return nil, err
		}
		topics[i] = msgs[i].Topic
	}
	return topics, nil
}

// Retained returns the unexpired retained messages whose topics match filter.
func (s *Store) Retained(ctx context.Context, instance, filter string) ([]store.Message, error) {
	if mqtttopic.CheckFilter(filter) != nil {
		return nil, fmt.Errorf("%w: filter %q", store.ErrInvalidName, filter)
	}
	return s.retained(ctx, instance, FilterSubject(s.sub, "r", instance, filter), true)
}

// AllRetained returns every unexpired retained message, '$' topics too.
func (s *Store) AllRetained(ctx context.Context, instance string) ([]store.Message, error) {
	return s.retained(ctx, instance, AllSubject(s.sub, "r", instance), true)
}

func (s *Store) retained(ctx context.Context, instance, subj string, live bool) ([]store.Message, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	now := s.opts.Now()
	var out []store.Message
	err := s.scanStream(ctx, s.name+"_RETAINED", subj, func(r rawMsg) error {
		m, err := store.DecodeRecord(r.data)
		if err != nil {
			return fmt.Errorf("jsstore: retained of %s: %w", instance, err)
		}
		if len(m.Payload) > 0 && (!live || !m.Expired(now)) {
			out = append(out, *m)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out, err
}

// RetainedInstances lists the instances with retained messages.
func (s *Store) RetainedInstances() []string {
	s.rt.smu.Lock()
	defer s.rt.smu.Unlock()
	out := make([]string, 0, len(s.rt.count))
	for inst, n := range s.rt.count {
		if n > 0 {
			out = append(out, inst)
		}
	}
	sort.Strings(out)
	return out
}

// SetLimits sets an instance's limits. MaxRetained applies at once;
// MaxAge/MaxBytes become the stream's limits at the next Append or
// EnforceRetention (the server then enforces them continuously).
func (s *Store) SetLimits(instance string, l store.Limits) {
	s.limitsMu.Lock()
	s.limits[instance] = l
	s.dirty[instance] = true
	s.limitsMu.Unlock()
}

// EnforceRetention pushes changed limits to the instances' streams. The
// server drops messages past MaxAge (on its own clock, not now) and
// beyond MaxBytes itself.
func (s *Store) EnforceRetention(ctx context.Context, _ time.Time) error {
	s.limitsMu.Lock()
	var todo []string
	for inst := range s.dirty {
		todo = append(todo, inst)
	}
	s.limitsMu.Unlock()
	for _, inst := range todo {
		s.streamsMu.Lock()
		exists := s.streams[inst]
		s.streamsMu.Unlock()
		if !exists {
			if n, err := s.lastSeq(ctx, inst); err != nil || n == 0 {
				continue // created with the limits on first Append
			}
		}
		if err := s.ensureStream(ctx, inst); err != nil {
			return err
		}
	}
	return nil
}

// Stats returns an instance's storage figures (LogBytes: the stream's
// stored bytes as the server counts them, subjects and overhead included).
func (s *Store) Stats(instance string) store.Stats {
	st := store.Stats{}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	if str, err := s.js.Stream(ctx, s.StreamName(instance)); err == nil {
		if info, err := str.Info(ctx); err == nil {
			st.LogBytes = int64(info.State.Bytes)
		}
	}
	s.rt.smu.Lock()
	defer s.rt.smu.Unlock()
	st.RetainedMessages, st.RetainedBytes = s.rt.count[instance], s.rt.bytes[instance]
	return st
}

// Instances lists the instances whose streams hold bytes.
func (s *Store) Instances() []string {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	var out []string
	l := s.js.ListStreams(ctx)
	for info := range l.Info() {
		inst, ok := info.Config.Metadata["aerie-instance"]
		if ok && strings.HasPrefix(info.Config.Name, s.name+"_M_") && info.State.Bytes > 0 {
			out = append(out, inst)
		}
	}
	sort.Strings(out)
	return out
}
