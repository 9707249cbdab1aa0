package jsstore

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/internal/mqtttopic"
)

// Topic queues and consumer groups (store.TopicLog) on JetStream.
//
// A provisioned topic's queue is only its subject filter on the instance's
// stream: no index and no copy (a wildcard topic reads like a wildcard
// session queue). SetTopics records the instance's topics and their
// policy in memory: every node of a cell applies the pushed configuration
// itself.
//
// Retention per topic differs from RocksDB's: a topic's MaxAge is a read
// floor — Pull, QueueLag and TopicStats of the topic's queue skip what was
// stored before now−MaxAge (the floor is the first sequence stored at or
// after that time, from a direct get by start time) — while the messages
// themselves follow the instance stream's limits, so a topic cannot keep
// messages longer than its instance does. A topic's MaxBytes is not
// enforced (the stream's MaxBytes is).
//
// TopicStats counts a topic's readable messages exactly (the
// Nats-Num-Pending of a one-message direct get on its filter) and
// approximates its bytes as that count times the stream's mean stored
// bytes per message (JetStream keeps no per-subject byte count); figures
// are cached for topicStatsTTL.
//
// Consumer groups: "g.<inst>.<queue>.<group>" → u64 BE committed offset in
// the sessions bucket, shared by the cell. CommitGroup is a
// compare-and-set that only moves a cursor forwards, so two nodes (a rule
// that changed hands, two readers of one group on two nodes) never move it
// back.

const topicStatsTTL = 2 * time.Second

// topicState is the in-memory side of the topic log.
type topicState struct {
	mu sync.RWMutex
	qs map[string]map[string]store.TopicQueue // instance → filter → policy

	statsMu sync.Mutex
	stats   map[string]cachedStats

	changedMu sync.Mutex
	changed   chan struct{}
}

type cachedStats struct {
	at    time.Time
	stats []store.TopicStats
}

func (t *topicState) init() {
	t.qs, t.stats = map[string]map[string]store.TopicQueue{}, map[string]cachedStats{}
}

// signalChanged wakes the Changed waiters.
func (t *topicState) signalChanged() {
	t.changedMu.Lock()
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
	t.changedMu.Unlock()
}

// Changed returns a channel closed at the next append of this node or,
// in a cell, at the next append notification of another node (and once
// more shortly after it, for a replica that had not applied it yet).
func (s *Store) Changed() <-chan struct{} {
	s.tp.changedMu.Lock()
	defer s.tp.changedMu.Unlock()
	if s.tp.changed == nil {
		s.tp.changed = make(chan struct{})
	}
	return s.tp.changed
}

// SetTopics makes the instance's topic queues exactly topics.
func (s *Store) SetTopics(_ context.Context, instance string, topics []store.TopicQueue) error {
	if err := store.CheckName("instance", instance); err != nil {
		return err
	}
	for _, t := range topics {
		if mqtttopic.CheckFilter(t.Filter) != nil {
			return fmt.Errorf("%w: filter %q", store.ErrInvalidName, t.Filter)
		}
	}
	if err := s.check(); err != nil {
		return err
	}
	m := make(map[string]store.TopicQueue, len(topics))
	for _, t := range topics {
		t.Floor = 0
		m[t.Filter] = t
	}
	s.tp.mu.Lock()
	if len(m) == 0 {
		delete(s.tp.qs, instance)
	} else {
		s.tp.qs[instance] = m
	}
	s.tp.mu.Unlock()
	s.tp.statsMu.Lock()
	delete(s.tp.stats, instance)
	s.tp.statsMu.Unlock()
	return nil
}

// TopicInstances lists the instances that have topic queues.
func (s *Store) TopicInstances() []string {
	s.tp.mu.RLock()
	defer s.tp.mu.RUnlock()
	out := make([]string, 0, len(s.tp.qs))
	for i := range s.tp.qs {
		out = append(out, i)
	}
	sort.Strings(out)
	return out
}

// readFloor returns where reads of a queue start: after, or the topic's
// MaxAge floor when higher; ok is false when nothing of the queue is
// readable.
func (s *Store) readFloor(ctx context.Context, instance, queue string, after uint64) (uint64, bool, error) {
	s.tp.mu.RLock()
	t, isTopic := s.tp.qs[instance][queue]
	s.tp.mu.RUnlock()
	if !isTopic || t.MaxAge <= 0 {
		return after, true, nil
	}
	since := s.opts.Now().Add(-t.MaxAge).UTC()
	raw, err := s.direct(ctx, s.StreamName(instance), directGetRequest{StartTime: &since,
		NextFor: FilterSubject(s.sub, "m", instance, queue), Batch: 1})
	if err != nil || len(raw) == 0 {
		return after, false, err
	}
	return max(after, raw[0].seq-1), true, nil
}

// count returns how many messages of a queue follow offset after (exact,
// from the server's pending count) and the first of them.
func (s *Store) count(ctx context.Context, instance, queue string, after uint64) (uint64, *rawMsg, error) {
	raw, err := s.directBatch(ctx, s.StreamName(instance), after+1, FilterSubject(s.sub, "m", instance, queue), 1)
	if err != nil || len(raw) == 0 {
		return 0, nil, err
	}
	np, err := strconv.ParseUint(raw[0].hdr.Get("Nats-Num-Pending"), 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("jsstore: pending count of %s: %w", queue, err)
	}
	return 1 + np, &raw[0], nil
}

// QueueLag counts a queue's readable entries after offset after (at most
// limit) and reports when the first of them was stored. MQTT 5 expiry is
// not checked (as in the RocksDB store).
func (s *Store) QueueLag(ctx context.Context, instance, queue string, after uint64, limit int) (int, bool, time.Time, error) {
	if err := s.check(); err != nil {
		return 0, false, time.Time{}, err
	}
	after, ok, err := s.readFloor(ctx, instance, queue, after)
	if err != nil || !ok {
		return 0, false, time.Time{}, err
	}
	n, first, err := s.count(ctx, instance, queue, after)
	if err != nil || first == nil {
		return 0, false, time.Time{}, err
	}
	var oldest time.Time
	if m, err := store.DecodeRecord(first.data); err == nil {
		oldest = m.Time
	}
	if n > uint64(limit) {
		return limit, true, oldest, nil
	}
	return int(n), false, oldest, nil
}

// TopicStats returns the instance's topic queues with their readable
// messages' bytes (approximated, see above) and read floors.
func (s *Store) TopicStats(ctx context.Context, instance string) ([]store.TopicStats, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	s.tp.statsMu.Lock()
	c, ok := s.tp.stats[instance]
	s.tp.statsMu.Unlock()
	if ok && time.Since(c.at) < topicStatsTTL {
		return c.stats, nil
	}
	s.tp.mu.RLock()
	filters := make([]string, 0, len(s.tp.qs[instance]))
	for f := range s.tp.qs[instance] {
		filters = append(filters, f)
	}
	s.tp.mu.RUnlock()
	sort.Strings(filters)
	out := make([]store.TopicStats, 0, len(filters))
	mean := 0.0
	if len(filters) > 0 {
		var err error
		if mean, err = s.meanMsgBytes(ctx, instance); err != nil {
			return nil, err
		}
	}
	for _, f := range filters {
		floor, ok, err := s.readFloor(ctx, instance, f, 0)
		if err != nil {
			return nil, err
		}
		ts := store.TopicStats{Filter: f, Floor: floor}
		if ok {
			n, _, err := s.count(ctx, instance, f, floor)
			if err != nil {
				return nil, err
			}
			ts.Bytes = int64(float64(n)*mean + 0.5)
		}
		out = append(out, ts)
	}
	s.tp.statsMu.Lock()
	s.tp.stats[instance] = cachedStats{at: time.Now(), stats: out}
	s.tp.statsMu.Unlock()
	return out, nil
}

// meanMsgBytes is the instance stream's stored bytes per message (0 when
// empty or missing).
func (s *Store) meanMsgBytes(ctx context.Context, instance string) (float64, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	st, err := s.js.Stream(ctx, s.StreamName(instance))
	if err != nil {
		if isNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("jsstore: stream of %s: %w", instance, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jsstore: stream info of %s: %w", instance, err)
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	return float64(info.State.Bytes) / float64(info.State.Msgs), nil
}

// LastOffset is the last sequence of the instance's stream (0: none).
func (s *Store) LastOffset(ctx context.Context, instance string) (uint64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	return s.lastSeq(ctx, instance)
}

func groupPrefix(inst, queue string) string { return "g." + tok(inst) + "." + tok(queue) + "." }
func groupKVKey(inst, queue, group string) string {
	return groupPrefix(inst, queue) + tok(group)
}

// GroupCursor returns a group's committed offset (as the bucket's leader
// has it) and whether the group exists.
func (s *Store) GroupCursor(ctx context.Context, instance, queue, group string) (uint64, bool, error) {
	if err := s.check(); err != nil {
		return 0, false, err
	}
	v, _, err := s.kvLast(ctx, groupKVKey(instance, queue, group))
	if err != nil || v == nil {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("jsstore: group cursor %s/%s: malformed", queue, group)
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// CommitGroup moves a group's committed offset forwards to off (creating
// the group at off); a lower or equal offset changes nothing. The write
// is a compare-and-set on the revision read, retried on conflict.
func (s *Store) CommitGroup(ctx context.Context, instance, queue, group string, off uint64) error {
	if err := store.CheckName("group", group); err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return err
	}
	key := groupKVKey(instance, queue, group)
	for n := 0; ; n++ {
		v, rev, err := s.kvLast(ctx, key)
		if err != nil {
			return err
		}
		if len(v) == 8 && binary.BigEndian.Uint64(v) >= off {
			return nil
		}
		_, err = s.kvWrite(ctx, key, binary.BigEndian.AppendUint64(nil, off), false, &rev)
		if !errors.Is(err, errConflict) {
			return err
		}
		if n+1 >= casRetries {
			return err
		}
		if err := casBackoff(ctx, n); err != nil {
			return fmt.Errorf("jsstore: commit group %s: %w", group, err)
		}
	}
}

// DeleteGroup forgets a group's cursor.
func (s *Store) DeleteGroup(ctx context.Context, instance, queue, group string) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.purge(ctx, groupKVKey(instance, queue, group))
}

// Groups lists the groups with a cursor on a queue, by name.
func (s *Store) Groups(ctx context.Context, instance, queue string) ([]store.GroupCursorInfo, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	prefix := groupPrefix(instance, queue)
	var out []store.GroupCursorInfo
	err := s.scanKV(ctx, prefix+"*", func(k string, v []byte, _ uint64) error {
		g, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(k, prefix))
		if err != nil || len(v) != 8 {
			return nil //nolint:nilerr // not a cursor: skipped
		}
		out = append(out, store.GroupCursorInfo{Group: string(g), Committed: binary.BigEndian.Uint64(v)})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, err
}

var (
	_ store.TopicLog        = (*Store)(nil)
	_ store.DeadLetterStore = (*Store)(nil)
)
