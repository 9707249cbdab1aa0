package configsync

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/aeriemq/aerie/dataplane/config"
)

// The disk snapshot: "AERIECFG", a version byte, then
//
//	revision (varint) · node ID (string) · instance count (uvarint)
//	per instance: settings, ACL, keys and revocations as one JSON string ·
//	  credential count (uvarint) · per credential: id, username, pattern
//	  (strings), 32-byte hash, expiry (varint unix seconds), enabled (byte)
//
// and a CRC-32C of everything before it. Strings are a uvarint length and
// the bytes. Credentials are binary because a node may hold millions.
const (
	diskMagic   = "AERIECFG"
	diskVersion = 1
	// SnapshotFile is the snapshot's name in the client's directory.
	SnapshotFile = "config.snapshot"
)

// ErrCorruptSnapshot: the file is torn, truncated or not a snapshot.
var ErrCorruptSnapshot = errors.New("config snapshot on disk is corrupt")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type diskWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	n   int64
	buf [binary.MaxVarintLen64]byte
	err error
}

func (d *diskWriter) write(p []byte) {
	if d.err != nil {
		return
	}
	d.crc.Write(p)
	n, err := d.w.Write(p)
	d.n += int64(n)
	d.err = err
}
func (d *diskWriter) uvarint(v uint64) { d.write(d.buf[:binary.PutUvarint(d.buf[:], v)]) }
func (d *diskWriter) varint(v int64)   { d.write(d.buf[:binary.PutVarint(d.buf[:], v)]) }
func (d *diskWriter) str(s string) {
	d.uvarint(uint64(len(s)))
	d.write(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// WriteTo writes the state as a disk snapshot.
func (s *State) WriteTo(w io.Writer) (int64, error) {
	d := &diskWriter{w: bufio.NewWriterSize(w, 256<<10), crc: crc32.New(castagnoli)}
	s.mu.RLock()
	d.write([]byte(diskMagic))
	d.write([]byte{diskVersion})
	d.varint(s.rev)
	d.str(s.nodeID)
	d.uvarint(uint64(len(s.instances)))
	for _, in := range s.instances {
		meta := in.meta
		meta.ACL = in.acl
		meta.Topics = in.topics // provisioned topics (they were lost on a restart from disk)
		for _, k := range in.keys {
			meta.TokenKeys = append(meta.TokenKeys, k)
		}
		for jti, exp := range in.revoked {
			meta.RevokedTokens = append(meta.RevokedTokens, config.RevokedToken{JTI: jti, ExpiresAt: exp})
		}
		mj, err := json.Marshal(meta)
		if err != nil {
			s.mu.RUnlock()
			return d.n, fmt.Errorf("encode instance %s: %w", meta.ID, err)
		}
		d.str(string(mj))
		d.uvarint(uint64(len(in.creds)))
		for user, c := range in.creds {
			d.str(c.id)
			d.str(user)
			d.str(c.clientIDPattern())
			d.write(c.hash[:])
			d.varint(int64(c.expires))
			if c.enabled {
				d.write([]byte{1})
			} else {
				d.write([]byte{0})
			}
		}
	}
	s.mu.RUnlock()
	sum := d.crc.Sum32()
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], sum)
	if d.err == nil {
		_, d.err = d.w.Write(tail[:])
		d.n += 4
	}
	if d.err == nil {
		d.err = d.w.Flush()
	}
	return d.n, d.err
}

type diskReader struct {
	r   *bufio.Reader
	crc hash.Hash32
	err error
}

func (d *diskReader) ReadByte() (byte, error) {
	b, err := d.r.ReadByte()
	if err == nil {
		d.crc.Write([]byte{b})
	}
	return b, err
}

func (d *diskReader) full(p []byte) {
	if d.err != nil {
		return
	}
	if _, err := io.ReadFull(d.r, p); err != nil {
		d.err = err
		return
	}
	d.crc.Write(p)
}

func (d *diskReader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(d)
	if err != nil {
		d.err = err
	}
	return v
}

func (d *diskReader) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(d)
	if err != nil {
		d.err = err
	}
	return v
}

// bytes reads a length-prefixed string's bytes into arena space.
func (d *diskReader) bytes(max uint64) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > max {
		d.err = fmt.Errorf("field of %d bytes", n)
		return nil
	}
	b := make([]byte, n)
	d.full(b)
	return b
}

// arena hands out strings carved from large blocks, so a million short
// strings cost their bytes and not a million allocations.
type arena struct{ block []byte }

func (a *arena) str(d *diskReader, max uint64) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > max {
		d.err = fmt.Errorf("field of %d bytes", n)
		return ""
	}
	if n == 0 {
		return ""
	}
	if uint64(cap(a.block)-len(a.block)) < n {
		a.block = make([]byte, 0, max64(n, 64<<10))
	}
	start := len(a.block)
	a.block = a.block[:start+int(n)]
	p := a.block[start:]
	d.full(p)
	return unsafe.String(&p[0], len(p))
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// LoadFrom replaces the state with a disk snapshot, atomically: on any
// error the state is unchanged. Listeners hear one KindSnapshot change.
func (s *State) LoadFrom(r io.Reader) error {
	d := &diskReader{r: bufio.NewReaderSize(r, 256<<10), crc: crc32.New(castagnoli)}
	head := make([]byte, len(diskMagic)+1)
	d.full(head)
	if d.err != nil || string(head[:len(diskMagic)]) != diskMagic {
		return fmt.Errorf("%w: not a snapshot", ErrCorruptSnapshot)
	}
	if head[len(diskMagic)] != diskVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrCorruptSnapshot, head[len(diskMagic)], diskVersion)
	}
	var ar arena
	rev := d.varint()
	nodeID := string(d.bytes(1 << 10))
	count := d.uvarint()
	if d.err == nil && count > 1<<24 {
		d.err = fmt.Errorf("%d instances", count)
	}
	next := make(map[string]*instance, int(min(count, 1<<16)))
	for i := uint64(0); i < count && d.err == nil; i++ {
		if id, in := readInstance(d, &ar); in != nil {
			next[id] = in
		}
	}
	if d.err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptSnapshot, d.err)
	}
	want := d.crc.Sum32()
	var tail [4]byte
	if _, err := io.ReadFull(d.r, tail[:]); err != nil || binary.BigEndian.Uint32(tail[:]) != want {
		return fmt.Errorf("%w: checksum mismatch", ErrCorruptSnapshot)
	}
	if _, err := d.r.ReadByte(); err != io.EOF {
		return fmt.Errorf("%w: trailing bytes", ErrCorruptSnapshot)
	}
	s.mu.Lock()
	s.instances, s.nodeID, s.rev = next, nodeID, rev
	s.mu.Unlock()
	s.notify([]Change{{Revision: rev, Kind: config.KindSnapshot}})
	return nil
}

// readInstance reads one instance of a disk snapshot: its settings as JSON,
// then its credentials. On a damaged record it sets d.err and may return a
// partial instance (LoadFrom then discards everything).
func readInstance(d *diskReader, ar *arena) (string, *instance) {
	mj := d.bytes(256 << 20)
	if d.err != nil {
		return "", nil
	}
	var meta config.Instance
	if err := json.Unmarshal(mj, &meta); err != nil {
		d.err = fmt.Errorf("instance settings: %w", err)
		return "", nil
	}
	built, err := buildInstances([]config.Instance{meta})
	if err != nil {
		d.err = err
		return "", nil
	}
	in := built[meta.ID]
	n := d.uvarint()
	if d.err == nil && n > 1<<28 {
		d.err = fmt.Errorf("%d credentials", n)
	}
	if d.err != nil {
		return "", nil
	}
	// n is not checked yet (the CRC comes last): a damaged count must
	// not size the maps.
	in.creds = make(map[string]cred, min(n, 1<<16))
	in.credByID = make(map[string]string, min(n, 1<<16))
	for j := uint64(0); j < n && d.err == nil; j++ {
		var c cred
		c.id = ar.str(d, 1<<10)
		user := ar.str(d, 1<<10)
		c.pattern = patternPtr(ar.str(d, 1<<12))
		d.full(c.hash[:])
		if e := d.varint(); e != 0 {
			c.expires = expiryOf(e)
		}
		en, err := d.ReadByte()
		if err != nil && d.err == nil {
			d.err = err
		}
		c.enabled = en == 1
		if d.err == nil {
			in.creds[user] = c
			in.credByID[c.id] = user
		}
	}
	return meta.ID, in
}

// SaveFile writes the state to path atomically (temp file, fsync, rename,
// fsync of the directory).
func (s *State) SaveFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".snapshot-*")
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := s.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("install snapshot: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// LoadFile loads a snapshot written by SaveFile. A missing file is
// os.ErrNotExist; a damaged one ErrCorruptSnapshot.
func (s *State) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return s.LoadFrom(f)
}
