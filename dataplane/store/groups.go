package store

import (
	"context"
	"fmt"
	"time"

	"github.com/linxGnu/grocksdb"
)

// GroupCursorInfo is a consumer group's committed offset on a queue.
type GroupCursorInfo struct {
	Group     string
	Committed uint64
}

// Groups lists the consumer groups that have a cursor on a queue, by name.
func (s *Store) Groups(_ context.Context, instance, queue string) ([]GroupCursorInfo, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	prefix := groupKey(instance, queue, "")
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	ro.SetIterateUpperBound(prefixEnd(prefix))
	it := s.db.NewIteratorCF(ro, s.meta)
	defer it.Close()
	var out []GroupCursorInfo
	for it.Seek(prefix); it.Valid(); it.Next() {
		k, v := it.Key().Data(), it.Value().Data()
		if len(k) <= len(prefix) || len(v) != 8 {
			continue
		}
		out = append(out, GroupCursorInfo{Group: string(k[len(prefix):]), Committed: u64(v)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("store: list groups of %s: %w", queue, err)
	}
	return out, nil
}

// QueueLag counts a queue's readable entries after offset after (at most
// limit; capped says the count stopped there) from the queue's index, and
// reports when the first of them was stored (zero when none). Entries past
// the retention floor are not counted; MQTT 5 expiry is not checked, so a
// message that expired and is not yet freed still counts.
func (s *Store) QueueLag(ctx context.Context, instance, queue string, after uint64, limit int) (n int, capped bool, oldest time.Time, err error) {
	if err := s.enter(); err != nil {
		return 0, false, time.Time{}, err
	}
	if f := s.queueFloor(instance, queue); after < f {
		after = f
	}
	prefix := lqPrefix(instance, queue)
	ro := grocksdb.NewDefaultReadOptions()
	ro.SetIterateUpperBound(prefixEnd(prefix))
	it := s.db.NewIteratorCF(ro, s.lq)
	for it.Seek(lqKey(instance, queue, after+1)); it.Valid() && n < limit; it.Next() {
		if _, _, _, ok := parseLqKey(it.Key().Data()); ok {
			n++
		}
	}
	capped = n == limit && it.Valid()
	err = it.Err()
	it.Close()
	ro.Destroy()
	s.leave()
	if err != nil {
		return 0, false, time.Time{}, fmt.Errorf("store: count queue %s: %w", queue, err)
	}
	if n > 0 {
		first, err := s.Pull(ctx, instance, queue, after, 1)
		if err != nil {
			return 0, false, time.Time{}, err
		}
		if len(first) > 0 && first[0].Message != nil {
			oldest = first[0].Message.Time
		}
	}
	return n, capped, oldest, nil
}
