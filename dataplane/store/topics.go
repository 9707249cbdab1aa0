package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/linxGnu/grocksdb"

	"github.com/aeriemq/aerie/internal/mqtttopic"
)

// Provisioned topics and consumer groups.
//
// A provisioned topic is a queue the store keeps for as long as the topic
// exists: the topic's own queue for a concrete filter, a pinned wildcard
// queue for a wildcard one (registered like a persistent subscription, so
// it is indexed from the moment it is set). Each topic queue has its own
// retention floor, moved by EnforceRetention past MaxAge and MaxBytes:
// readers of the queue skip what is at or below it, and its light-queue
// entries below it are range-deleted. A log record is freed once it is dead
// for every topic it matches (a record matching no topic follows the
// instance's limits), so the instance floor moves past it and the log range
// is deleted as before. Storage per topic is the log bytes of the messages
// in its queue (a message in two topics counts in both).
//
// A consumer group is a named cursor on a topic queue (meta CF); readers
// pull from the queue itself, so a group costs one key, never a copy.

const (
	metaTopics = 't' // instance's topic queues (JSON)
	metaGroup  = 'g' // consumer group cursor: 'g' 0x00 instance 0x00 queue 0x00 group → u64
)

// TopicQueue is a provisioned topic's queue policy.
type TopicQueue struct {
	Filter   string        `json:"filter"`
	MaxAge   time.Duration `json:"max_age,omitempty"`   // 0: the instance's limits
	MaxBytes int64         `json:"max_bytes,omitempty"` // 0: no byte bound
	Floor    uint64        `json:"floor,omitempty"`
}

// TopicStats is a topic queue's storage.
type TopicStats struct {
	Filter string
	Bytes  int64  // log bytes of the messages readable in the queue
	Floor  uint64 // entries at or below are no longer readable
}

type topicQ struct {
	TopicQueue
	bytes *atomic.Int64
}

func (s *Store) topicsOf(instance string) map[string]*topicQ { return s.topicQs[instance] }

func (s *Store) persistTopicsLocked(wb *grocksdb.WriteBatch, instance string) error {
	tq := s.topicQs[instance]
	if len(tq) == 0 {
		wb.DeleteCF(s.meta, metaKey(metaTopics, instance))
		return nil
	}
	list := make([]TopicQueue, 0, len(tq))
	for _, t := range tq {
		list = append(list, t.TopicQueue)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Filter < list[j].Filter })
	b, err := json.Marshal(list)
	if err != nil {
		return fmt.Errorf("store: encode topics: %w", err)
	}
	wb.PutCF(s.meta, metaKey(metaTopics, instance), b)
	return nil
}

// SetTopics makes the instance's topic queues exactly topics: new wildcard
// filters are indexed from now on, removed ones are dropped unless a
// persistent session still subscribes to them. Floors of kept topics stay.
func (s *Store) SetTopics(ctx context.Context, instance string, topics []TopicQueue) error {
	if err := checkName("instance", instance); err != nil {
		return err
	}
	for _, t := range topics {
		if mqtttopic.CheckFilter(t.Filter) != nil {
			return fmt.Errorf("%w: filter %q", ErrInvalidName, t.Filter)
		}
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if s.sameTopics(instance, topics) {
		return nil // the node re-applies its config every retention round
	}
	var added []string
	var removed []string
	var werr error
	err := s.control(ctx, func() {
		s.filtersMu.Lock()
		cur := s.topicQs[instance]
		next := make(map[string]*topicQ, len(topics))
		for _, t := range topics {
			if old, ok := cur[t.Filter]; ok {
				old.MaxAge, old.MaxBytes = t.MaxAge, t.MaxBytes
				next[t.Filter] = old
				continue
			}
			t.Floor = 0
			next[t.Filter] = &topicQ{TopicQueue: t, bytes: new(atomic.Int64)}
			added = append(added, t.Filter)
			if mqtttopic.HasWildcard(t.Filter) {
				s.addFilterLocked(instance, t.Filter)
			}
		}
		for f := range cur {
			if _, ok := next[f]; !ok {
				removed = append(removed, f)
			}
		}
		if len(next) == 0 {
			delete(s.topicQs, instance)
		} else {
			s.topicQs[instance] = next
		}
		wb := grocksdb.NewWriteBatch()
		defer wb.Destroy()
		if werr = s.persistTopicsLocked(wb, instance); werr == nil {
			werr = s.write(wb)
		}
		s.filtersMu.Unlock()
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	// A concrete topic's queue already held its messages: count them.
	for _, f := range added {
		if !mqtttopic.HasWildcard(f) {
			if err := s.recountTopic(ctx, instance, f); err != nil {
				return err
			}
		}
	}
	var wild []string
	for _, f := range removed {
		if mqtttopic.HasWildcard(f) {
			wild = append(wild, f)
		}
	}
	if len(wild) > 0 {
		return s.releaseFilters(ctx, instance, wild)
	}
	return nil
}

func (s *Store) sameTopics(instance string, topics []TopicQueue) bool {
	s.filtersMu.RLock()
	defer s.filtersMu.RUnlock()
	cur := s.topicQs[instance]
	if len(cur) != len(topics) {
		return false
	}
	for _, t := range topics {
		c, ok := cur[t.Filter]
		if !ok || c.MaxAge != t.MaxAge || c.MaxBytes != t.MaxBytes {
			return false
		}
	}
	return true
}

// recountTopic sets a topic queue's byte count from its entries.
func (s *Store) recountTopic(ctx context.Context, instance, filter string) error {
	s.filtersMu.RLock()
	t := s.topicQs[instance][filter]
	s.filtersMu.RUnlock()
	if t == nil {
		return nil
	}
	var total int64
	err := s.scanQueue(ctx, instance, filter, max(t.Floor, (*s.floors.Load())[instance]), func(off uint64, rec []byte) bool {
		total += int64(8 + len(rec))
		return true
	})
	if err != nil {
		return err
	}
	t.bytes.Store(total)
	return nil
}

// scanQueue calls fn with each entry of a queue after offset after and its
// log record, oldest first, until fn returns false.
func (s *Store) scanQueue(ctx context.Context, instance, queue string, after uint64, fn func(off uint64, rec []byte) bool) error {
	prefix := lqPrefix(instance, queue)
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	ro.SetIterateUpperBound(prefixEnd(prefix))
	it := s.db.NewIteratorCF(ro, s.lq)
	defer it.Close()
	it.Seek(lqKey(instance, queue, after+1))
	for {
		var offs []uint64
		for ; it.Valid() && len(offs) < 512; it.Next() {
			if _, _, off, ok := parseLqKey(it.Key().Data()); ok {
				offs = append(offs, off)
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("store: scan queue %s: %w", queue, err)
		}
		if len(offs) == 0 {
			return ctx.Err()
		}
		keys := make([][]byte, len(offs))
		for i, o := range offs {
			keys[i] = logKey(o)
		}
		vals, err := s.db.MultiGetCF(s.ro, s.log, keys...)
		if err != nil {
			return fmt.Errorf("store: read log: %w", err)
		}
		for i, v := range vals {
			if v.Exists() && !fn(offs[i], v.Data()) {
				vals.Destroy()
				return nil
			}
		}
		vals.Destroy()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// TopicStats returns the storage of the instance's topic queues (running
// counts in memory: exact, no I/O).
func (s *Store) TopicStats(_ context.Context, instance string) ([]TopicStats, error) {
	s.filtersMu.RLock()
	defer s.filtersMu.RUnlock()
	out := make([]TopicStats, 0, len(s.topicQs[instance]))
	for f, t := range s.topicQs[instance] {
		out = append(out, TopicStats{Filter: f, Bytes: t.bytes.Load(), Floor: t.Floor})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Filter < out[j].Filter })
	return out, nil
}

// queueFloor is the retention floor of a queue: its instance's, or its
// topic's when that is higher.
func (s *Store) queueFloor(instance, queue string) uint64 {
	f := (*s.floors.Load())[instance]
	s.filtersMu.RLock()
	if t := s.topicQs[instance][queue]; t != nil && t.Floor > f {
		f = t.Floor
	}
	s.filtersMu.RUnlock()
	return f
}

// addTopicBytes counts a committed entry in its topic queue (caller holds
// filtersMu for reading).
func (s *Store) addTopicBytes(instance, queue string, n int) {
	if t := s.topicQs[instance][queue]; t != nil {
		t.bytes.Add(int64(n))
	}
}

func (s *Store) loadTopics(ctx context.Context) error {
	p := []byte{metaTopics, sep}
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	ro.SetIterateUpperBound(prefixEnd(p))
	it := s.db.NewIteratorCF(ro, s.meta)
	defer it.Close()
	var insts []string
	for it.Seek(p); it.Valid(); it.Next() {
		inst := string(it.Key().Data()[2:])
		var list []TopicQueue
		if err := json.Unmarshal(it.Value().Data(), &list); err != nil {
			return fmt.Errorf("store: topics of %s: %w", inst, err)
		}
		m := make(map[string]*topicQ, len(list))
		for _, t := range list {
			m[t.Filter] = &topicQ{TopicQueue: t, bytes: new(atomic.Int64)}
			if mqtttopic.HasWildcard(t.Filter) {
				s.addFilterLocked(inst, t.Filter)
			}
		}
		s.topicQs[inst] = m
		insts = append(insts, inst)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("store: load topics: %w", err)
	}
	s.topicsLoaded = insts
	return ctx.Err()
}

// recountLoaded counts the bytes of the topic queues loaded at Open (after
// the index has caught up).
func (s *Store) recountLoaded(ctx context.Context) error {
	for _, inst := range s.topicsLoaded {
		for f := range s.topicQs[inst] {
			if err := s.recountTopic(ctx, inst, f); err != nil {
				return err
			}
		}
	}
	s.topicsLoaded = nil
	return nil
}

// enforceTopics moves the floors of the topic queues past their MaxAge and
// MaxBytes, range-deletes their light-queue entries below, and returns the
// floors (instance → filter → floor) for the log scan. Runs under retMu.
func (s *Store) enforceTopics(ctx context.Context, now time.Time) (map[string]map[string]*topicQ, error) {
	s.filtersMu.RLock()
	all := make(map[string]map[string]*topicQ, len(s.topicQs))
	for inst, m := range s.topicQs {
		cp := make(map[string]*topicQ, len(m))
		for f, t := range m {
			cp[f] = t
		}
		all[inst] = cp
	}
	s.filtersMu.RUnlock()
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	changed := map[string]bool{}
	for inst, m := range all {
		for f, t := range m {
			s.filtersMu.RLock()
			floor, maxAge, maxBytes := t.Floor, t.MaxAge, t.MaxBytes
			s.filtersMu.RUnlock()
			if maxAge <= 0 && maxBytes <= 0 {
				continue
			}
			excess := int64(0)
			if maxBytes > 0 {
				excess = t.bytes.Load() - maxBytes
			}
			cutoff := uint64(0)
			if maxAge > 0 {
				cutoff = uint64(now.Add(-maxAge).UnixMilli())
			}
			newFloor, dropped := floor, int64(0)
			err := s.scanQueue(ctx, inst, f, floor, func(off uint64, rec []byte) bool {
				_, ms, ok := recordHeader(rec)
				if !ok || (dropped >= excess && ms >= cutoff) {
					return false
				}
				newFloor = off
				dropped += int64(8 + len(rec))
				return true
			})
			if err != nil {
				return nil, err
			}
			if newFloor > floor {
				s.filtersMu.Lock()
				t.Floor = newFloor
				s.filtersMu.Unlock()
				t.bytes.Add(-dropped)
				wb.DeleteRangeCF(s.lq, lqKey(inst, f, 0), lqKey(inst, f, newFloor+1))
				s.tc.drop(QueueRef{inst, f})
				changed[inst] = true
			}
		}
	}
	if len(changed) > 0 {
		s.filtersMu.RLock()
		for inst := range changed {
			if err := s.persistTopicsLocked(wb, inst); err != nil {
				s.filtersMu.RUnlock()
				return nil, err
			}
		}
		s.filtersMu.RUnlock()
		if err := s.write(wb); err != nil {
			return nil, err
		}
	}
	return all, nil
}

// topicDead reports whether the record (topic, offset, time) of an instance
// with topics tq is dead: past the floor of every topic it matches (a topic
// without limits, or no matching topic, follows the instance's age cutoff).
func topicDead(tq map[string]*topicQ, topic string, off, ms, cutoff uint64, floorOf func(*topicQ) uint64) bool {
	matched := false
	for f, t := range tq {
		if !mqtttopic.Match(f, topic) {
			continue
		}
		matched = true
		if t.MaxAge <= 0 && t.MaxBytes <= 0 {
			if cutoff == 0 || ms >= cutoff {
				return false
			}
			continue
		}
		if off > floorOf(t) {
			return false
		}
	}
	if !matched {
		return cutoff > 0 && ms < cutoff
	}
	return true
}

// recordTopic returns the topic of a log record.
func recordTopic(b []byte) (string, bool) {
	r := reader{b: b}
	if r.byte() != msgVersion {
		return "", false
	}
	r.uvarint()
	r.byte()
	r.bytes()
	t := r.bytes()
	return string(t), r.err == nil
}

func groupKey(instance, queue, group string) []byte {
	k := make([]byte, 0, 4+len(instance)+len(queue)+len(group))
	k = append(k, metaGroup, sep)
	k = append(k, instance...)
	k = append(k, sep)
	k = append(k, queue...)
	k = append(k, sep)
	return append(k, group...)
}

// GroupCursor returns a consumer group's committed offset on a queue and
// whether the group exists.
func (s *Store) GroupCursor(_ context.Context, instance, queue, group string) (uint64, bool, error) {
	if err := s.enter(); err != nil {
		return 0, false, err
	}
	defer s.leave()
	v, err := s.getCF(s.meta, groupKey(instance, queue, group))
	if err != nil {
		return 0, false, err
	}
	if v == nil {
		return 0, false, nil
	}
	return u64(v), true, nil
}

// CommitGroup stores a consumer group's committed offset (durably: WAL).
func (s *Store) CommitGroup(_ context.Context, instance, queue, group string, off uint64) error {
	if err := checkName("group", group); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	wb.PutCF(s.meta, groupKey(instance, queue, group), binary.BigEndian.AppendUint64(nil, off))
	return s.write(wb)
}

// LastOffset is the offset of the last committed message (0: none yet).
// The RocksDB store's offsets are global, so it is the same for every
// instance (and comparable with any offset of the instance).
func (s *Store) LastOffset(_ context.Context, _ string) (uint64, error) {
	return s.next.Load() - 1, nil
}

// TopicInstances lists the instances that have topic queues.
func (s *Store) TopicInstances() []string {
	s.filtersMu.RLock()
	defer s.filtersMu.RUnlock()
	out := make([]string, 0, len(s.topicQs))
	for i := range s.topicQs {
		out = append(out, i)
	}
	return out
}

// Changed returns a channel closed at the next successful commit (for
// long-polling readers that are not persistent sessions).
func (s *Store) Changed() <-chan struct{} {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}
