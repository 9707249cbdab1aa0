package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/linxGnu/grocksdb"
)

// Dead letters of forwarding rules.
//
// A message a forwarding rule gave up on is copied, with why, into the
// rule's dead-letter list (meta CF, 'd' 0x00 instance 0x00 rule 0x00
// offset → record). It is a copy on purpose: the log range of the message
// may be freed by retention while it waits for a replay. Lists are small
// (the forwarder bounds them); a replay or a purge deletes entries.

const metaDead = 'd'

// DeadLetter is one message a forwarding rule gave up on.
type DeadLetter struct {
	Offset   uint64
	Message  *Message
	Reason   string
	Attempts int
	DeadAt   time.Time
}

func deadPrefix(instance, rule string) []byte {
	k := make([]byte, 0, 4+len(instance)+len(rule)+8)
	k = append(k, metaDead, sep)
	k = append(k, instance...)
	k = append(k, sep)
	k = append(k, rule...)
	return append(k, sep)
}

func deadKey(instance, rule string, off uint64) []byte {
	return binary.BigEndian.AppendUint64(deadPrefix(instance, rule), off)
}

// record: uvarint attempts | uvarint dead-at (ms) | str reason | message record.
func encodeDead(d DeadLetter) []byte {
	b := binary.AppendUvarint(nil, uint64(max(d.Attempts, 0)))
	b = binary.AppendUvarint(b, uint64(max(d.DeadAt.UnixMilli(), 0)))
	b = appendStr(b, d.Reason)
	return encodeMessage(b, d.Message)
}

func decodeDead(off uint64, b []byte) (DeadLetter, error) {
	r := reader{b: b}
	d := DeadLetter{Offset: off, Attempts: int(r.uvarint())}
	d.DeadAt = time.UnixMilli(int64(r.uvarint())).UTC()
	d.Reason = string(r.bytes())
	if r.err != nil {
		return DeadLetter{}, r.err
	}
	m, err := decodeMessage(r.b)
	if err != nil {
		return DeadLetter{}, err
	}
	d.Message = m
	return d, nil
}

// PutDeadLetters adds (or replaces) entries of a rule's dead-letter list,
// durably.
func (s *Store) PutDeadLetters(_ context.Context, instance, rule string, ds []DeadLetter) error {
	if err := checkName("instance", instance); err != nil {
		return err
	}
	if err := checkName("rule", rule); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	for _, d := range ds {
		wb.PutCF(s.meta, deadKey(instance, rule, d.Offset), encodeDead(d))
	}
	return s.write(wb)
}

// DeadLetters returns up to limit entries of a rule's dead-letter list with
// offsets above after, oldest first.
func (s *Store) DeadLetters(ctx context.Context, instance, rule string, after uint64, limit int) ([]DeadLetter, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	p := deadPrefix(instance, rule)
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	ro.SetIterateUpperBound(prefixEnd(p))
	it := s.db.NewIteratorCF(ro, s.meta)
	defer it.Close()
	var out []DeadLetter
	for it.Seek(deadKey(instance, rule, after+1)); it.Valid() && len(out) < limit; it.Next() {
		k := it.Key().Data()
		if len(k) != len(p)+8 {
			continue
		}
		d, err := decodeDead(binary.BigEndian.Uint64(k[len(p):]), it.Value().Data())
		if err != nil {
			return nil, fmt.Errorf("store: dead letter of %s: %w", rule, err)
		}
		out = append(out, d)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("store: dead letters of %s: %w", rule, err)
	}
	return out, ctx.Err()
}

// CountDeadLetters counts a rule's dead letters.
func (s *Store) CountDeadLetters(_ context.Context, instance, rule string) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	p := deadPrefix(instance, rule)
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	ro.SetIterateUpperBound(prefixEnd(p))
	it := s.db.NewIteratorCF(ro, s.meta)
	defer it.Close()
	n := 0
	for it.Seek(p); it.Valid(); it.Next() {
		n++
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("store: count dead letters of %s: %w", rule, err)
	}
	return n, nil
}

// DeleteDeadLetters removes entries of a rule's dead-letter list: the given
// offsets, or every entry when offsets is nil.
func (s *Store) DeleteDeadLetters(_ context.Context, instance, rule string, offsets []uint64) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	if offsets == nil {
		p := deadPrefix(instance, rule)
		wb.DeleteRangeCF(s.meta, p, prefixEnd(p))
	}
	for _, o := range offsets {
		wb.DeleteCF(s.meta, deadKey(instance, rule, o))
	}
	return s.write(wb)
}

// DeleteGroup forgets a consumer group's cursor (a deleted rule's).
func (s *Store) DeleteGroup(_ context.Context, instance, queue, group string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	wb.DeleteCF(s.meta, groupKey(instance, queue, group))
	return s.write(wb)
}
