package store

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/linxGnu/grocksdb"
)

// SetLimits sets an instance's storage limits (from the control plane's
// quota). MaxRetained applies at once (Retain, RetainedFull); MaxAge and
// MaxBytes from the next EnforceRetention.
func (s *Store) SetLimits(instance string, l Limits) {
	s.limitsMu.Lock()
	s.limits[instance] = l
	s.limitsMu.Unlock()
}

func (s *Store) limitsFor(instance string) Limits {
	s.limitsMu.RLock()
	defer s.limitsMu.RUnlock()
	if l, ok := s.limits[instance]; ok {
		return l
	}
	return s.opts.DefaultLimits
}

// Stats are an instance's storage figures for the usage metrics.
type Stats struct {
	LogBytes         int64 // live commit-log bytes (key + record) of the instance
	RetainedMessages int
	RetainedBytes    int64
}

// StoredBytes is what the usage metrics report as "stored bytes".
func (st Stats) StoredBytes() int64 { return st.LogBytes + st.RetainedBytes }

// Stats returns an instance's storage figures.
func (s *Store) Stats(instance string) Stats {
	s.countersMu.Lock()
	b := s.bytes[instance]
	s.countersMu.Unlock()
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
	return Stats{LogBytes: int64(b), RetainedMessages: s.rt.count[instance], RetainedBytes: s.rt.bytes[instance]}
}

// Instances lists the instances that have stored log bytes.
func (s *Store) Instances() []string {
	s.countersMu.Lock()
	defer s.countersMu.Unlock()
	out := make([]string, 0, len(s.bytes))
	for i, b := range s.bytes {
		if b > 0 {
			out = append(out, i)
		}
	}
	return out
}

type floorUpdate struct {
	floor   uint64
	dropped uint64
}

// EnforceRetention applies every instance's MaxAge and MaxBytes at now.
//
// Each instance has a floor offset: its messages at or below it are dead.
// Floors move forward by scanning the oldest part of the log (reads only);
// readers skip dead messages at once; whole log ranges below every live
// instance's floor are removed with one DeleteRange; what remains dead in
// shared ranges (and dead lq entries) is dropped by the compaction filters.
// No per-key delete is issued.
func (s *Store) EnforceRetention(ctx context.Context, now time.Time) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.retMu.Lock()
	defer s.retMu.Unlock()
	s.countersMu.Lock()
	bytes := make(map[string]uint64, len(s.bytes))
	for k, v := range s.bytes {
		bytes[k] = v
	}
	s.countersMu.Unlock()
	topics, err := s.enforceTopics(ctx, now)
	if err != nil {
		return err
	}
	floors := *s.floors.Load()
	updates := map[string]floorUpdate{}
	for inst, b := range bytes {
		if b == 0 {
			continue
		}
		u, err := s.scanFloor(ctx, inst, b, floors[inst], s.limitsFor(inst), topics[inst], now)
		if err != nil {
			return err
		}
		if u.floor > floors[inst] {
			updates[inst] = u
		}
	}
	var werr error
	err = s.control(ctx, func() {
		wb := grocksdb.NewWriteBatch()
		defer wb.Destroy()
		nf := make(map[string]uint64, len(floors)+len(updates))
		for k, v := range *s.floors.Load() {
			nf[k] = v
		}
		last := s.next.Load() - 1
		global := uint64(math.MaxUint64)
		s.countersMu.Lock()
		for inst, u := range updates {
			s.bytes[inst] -= min(u.dropped, s.bytes[inst])
			nf[inst] = u.floor
			wb.PutCF(s.meta, metaKey(metaBytes, inst), u64b(s.bytes[inst]))
			wb.PutCF(s.meta, metaKey(metaFloor, inst), u64b(u.floor))
		}
		for inst, b := range s.bytes {
			if b == 0 {
				if nf[inst] != last {
					nf[inst] = last // nothing of it is live
					wb.PutCF(s.meta, metaKey(metaFloor, inst), u64b(last))
				}
				continue
			}
			global = min(global, nf[inst])
		}
		s.countersMu.Unlock()
		if global == math.MaxUint64 {
			global = last
		}
		if global > s.logDeleted {
			wb.DeleteRangeCF(s.log, logKey(0), logKey(global+1))
			s.logDeleted = global
		}
		s.floors.Store(&nf)
		if wb.Count() > 0 {
			werr = s.write(wb)
		}
	})
	if err != nil {
		return err
	}
	return werr
}

// scanFloor walks the log from an instance's floor and returns how far its
// floor must move so that its messages are younger than MaxAge and fit in
// MaxBytes, with the bytes that drops.
func (s *Store) scanFloor(ctx context.Context, inst string, stored, floor uint64, l Limits, tq map[string]*topicQ, now time.Time) (floorUpdate, error) {
	u := floorUpdate{floor: floor}
	var excess uint64
	if l.MaxBytes > 0 && stored > uint64(l.MaxBytes) {
		excess = stored - uint64(l.MaxBytes)
	}
	// A copy of the topics' policies and floors: the scan holds no lock.
	s.filtersMu.RLock()
	snap := make(map[string]*topicQ, len(tq))
	for f, t := range tq {
		snap[f] = &topicQ{TopicQueue: t.TopicQueue}
	}
	s.filtersMu.RUnlock()
	tq = snap
	// loose: records of other instances younger than the shortest age
	// rule end the scan (the log is in time order).
	cutoff, loose := uint64(0), uint64(0)
	if l.MaxAge > 0 {
		cutoff = uint64(now.Add(-l.MaxAge).UnixMilli())
		loose = cutoff
	}
	for _, t := range tq {
		if t.MaxAge > 0 {
			loose = max(loose, uint64(now.Add(-t.MaxAge).UnixMilli()))
		} else if t.MaxBytes > 0 {
			loose = uint64(now.UnixMilli())
		}
	}
	if loose == 0 && excess == 0 {
		return u, nil
	}
	floorOf := func(t *topicQ) uint64 { return t.Floor }
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	ro.SetIterateUpperBound(logKey(s.next.Load()))
	it := s.db.NewIteratorCF(ro, s.log)
	defer it.Close()
	for it.Seek(logKey(floor + 1)); it.Valid(); it.Next() {
		v := it.Value().Data()
		off := u64(it.Key().Data())
		rinst, ms, ok := recordHeader(v)
		if !ok {
			return u, fmt.Errorf("store: retention scan: corrupt record at %d", off)
		}
		if string(rinst) == inst {
			dead := u.dropped < excess
			if !dead && len(tq) == 0 {
				dead = ms < cutoff
			} else if !dead {
				topic, ok := recordTopic(v)
				dead = ok && topicDead(tq, topic, off, ms, cutoff, floorOf)
			}
			if !dead {
				break
			}
			u.dropped += uint64(8 + len(v))
		} else if u.dropped >= excess && ms >= loose {
			break
		}
		u.floor = off
		if err := ctx.Err(); err != nil {
			return u, err
		}
	}
	if err := it.Err(); err != nil {
		return u, fmt.Errorf("store: retention scan: %w", err)
	}
	return u, nil
}

func (s *Store) retentionLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			_ = s.EnforceRetention(context.Background(), s.opts.Now())
		}
	}
}

// logFilter drops log records at or below their instance's floor.
type logFilter struct{ s *Store }

func (f *logFilter) Filter(_ int, key, val []byte) (bool, []byte) {
	inst, _, ok := recordHeader(val)
	if !ok || len(key) != 8 {
		return false, nil
	}
	return u64(key) <= (*f.s.floors.Load())[string(inst)], nil
}

func (f *logFilter) Name() string            { return "aerie.log.retention" }
func (f *logFilter) SetIgnoreSnapshots(bool) {}
func (f *logFilter) Destroy()                {}

// lqFilter drops light-queue entries at or below their instance's floor.
type lqFilter struct{ s *Store }

func (f *lqFilter) Filter(_ int, key, _ []byte) (bool, []byte) {
	inst, _, off, ok := parseLqKey(key)
	if !ok {
		return false, nil
	}
	return off <= (*f.s.floors.Load())[string(inst)], nil
}

func (f *lqFilter) Name() string            { return "aerie.lq.retention" }
func (f *lqFilter) SetIgnoreSnapshots(bool) {}
func (f *lqFilter) Destroy()                {}
