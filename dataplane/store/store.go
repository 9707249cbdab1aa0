package store

import (
	"github.com/aeriemq/aerie/internal/mqtttopic"

	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linxGnu/grocksdb"
)

// SyncPolicy says when an appended batch counts as durable.
type SyncPolicy int

const (
	// SyncBatch (default): group commit; the writer gathers concurrent appends
	// for at most Options.SyncDelay, writes them in one WriteBatch and fsyncs
	// the WAL once before any caller in the group returns.
	SyncBatch SyncPolicy = iota
	// SyncAlways: every group is fsynced as soon as it is taken, with no
	// added delay (groups still form while the previous fsync runs).
	SyncAlways
	// SyncNone: the WAL is written but not fsynced; survives a process crash,
	// not a power loss.
	SyncNone
)

// ParseSyncPolicy parses the --store-sync flag value (always|batch|none).
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "", "batch":
		return SyncBatch, nil
	case "always":
		return SyncAlways, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("store: unknown sync policy %q (want always|batch|none)", s)
}

// String returns the flag spelling of p.
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncNone:
		return "none"
	}
	return "batch"
}

// Limits are the per-instance storage limits pushed by the control plane.
// A zero field means "no limit".
type Limits struct {
	MaxAge      time.Duration // messages older than this are dropped
	MaxBytes    int64         // stored log bytes above this drop the oldest messages
	MaxRetained int           // retained messages
}

// Options configure a Store. Zero values pick the documented defaults.
type Options struct {
	Sync      SyncPolicy
	SyncDelay time.Duration // SyncBatch gather window; default 1ms
	MaxBatch  int           // messages per group commit; default 8192
	// DefaultLimits apply to instances without SetLimits.
	DefaultLimits Limits
	// TailCacheQueues bounds how many queues have a tail cache (default
	// 1024); TailCacheBytes is the memory all tail caches share (default 32
	// MiB), of which each queue keeps at least TailCacheSize entries
	// (default 256).
	TailCacheQueues int
	TailCacheSize   int
	TailCacheBytes  int
	// RetentionInterval runs EnforceRetention in the background when > 0.
	RetentionInterval time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.SyncDelay <= 0 {
		o.SyncDelay = time.Millisecond
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 8192
	}
	if o.TailCacheQueues <= 0 {
		o.TailCacheQueues = 1024
	}
	if o.TailCacheSize <= 0 {
		o.TailCacheSize = 256
	}
	if o.TailCacheBytes <= 0 {
		o.TailCacheBytes = 32 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// ErrClosed is returned by calls on a closed Store.
var ErrClosed = errors.New("store: closed")

const (
	cfDefault = "default"
	cfLogName = "log"
	cfLqName  = "lq"
	cfSess    = "session"
	cfRetain  = "retain"
	cfMeta    = "meta"
)

// Store is the node's message store. It is safe for concurrent use.
type Store struct {
	opts Options
	db   *grocksdb.DB
	all  []*grocksdb.ColumnFamilyHandle
	cfo  []*grocksdb.Options
	dbo  *grocksdb.Options
	// column families
	log, lq, sess, ret, meta *grocksdb.ColumnFamilyHandle

	woLog   *grocksdb.WriteOptions // WAL, fsync per policy
	woWAL   *grocksdb.WriteOptions // WAL, no fsync
	woNoWAL *grocksdb.WriteOptions // index writes
	ro      *grocksdb.ReadOptions

	reqs chan *appendReq
	ctrl chan func()
	quit chan struct{}
	wg   sync.WaitGroup
	mu   sync.RWMutex // held for reading by API calls, for writing by Close
	done bool

	next atomic.Uint64 // next log offset (writer-owned; read elsewhere)

	// wildcard filter queues: instance → filter → persistent subscribers,
	// and per instance a trie of those filters for matching.
	filtersMu sync.RWMutex
	filters   map[string]map[string]int
	tries     map[string]*mqtttopic.Index

	countersMu sync.Mutex
	bytes      map[string]uint64 // stored log bytes per instance
	floors     atomic.Pointer[map[string]uint64]
	retMu      sync.Mutex // serialises EnforceRetention
	logDeleted uint64     // log keys below this were range-deleted

	limitsMu sync.RWMutex
	limits   map[string]Limits

	changedMu sync.Mutex
	changed   chan struct{} // closed at the next commit (Changed)

	// topic queues (topics.go), under filtersMu
	topicQs      map[string]map[string]*topicQ
	topicsLoaded []string

	tc tailCaches
	ev events
	ss sessions
	rt retained

	reads   atomic.Uint64 // store reads served from RocksDB (lq scans + log gets)
	written atomic.Uint64 // WriteBatch bytes handed to RocksDB
	commits atomic.Uint64 // group commits
	rebuilt atomic.Uint64 // log records re-indexed by rebuildFrom
}

type appendReq struct {
	msgs []Message
	offs []uint64
	err  error
	done chan struct{}
}

// Open opens (creating if needed) the store in dir and rebuilds the light
// queue index from the log beyond its checkpoint.
func Open(dir string, opts Options) (*Store, error) {
	opts.defaults()
	s := &Store{
		opts:    opts,
		reqs:    make(chan *appendReq, 4096),
		ctrl:    make(chan func()),
		quit:    make(chan struct{}),
		filters: map[string]map[string]int{},
		tries:   map[string]*mqtttopic.Index{},
		bytes:   map[string]uint64{},
		limits:  map[string]Limits{},
		topicQs: map[string]map[string]*topicQ{},
	}
	empty := map[string]uint64{}
	s.floors.Store(&empty)
	s.tc.init(opts.TailCacheQueues, opts.TailCacheSize, opts.TailCacheBytes)
	s.ev.init()
	s.ss.init()
	s.rt.init()

	s.dbo = grocksdb.NewDefaultOptions()
	s.dbo.SetCreateIfMissing(true)
	s.dbo.SetCreateIfMissingColumnFamilies(true)
	s.dbo.SetMaxBackgroundJobs(2)
	s.dbo.SetKeepLogFileNum(2)
	s.dbo.SetInfoLogLevel(grocksdb.WarnInfoLogLevel)
	names := []string{cfDefault, cfLogName, cfLqName, cfSess, cfRetain, cfMeta}
	for _, n := range names {
		o := grocksdb.NewDefaultOptions()
		o.SetCompression(grocksdb.LZ4Compression)
		switch n {
		case cfLogName:
			o.SetWriteBufferSize(64 << 20)
			o.SetCompactionFilter(&logFilter{s: s})
		case cfLqName:
			o.SetCompactionFilter(&lqFilter{s: s})
		}
		s.cfo = append(s.cfo, o)
	}
	db, hs, err := grocksdb.OpenDbColumnFamilies(s.dbo, dir, names, s.cfo)
	if err != nil {
		s.destroyOpts()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	s.db, s.all = db, hs
	s.log, s.lq, s.sess, s.ret, s.meta = hs[1], hs[2], hs[3], hs[4], hs[5]
	s.woLog = grocksdb.NewDefaultWriteOptions()
	s.woLog.SetSync(opts.Sync != SyncNone)
	s.woWAL = grocksdb.NewDefaultWriteOptions()
	s.woNoWAL = grocksdb.NewDefaultWriteOptions()
	s.woNoWAL.DisableWAL(true)
	s.ro = grocksdb.NewDefaultReadOptions()

	if err := s.load(context.Background()); err != nil {
		s.closeDB()
		return nil, err
	}
	s.wg.Add(1)
	go s.writer()
	if opts.RetentionInterval > 0 {
		s.wg.Add(1)
		go s.retentionLoop()
	}
	return s, nil
}

// load reads counters, floors, sessions, retained counts and catches the
// index up with the log.
func (s *Store) load(ctx context.Context) error {
	it := s.db.NewIteratorCF(s.ro, s.meta)
	floors := map[string]uint64{}
	for it.SeekToFirst(); it.Valid(); it.Next() {
		k, v := it.Key().Data(), it.Value().Data()
		if len(k) < 2 {
			continue
		}
		inst := string(k[2:])
		switch k[0] {
		case metaBytes:
			s.bytes[inst] = u64(v)
		case metaFloor:
			floors[inst] = u64(v)
		}
	}
	err := it.Err()
	it.Close()
	if err != nil {
		return fmt.Errorf("store: load meta: %w", err)
	}
	s.floors.Store(&floors)
	if err := s.loadSessions(ctx); err != nil {
		return err
	}
	if err := s.loadRetained(ctx); err != nil {
		return err
	}
	if err := s.loadTopics(ctx); err != nil {
		return err
	}
	// Next offset: past both the log tail and the checkpoint (a lost WAL tail
	// under --store-sync=none must not make offsets reappear).
	ckpt, err := s.checkpoint()
	if err != nil {
		return err
	}
	last := uint64(0)
	it = s.db.NewIteratorCF(s.ro, s.log)
	it.SeekToLast()
	if it.Valid() {
		last = u64(it.Key().Data())
	}
	it.Close()
	s.next.Store(max(last, ckpt) + 1)
	if err := s.rebuildFrom(ctx, ckpt); err != nil {
		return err
	}
	return s.recountLoaded(ctx)
}

func (s *Store) checkpoint() (uint64, error) {
	v, err := s.getCF(s.lq, ckptKey)
	if err != nil {
		return 0, fmt.Errorf("store: read checkpoint: %w", err)
	}
	return u64(v), nil
}

// Close stops the writer (committing queued appends) and closes RocksDB.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil
	}
	s.done = true
	s.mu.Unlock()
	close(s.quit)
	s.wg.Wait()
	s.closeDB()
	return nil
}

func (s *Store) closeDB() {
	for _, h := range s.all {
		h.Destroy()
	}
	if s.db != nil {
		s.db.Close()
	}
	for _, w := range []*grocksdb.WriteOptions{s.woLog, s.woWAL, s.woNoWAL} {
		if w != nil {
			w.Destroy()
		}
	}
	if s.ro != nil {
		s.ro.Destroy()
	}
	s.destroyOpts()
}

func (s *Store) destroyOpts() {
	for _, o := range s.cfo {
		o.Destroy()
	}
	s.dbo.Destroy()
}

// enter guards API calls against Close.
func (s *Store) enter() error {
	s.mu.RLock()
	if s.done {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) leave() { s.mu.RUnlock() }

// IOStats are process-lifetime counters for benchmarks and metrics.
type IOStats struct {
	BytesWritten uint64 // WriteBatch bytes of group commits (log + index + counters)
	StoreReads   uint64 // reads that went to RocksDB (lq scans and log gets)
	Commits      uint64 // group commits (one WriteBatch + at most one WAL sync each)
}

// IO returns the I/O counters.
func (s *Store) IO() IOStats {
	return IOStats{BytesWritten: s.written.Load(), StoreReads: s.reads.Load(), Commits: s.commits.Load()}
}
