package store

import (
	"context"
	"fmt"

	"github.com/linxGnu/grocksdb"
)

// rebuildFrom indexes every log record after offset from (skipping records
// below their instance's retention floor) and moves the checkpoint. It runs
// before the writer starts or on the writer goroutine.
func (s *Store) rebuildFrom(ctx context.Context, from uint64) error {
	it := s.db.NewIteratorCF(s.ro, s.log)
	defer it.Close()
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	floors := *s.floors.Load()
	var queues []string
	var key []byte
	last, n := from, 0
	flush := func() error {
		wb.PutCF(s.lq, ckptKey, u64b(last))
		if err := s.db.Write(s.woNoWAL, wb); err != nil {
			return fmt.Errorf("store: rebuild index: %w", err)
		}
		wb.Clear()
		n = 0
		return ctx.Err()
	}
	s.filtersMu.RLock()
	defer s.filtersMu.RUnlock()
	for it.Seek(logKey(from + 1)); it.Valid(); it.Next() {
		off := u64(it.Key().Data())
		m, err := decodeMessage(it.Value().Data())
		if err != nil {
			return fmt.Errorf("store: rebuild index at offset %d: %w", off, err)
		}
		last = off
		if off <= floors[m.Instance] {
			continue
		}
		s.rebuilt.Add(1)
		queues = s.queuesFor(queues, m.Instance, m.Topic)
		for _, q := range queues {
			key = appendLqKey(key[:0], m.Instance, q, off)
			wb.PutCF(s.lq, key, nil)
			n++
		}
		if n >= 10000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("store: rebuild index: %w", err)
	}
	if err := flush(); err != nil {
		return err
	}
	s.tc.setIndexed(last)
	return nil
}

// RebuildIndex discards the whole light-queue index and rebuilds it from
// the commit log (the crash-recovery path, run in full).
func (s *Store) RebuildIndex(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	var err error
	cerr := s.control(ctx, func() {
		wb := grocksdb.NewWriteBatch()
		defer wb.Destroy()
		wb.DeleteRangeCF(s.lq, []byte{0}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		if err = s.db.Write(s.woWAL, wb); err != nil {
			err = fmt.Errorf("store: clear index: %w", err)
			return
		}
		s.tc.reset()
		err = s.rebuildFrom(ctx, 0)
	})
	if cerr != nil {
		return cerr
	}
	return err
}
