package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// sep separates the variable-length parts of a key. MQTT forbids U+0000 in
// topic names, filters and client identifiers, and instance IDs are
// validated, so a 0x00 byte can never occur inside a part.
const sep = 0x00

// ckptKey is the index checkpoint, stored in the lq column family itself so
// that it is flushed together with the index entries it describes. It starts
// with sep, which no instance ID can (instance IDs are non-empty).
var ckptKey = []byte{sep, 'c', 'k', 'p', 't'}

// ErrInvalidName is returned for an empty name or one containing U+0000.
var ErrInvalidName = errors.New("store: invalid name")

func checkName(kind, s string) error {
	if s == "" || strings.IndexByte(s, sep) >= 0 {
		return fmt.Errorf("%w: %s %q", ErrInvalidName, kind, s)
	}
	return nil
}

func logKey(off uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], off)
	return k[:]
}

// lqPrefix is instance | 0x00 | queue | 0x00.
func lqPrefix(instance, queue string) []byte {
	k := make([]byte, 0, len(instance)+len(queue)+2+8)
	k = append(k, instance...)
	k = append(k, sep)
	k = append(k, queue...)
	return append(k, sep)
}

// lqKey is instance | 0x00 | queue | 0x00 | offset(u64 BE). The sequence of a
// queue entry is the log offset itself, so the value is empty.
func lqKey(instance, queue string, off uint64) []byte {
	return binary.BigEndian.AppendUint64(lqPrefix(instance, queue), off)
}

// appendLqKey appends an lq key to dst (allocation-free on the hot path).
func appendLqKey(dst []byte, instance, queue string, off uint64) []byte {
	dst = append(dst, instance...)
	dst = append(dst, sep)
	dst = append(dst, queue...)
	dst = append(dst, sep)
	return binary.BigEndian.AppendUint64(dst, off)
}

// parseLqKey splits an lq key; ok is false for the checkpoint or a malformed key.
func parseLqKey(k []byte) (instance, queue []byte, off uint64, ok bool) {
	if len(k) < 8+4 || k[0] == sep {
		return nil, nil, 0, false
	}
	i := indexByte(k, sep)
	if i <= 0 {
		return nil, nil, 0, false
	}
	rest := k[i+1:]
	if len(rest) < 9 || rest[len(rest)-9] != sep {
		return nil, nil, 0, false
	}
	return k[:i], rest[:len(rest)-9], binary.BigEndian.Uint64(rest[len(rest)-8:]), true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// prefixEnd returns the smallest key greater than every key with prefix p
// (p always ends with sep here, so bumping the last byte is enough).
func prefixEnd(p []byte) []byte {
	e := append([]byte(nil), p...)
	e[len(e)-1]++
	return e
}

// Session CF keys: instance | 0x00 | client | 0x00 | kind [| queue].
const (
	sessKindMeta   = 'm'
	sessKindCursor = 'c'
)

func sessPrefix(instance, client string) []byte { return lqPrefix(instance, client) }

func sessMetaKey(instance, client string) []byte {
	return append(sessPrefix(instance, client), sessKindMeta)
}

func sessCursorKey(instance, client, queue string) []byte {
	k := append(sessPrefix(instance, client), sessKindCursor)
	return append(k, queue...)
}

// retainKey is instance | 0x00 | topic.
func retainKey(instance, topic string) []byte {
	k := make([]byte, 0, len(instance)+1+len(topic))
	k = append(k, instance...)
	k = append(k, sep)
	return append(k, topic...)
}

// Meta CF keys: kind | 0x00 | instance.
const (
	metaBytes = 'b' // stored log bytes of an instance (u64 BE)
	metaFloor = 'f' // retention floor: every message of the instance at or below it is dead
)

func metaKey(kind byte, instance string) []byte {
	k := make([]byte, 0, 2+len(instance))
	return append(append(append(k, kind), sep), instance...)
}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func u64b(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
