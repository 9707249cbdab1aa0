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
	"github.com/nats-io/nats.go/jetstream"
)

// retainedCounts are the per-instance retained counts (the quota's
// answer), kept exact by this process's Retain/DeleteRetained; loaded from
// the stream at Open. Writers on other nodes of a cell are not seen yet.
type retainedCounts struct {
	mu    sync.Mutex
	count map[string]int
	bytes map[string]int64
}

func (r *retainedCounts) init() { r.count, r.bytes = map[string]int{}, map[string]int64{} }

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

func (s *Store) loadRetained(ctx context.Context) error {
	return s.scanStream(ctx, s.name+"_RETAINED", s.sub+".r.>", func(r rawMsg) error {
		m, err := store.DecodeRecord(r.data)
		if err != nil {
			return fmt.Errorf("jsstore: retained record %d: %w", r.seq, err)
		}
		s.rt.count[m.Instance]++
		s.rt.bytes[m.Instance] += int64(len(r.data))
		return nil
	})
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
	return len(m.Data), nil
}

// Retain stores m as its topic's retained message (one per subject), or
// clears it for an empty payload; ErrRetainedQuota for a new topic beyond
// MaxRetained. It returns after the PubAck (or purge).
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
	old, err := s.retainedSize(ctx, m.Instance, m.Topic)
	if err != nil {
		return err
	}
	subj := TopicSubject(s.sub, "r", m.Instance, m.Topic)
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	size := -1
	if len(m.Payload) == 0 {
		if old < 0 {
			return nil
		}
		if err := s.retain.Purge(cctx, jetstream.WithPurgeSubject(subj)); err != nil {
			return fmt.Errorf("jsstore: clear retained: %w", err)
		}
	} else {
		if q := s.limitsFor(m.Instance).MaxRetained; old < 0 && q > 0 && s.rt.count[m.Instance] >= q {
			return fmt.Errorf("%w: %d of %d", store.ErrRetainedQuota, s.rt.count[m.Instance], q)
		}
		m.Retain = true
		m.Time = s.opts.Now()
		data := store.EncodeRecord(nil, &m)
		if _, err := s.js.Publish(cctx, subj, data, jetstream.WithExpectStream(s.name+"_RETAINED")); err != nil {
			return fmt.Errorf("jsstore: write retained: %w", err)
		}
		s.written.Add(uint64(len(data)))
		size = len(data)
	}
	if old >= 0 {
		s.rt.count[m.Instance]--
		s.rt.bytes[m.Instance] -= int64(old)
	}
	if size >= 0 {
		s.rt.count[m.Instance]++
		s.rt.bytes[m.Instance] += int64(size)
	}
	return nil
}

// RetainedFull reports whether a new retained topic would exceed MaxRetained.
func (s *Store) RetainedFull(instance, topic string) bool {
	q := s.limitsFor(instance).MaxRetained
	if q <= 0 {
		return false
	}
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
	if s.rt.count[instance] < q {
		return false
	}
	old, err := s.retainedSize(context.Background(), instance, topic)
	return err != nil || old < 0
}

// DeleteRetained removes every retained message of an instance and
// returns their topics.
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
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	if err := s.retain.Purge(cctx, jetstream.WithPurgeSubject(AllSubject(s.sub, "r", instance))); err != nil {
		return nil, fmt.Errorf("jsstore: delete retained: %w", err)
	}
	topics := make([]string, len(msgs))
	for i := range msgs {
		topics[i] = msgs[i].Topic
	}
	delete(s.rt.count, instance)
	delete(s.rt.bytes, instance)
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
		if !live || !m.Expired(now) {
			out = append(out, *m)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out, err
}

// RetainedInstances lists the instances with retained messages.
func (s *Store) RetainedInstances() []string {
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
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
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
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
