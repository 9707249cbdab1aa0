package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/linxGnu/grocksdb"

	"github.com/aeriemq/aerie/internal/mqtttopic"
)

// ErrRetainedQuota is returned by Retain when a new retained topic would
// exceed the instance's Limits.MaxRetained.
var ErrRetainedQuota = errors.New("store: retained message quota exceeded")

type retained struct {
	mu    sync.Mutex
	count map[string]int
	bytes map[string]int64
}

func (r *retained) init() { r.count, r.bytes = map[string]int{}, map[string]int64{} }

func (s *Store) getCF(cf *grocksdb.ColumnFamilyHandle, key []byte) ([]byte, error) {
	v, err := s.db.GetCF(s.ro, cf, key)
	if err != nil {
		return nil, err
	}
	defer v.Free()
	if !v.Exists() {
		return nil, nil
	}
	return append([]byte(nil), v.Data()...), nil
}

func (s *Store) loadRetained(ctx context.Context) error {
	it := s.db.NewIteratorCF(s.ro, s.ret)
	defer it.Close()
	for it.SeekToFirst(); it.Valid(); it.Next() {
		k := it.Key().Data()
		i := indexByte(k, sep)
		if i <= 0 {
			continue
		}
		inst := string(k[:i])
		s.rt.count[inst]++
		s.rt.bytes[inst] += int64(len(k) + it.Value().Size())
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("store: load retained: %w", err)
	}
	return ctx.Err()
}

// Retain stores m as the retained message of its topic, or clears it when
// the payload is empty. A new retained topic beyond the instance's
// MaxRetained fails with ErrRetainedQuota; replacing one always works.
// It is durable under the sync policy when it returns, and the instance's
// retained count (RetainedFull, Stats) includes it at once.
func (s *Store) Retain(ctx context.Context, m Message) error {
	if err := checkName("instance", m.Instance); err != nil {
		return err
	}
	if err := checkName("topic", m.Topic); err != nil || mqtttopic.HasWildcard(m.Topic) {
		return fmt.Errorf("%w: topic %q", ErrInvalidName, m.Topic)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
	key := retainKey(m.Instance, m.Topic)
	old, err := s.getCF(s.ret, key)
	if err != nil {
		return fmt.Errorf("store: read retained: %w", err)
	}
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	var val []byte
	if len(m.Payload) == 0 {
		if old == nil {
			return nil
		}
		wb.DeleteCF(s.ret, key)
	} else {
		if q := s.limitsFor(m.Instance).MaxRetained; old == nil && q > 0 && s.rt.count[m.Instance] >= q {
			return fmt.Errorf("%w: %d of %d", ErrRetainedQuota, s.rt.count[m.Instance], q)
		}
		m.Retain = true
		m.Time = s.opts.Now()
		val = encodeMessage(nil, &m)
		wb.PutCF(s.ret, key, val)
	}
	s.written.Add(uint64(len(wb.Data())))
	if err := s.db.Write(s.woLog, wb); err != nil {
		return fmt.Errorf("store: write retained: %w", err)
	}
	if old != nil {
		s.rt.count[m.Instance]--
		s.rt.bytes[m.Instance] -= int64(len(key) + len(old))
	}
	if val != nil {
		s.rt.count[m.Instance]++
		s.rt.bytes[m.Instance] += int64(len(key) + len(val))
	}
	return ctx.Err()
}

// RetainedFull reports whether retaining a message on a new topic would
// take the instance beyond its MaxRetained: the retained-message quota's
// one answer (Retain enforces the same). The count is exact: every Retain,
// clear and DeleteRetained changes it before returning, and a quota set
// with SetLimits applies at once. Replacing a topic's retained message
// never counts as new.
func (s *Store) RetainedFull(instance, topic string) bool {
	q := s.limitsFor(instance).MaxRetained
	if q <= 0 {
		return false
	}
	if err := s.enter(); err != nil {
		return false
	}
	defer s.leave()
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
	if s.rt.count[instance] < q {
		return false
	}
	old, err := s.getCF(s.ret, retainKey(instance, topic))
	return err != nil || old == nil
}

// DeleteRetained removes every retained message of an instance (deleted
// from the node) and returns their topics; its retained count drops to 0.
func (s *Store) DeleteRetained(ctx context.Context, instance string) ([]string, error) {
	if err := checkName("instance", instance); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
	prefix := retainKey(instance, "")
	it := s.db.NewIteratorCF(s.ro, s.ret)
	var topics []string
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		topics = append(topics, string(it.Key().Data()[len(prefix):]))
	}
	err := it.Err()
	it.Close()
	if err != nil {
		return nil, fmt.Errorf("store: scan retained: %w", err)
	}
	if len(topics) == 0 {
		return nil, ctx.Err()
	}
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	wb.DeleteRangeCF(s.ret, prefix, prefixEnd(prefix))
	s.written.Add(uint64(len(wb.Data())))
	if err := s.db.Write(s.woLog, wb); err != nil {
		return nil, fmt.Errorf("store: delete retained: %w", err)
	}
	delete(s.rt.count, instance)
	delete(s.rt.bytes, instance)
	return topics, ctx.Err()
}

// Retained returns the instance's retained messages whose topics match
// filter, skipping expired ones.
func (s *Store) Retained(ctx context.Context, instance, filter string) ([]Message, error) {
	if mqtttopic.CheckFilter(filter) != nil {
		return nil, fmt.Errorf("%w: filter %q", ErrInvalidName, filter)
	}
	return s.retained(ctx, instance, filter)
}

// AllRetained returns every retained message of the instance that has not
// expired, including those on topics starting with '$' (which no filter
// starting with a wildcard matches).
func (s *Store) AllRetained(ctx context.Context, instance string) ([]Message, error) {
	return s.retained(ctx, instance, "")
}

// retained scans the instance's retained messages matching filter (all of
// them for "").
func (s *Store) retained(ctx context.Context, instance, filter string) ([]Message, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	prefix := retainKey(instance, "")
	// A filter's literal leading levels narrow the scan.
	lit := filter
	if i := strings.IndexAny(filter, "+#"); i >= 0 {
		lit = filter[:i]
	}
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	ro.SetIterateUpperBound(prefixEnd(lqPrefix(instance, "")[:len(instance)+1]))
	it := s.db.NewIteratorCF(ro, s.ret)
	defer it.Close()
	now := s.opts.Now()
	var out []Message
	start := append(append([]byte(nil), prefix...), lit...)
	for it.Seek(start); it.ValidForPrefix(start); it.Next() {
		topic := string(it.Key().Data()[len(prefix):])
		if filter != "" && !mqtttopic.Match(filter, topic) {
			continue
		}
		m, err := decodeMessage(it.Value().Data())
		if err != nil {
			return nil, fmt.Errorf("store: retained %q: %w", topic, err)
		}
		if !m.Expired(now) {
			out = append(out, *m)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("store: scan retained: %w", err)
	}
	return out, ctx.Err()
}

// RetainedInstances lists the instances that have retained messages (the
// gateway reloads them into the broker at start).
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
