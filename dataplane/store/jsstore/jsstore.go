// Package jsstore is the data plane's message store on NATS JetStream (an
// embedded github.com/nats-io/nats-server/v2), the replicated alternative to
// the RocksDB store: it implements store.Backend with
//
//   - per instance one stream "<PREFIX>_M_<inst>" as the commit log, one
//     copy per replica and never one per subscriber; its subjects are the
//     escaped MQTT topics (subject.go), the stream sequence is the offset;
//   - per-filter reads with batched direct gets on the filter's subject
//     (MQTT '+' → '*', '#' → '>' with the parent level kept by a
//     terminator token), so a wildcard queue needs no index of its own;
//   - persistent sessions (record with will and subscriptions) and their
//     cursors in the KV bucket "<PREFIX>_sessions";
//   - retained messages in the stream "<PREFIX>_RETAINED" with
//     MaxMsgsPerSubject=1: one message per topic subject;
//   - retention by the streams' MaxAge/MaxBytes (DiscardOld), enforced by
//     the server.
//
// Append returns after the PubAck of every message: with the embedded
// server's sync_always (server.go) that is "fsynced", on a quorum of
// replicas for a replicated stream. In-flight delivery state of online
// sessions (what was pulled and not yet acknowledged) is in memory, as in
// the RocksDB store.
package jsstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/internal/mqtttopic"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configure a Store. Zero values pick the documented defaults.
type Options struct {
	// Prefix of subjects (lower case) and stream/bucket names (upper
	// case); default "aerie".
	Prefix string
	// Replicas of every stream and bucket; default 1 (3 in a cell).
	Replicas int
	// DefaultLimits apply to instances without SetLimits.
	DefaultLimits store.Limits
	// Timeout bounds each JetStream API call made without a ctx deadline;
	// default 10s.
	Timeout time.Duration
	// Now is the clock for message times and expiry; default time.Now.
	// Retention (MaxAge) runs on the server's real clock.
	Now func() time.Time
	// Node is this node's name in a cell (unique among its nodes; the
	// owner recorded in the sessions it claims). Empty: a lone node — no
	// heartbeat, no relays, no cross-node notifications.
	Node string
	// NodeTimeout is the cell's liveness window: a node whose heartbeat
	// this node has not received for that long has left the cell (its
	// sessions are marked disconnected). Default 10s; heartbeats go every
	// NodeTimeout/4, at most every second.
	NodeTimeout time.Duration
	// CursorFlush is how often acknowledged session cursors are written
	// (coalesced, cursors.go); default 50ms.
	CursorFlush time.Duration
	// CellBuffer bounds the CellPublish events waiting for the CellEvents
	// consumer; more are dropped (CellIO().RelayDropped). Default 1024.
	CellBuffer int
}

// Store is the JetStream backend. It is safe for concurrent use.
type Store struct {
	opts   Options
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	retain jetstream.Stream
	sub    string        // subject prefix
	name   string        // stream name prefix
	msgIDs string        // prefix of this process's message IDs (publish.go)
	msgSeq atomic.Uint64 // message ID counter
	moved  dirtyCursors  // session cursors moved since written (cursors.go)

	closed atomic.Bool

	streamsMu sync.Mutex
	streams   map[string]bool // instance → its stream exists with current limits

	limitsMu sync.RWMutex
	limits   map[string]store.Limits
	dirty    map[string]bool // limits changed, stream not yet updated

	ev events
	ss sessions
	rt retainedCounts
	tp topicState
	dl deadLetters

	bucket  string // the sessions bucket
	nodesKV jetstream.KeyValue
	nodes   nodesState
	cell    cellQueue
	subs    []*nats.Subscription
	follows []jetstream.ConsumeContext // ordered consumers of the sessions bucket and retained stream
	bg      context.Context            // ends at Close: the watchers and loops
	stop    context.CancelFunc
	wg      sync.WaitGroup

	written atomic.Uint64
	reads   atomic.Uint64
	commits atomic.Uint64
}

var _ store.Backend = (*Store)(nil)

// Open creates (or binds to) the retained stream and the sessions bucket
// through nc, loads the session index and retained counts and starts
// their watchers; with Options.Node it joins the cell (heartbeats,
// notifications, relays).
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Store, error) {
	opts = withDefaults(opts)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jsstore: %w", err)
	}
	s := &Store{opts: opts, nc: nc, js: js, sub: strings.ToLower(opts.Prefix), name: strings.ToUpper(opts.Prefix),
		streams: map[string]bool{}, limits: map[string]store.Limits{}, dirty: map[string]bool{}}
	s.bucket = s.name + "_sessions"
	s.msgIDs = newMsgIDs()
	s.ev.init()
	s.ss.init()
	s.rt.init()
	s.tp.init()
	s.cell.init(opts.CellBuffer)
	s.bg, s.stop = context.WithCancel(context.Background())
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.cell.pump(s.bg) }()
	s.wg.Add(1)
	go s.flushLoop()
	if err := s.open(ctx); err != nil {
		s.Close() //nolint:errcheck // stops what started
		return nil, err
	}
	return s, nil
}

func withDefaults(opts Options) Options {
	if opts.Prefix == "" {
		opts.Prefix = "aerie"
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NodeTimeout <= 0 {
		opts.NodeTimeout = 10 * time.Second
	}
	if opts.CursorFlush <= 0 {
		opts.CursorFlush = 50 * time.Millisecond
	}
	if opts.CellBuffer <= 0 {
		opts.CellBuffer = 1024
	}
	return opts
}

func (s *Store) open(ctx context.Context) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var err error
	s.kv, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: s.bucket, History: 1, Storage: jetstream.FileStorage, Replicas: s.opts.Replicas,
	})
	if err != nil {
		return fmt.Errorf("jsstore: sessions bucket: %w", err)
	}
	s.retain, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: s.name + "_RETAINED", Subjects: []string{s.sub + ".r.>"}, MaxMsgsPerSubject: 1,
		Storage: jetstream.FileStorage, Replicas: s.opts.Replicas, AllowDirect: true, Discard: jetstream.DiscardOld,
		AllowMsgTTL: true,
	})
	if err != nil {
		return fmt.Errorf("jsstore: retained stream: %w", err)
	}
	if err := s.watchSessions(ctx); err != nil {
		return err
	}
	if err := s.watchRetained(ctx); err != nil {
		return err
	}
	if s.opts.Node == "" {
		return nil
	}
	if err := s.startCell(); err != nil {
		return err
	}
	return s.startNodes(ctx)
}

// Close stops the watchers, heartbeats and relays (a cell's node leaves
// it: its heartbeat is deleted) and marks the store closed. The
// connection and server belong to the caller.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	for _, sub := range s.subs {
		_ = sub.Unsubscribe() //nolint:errcheck // best effort
	}
	for _, cc := range s.follows {
		cc.Stop()
	}
	s.stop()
	s.wg.Wait()
	if s.nodesKV != nil {
		s.leave()
	}
	return nil
}

// callCtx adds the default timeout to a ctx without deadline.
func (s *Store) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.opts.Timeout)
}

var plainName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// StreamName is the commit-log stream of an instance: the instance ID
// itself when it is a plain name (UUIDs are), else a hash of it.
func (s *Store) StreamName(instance string) string {
	if plainName.MatchString(instance) {
		return s.name + "_M_" + instance
	}
	h := sha256.Sum256([]byte(instance))
	return s.name + "_M_H_" + hex.EncodeToString(h[:16])
}

func (s *Store) limitsFor(instance string) store.Limits {
	s.limitsMu.RLock()
	defer s.limitsMu.RUnlock()
	if l, ok := s.limits[instance]; ok {
		return l
	}
	return s.opts.DefaultLimits
}

func (s *Store) streamConfig(instance string) jetstream.StreamConfig {
	l := s.limitsFor(instance)
	c := jetstream.StreamConfig{
		Name: s.StreamName(instance), Subjects: []string{AllSubject(s.sub, "m", instance)},
		Storage: jetstream.FileStorage, Replicas: s.opts.Replicas, Retention: jetstream.LimitsPolicy,
		Discard: jetstream.DiscardOld, AllowDirect: true, MaxAge: l.MaxAge, MaxBytes: -1,
		Duplicates: dedupWindow, Metadata: map[string]string{"aerie-instance": instance},
	}
	if l.MaxBytes > 0 {
		c.MaxBytes = l.MaxBytes
	}
	if c.MaxAge > 0 && c.Duplicates > c.MaxAge {
		c.Duplicates = c.MaxAge // the server's rule; retries stay within it
	}
	return c
}

// ensureStream creates or updates an instance's stream when it is new or
// its limits changed.
func (s *Store) ensureStream(ctx context.Context, instance string) error {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	s.limitsMu.Lock()
	dirty := s.dirty[instance]
	delete(s.dirty, instance)
	s.limitsMu.Unlock()
	if s.streams[instance] && !dirty {
		return nil
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if _, err := s.js.CreateOrUpdateStream(ctx, s.streamConfig(instance)); err != nil {
		return fmt.Errorf("jsstore: stream of %s: %w", instance, err)
	}
	s.streams[instance] = true
	return nil
}

func (s *Store) check() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// Append publishes msgs to their instances' streams and returns once every
// message has its PubAck (stored and fsynced; on a quorum when
// replicated). Offsets are the stream sequences.
func (s *Store) Append(ctx context.Context, msgs []store.Message) ([]uint64, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	for i := range msgs {
		if err := store.CheckName("instance", msgs[i].Instance); err != nil {
			return nil, err
		}
		if err := store.CheckName("topic", msgs[i].Topic); err != nil || mqtttopic.HasWildcard(msgs[i].Topic) {
			return nil, fmt.Errorf("%w: topic %q", store.ErrInvalidName, msgs[i].Topic)
		}
		if err := s.ensureStream(ctx, msgs[i].Instance); err != nil {
			return nil, err
		}
	}
	offs, err := s.publish(ctx, msgs)
	if err != nil {
		return nil, err
	}
	s.commits.Add(1)
	s.raise(msgs, offs)
	s.tp.signalChanged()
	s.notifyAppends(msgs, offs)
	return offs, nil
}

// Pull reads a queue of an instance: the messages after offset `after`
// whose topics the queue (topic or filter) matches, skipping expired ones.
func (s *Store) Pull(ctx context.Context, instance, queue string, after uint64, limit int) ([]store.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	after, ok, err := s.readFloor(ctx, instance, queue, after)
	if err != nil || !ok {
		return nil, err
	}
	subj := FilterSubject(s.sub, "m", instance, queue)
	now := s.opts.Now()
	for {
		raw, err := s.directBatch(ctx, s.StreamName(instance), after+1, subj, limit)
		if err != nil || len(raw) == 0 {
			return nil, err
		}
		out := make([]store.Entry, 0, len(raw))
		for _, r := range raw {
			m, err := store.DecodeRecord(r.data)
			if err != nil {
				return nil, fmt.Errorf("jsstore: record %d of %s: %w", r.seq, instance, err)
			}
			if !m.Expired(now) {
				out = append(out, store.Entry{Offset: r.seq, Message: m})
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		after = raw[len(raw)-1].seq
	}
}

// rawMsg is one message of a direct get.
type rawMsg struct {
	seq  uint64
	data []byte
	hdr  nats.Header
}

var errDirectGet = errors.New("jsstore: direct get")

// isNotFound reports a stream that does not exist.
func isNotFound(err error) bool { return errors.Is(err, jetstream.ErrStreamNotFound) }

// lastSeq returns the last sequence of an instance's stream (0 if none).
func (s *Store) lastSeq(ctx context.Context, instance string) (uint64, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	st, err := s.js.Stream(ctx, s.StreamName(instance))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("jsstore: stream of %s: %w", instance, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jsstore: stream info of %s: %w", instance, err)
	}
	return info.State.LastSeq, nil
}

// IO returns the counters: bytes published, direct-get batches, Append calls.
func (s *Store) IO() store.IOStats {
	return store.IOStats{BytesWritten: s.written.Load(), StoreReads: s.reads.Load(), Commits: s.commits.Load()}
}
