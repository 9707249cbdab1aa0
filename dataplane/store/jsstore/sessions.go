package jsstore

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/internal/mqtttopic"
	"github.com/nats-io/nats.go/jetstream"
)

// KV layout of the sessions bucket (keys are dot-separated base64url tokens,
// as KV keys allow only [-/_=.A-Za-z0-9]):
//
//	s.<inst>.<client>          → sessionRecord (JSON)
//	c.<inst>.<client>.<queue>  → cursor: u64 BE offset
type sessionRecord struct {
	Inst   string                        `json:"i"`
	Client string                        `json:"c"`
	V      byte                          `json:"v"`
	Exp    time.Duration                 `json:"e"`
	Disc   int64                         `json:"dc,omitempty"` // unix ms; 0: connected
	Owner  string                        `json:"o,omitempty"`  // node that last claimed it (a cell)
	Will   *willRecord                   `json:"w,omitempty"`
	Subs   map[string]store.Subscription `json:"s,omitempty"`
}

type willRecord struct {
	Msg   []byte        `json:"m"` // store.EncodeRecord
	Delay time.Duration `json:"d,omitempty"`
}

func tok(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func recordKey(inst, client string) string { return "s." + tok(inst) + "." + tok(client) }
func cursorPrefix(inst, client string) string {
	return "c." + tok(inst) + "." + tok(client) + "."
}
func cursorKey(inst, client, queue string) string { return cursorPrefix(inst, client) + tok(queue) }

type sessKey struct{ instance, client string }

// sessions is the in-memory side: who subscribes to which queue, the
// wildcard filters per instance and the delivery state of online sessions.
type sessions struct {
	lock    sync.Mutex   // serialises this node's record read-modify-writes
	mu      sync.RWMutex // guards byQueue, tries, live, recs and pend
	byQueue map[string]map[string]map[string]struct{}
	tries   map[string]*mqtttopic.Index
	live    map[sessKey]*liveSession
	recs    map[sessKey]*recState
	pend    map[sessKey]map[string]int // filters being subscribed
}

type liveSession struct {
	mu       sync.Mutex
	queues   map[string]*cursorState
	volatile bool
	lost     atomic.Bool // another node claimed the session since
}

type cursorState struct {
	committed, read uint64
	persisted       uint64 // the last committed cursor written (cursors.go)
	inflight        []uint64
	acked           map[uint64]bool
}

func (ss *sessions) init() {
	ss.byQueue = map[string]map[string]map[string]struct{}{}
	ss.tries = map[string]*mqtttopic.Index{}
	ss.live = map[sessKey]*liveSession{}
	ss.recs = map[sessKey]*recState{}
	ss.pend = map[sessKey]map[string]int{}
}

// addSub and delSub run under ss.mu.
func (ss *sessions) addSub(inst, queue, client string) {
	q := ss.byQueue[inst]
	if q == nil {
		q = map[string]map[string]struct{}{}
		ss.byQueue[inst] = q
	}
	if q[queue] == nil {
		q[queue] = map[string]struct{}{}
		if mqtttopic.HasWildcard(queue) {
			if ss.tries[inst] == nil {
				ss.tries[inst] = mqtttopic.NewIndex()
			}
			ss.tries[inst].Add(queue)
		}
	}
	q[queue][client] = struct{}{}
}

// delSub reports whether the queue lost its last subscriber.
func (ss *sessions) delSub(inst, queue, client string) bool {
	q := ss.byQueue[inst][queue]
	if q == nil {
		return false
	}
	delete(q, client)
	if len(q) > 0 {
		return false
	}
	delete(ss.byQueue[inst], queue)
	if t := ss.tries[inst]; t != nil && mqtttopic.HasWildcard(queue) {
		t.Remove(queue)
	}
	return true
}

// scanKV calls fn for every live key matching pattern.
func (s *Store) scanKV(ctx context.Context, pattern string, fn func(key string, val []byte, rev uint64) error) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	w, err := s.kv.Watch(ctx, pattern, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("jsstore: scan %s: %w", pattern, err)
	}
	defer w.Stop() //nolint:errcheck // best effort
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				return nil
			}
			if err := fn(e.Key(), e.Value(), e.Revision()); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("jsstore: scan %s: %w", pattern, ctx.Err())
		}
	}
}

func (s *Store) readRecord(ctx context.Context, inst, client string) (*sessionRecord, error) {
	rec, _, err := s.readRecordRev(ctx, inst, client)
	return rec, err
}

func (s *Store) put(ctx context.Context, key string, v []byte) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if _, err := s.kv.Put(ctx, key, v); err != nil {
		return fmt.Errorf("jsstore: put %s: %w", key, err)
	}
	s.written.Add(uint64(len(key) + len(v)))
	return nil
}

func (s *Store) purge(ctx context.Context, key string) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if err := s.kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("jsstore: purge %s: %w", key, err)
	}
	return nil
}

// SaveSession creates or updates a session record; subscriptions and
// cursors are kept. In a cell it claims the session for this node (the
// connection it describes is here), unless this node served the session
// and another node has claimed it since: then it changes nothing.
func (s *Store) SaveSession(ctx context.Context, sess store.Session) error {
	if err := store.CheckName("instance", sess.Instance); err != nil {
		return err
	}
	if err := store.CheckName("client id", sess.ClientID); err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return err
	}
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	k := sessKey{sess.Instance, sess.ClientID}
	_, _, err := s.updateRecord(ctx, sess.Instance, sess.ClientID, func(rec *sessionRecord) (*sessionRecord, error) {
		if s.stale(k, rec) {
			return nil, errSkip
		}
		if rec == nil {
			rec = &sessionRecord{Inst: sess.Instance, Client: sess.ClientID}
		}
		rec.V, rec.Exp, rec.Disc, rec.Will, rec.Owner = sess.ProtocolVersion, sess.Expiry, 0, nil, s.opts.Node
		if !sess.DisconnectedAt.IsZero() {
			rec.Disc = sess.DisconnectedAt.UnixMilli()
		}
		if sess.Will != nil {
			m := sess.Will.Message
			m.Instance = sess.Instance
			rec.Will = &willRecord{Msg: store.EncodeRecord(nil, &m), Delay: sess.Will.Delay}
		}
		return rec, nil
	})
	return err
}

// LoadSession returns a session with subscriptions and cursors, or
// store.ErrNoSession.
func (s *Store) LoadSession(ctx context.Context, instance, clientID string) (*store.Session, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rec, err := s.readRecord(ctx, instance, clientID)
	if err != nil {
		return nil, err
	}
	return s.loadSession(ctx, rec, instance, clientID)
}

func (s *Store) loadSession(ctx context.Context, rec *sessionRecord, instance, clientID string) (*store.Session, error) {
	if rec == nil {
		return nil, fmt.Errorf("%w: %s/%s", store.ErrNoSession, instance, clientID)
	}
	sess := &store.Session{Instance: instance, ClientID: clientID, ProtocolVersion: rec.V, Expiry: rec.Exp,
		Subscriptions: map[string]store.Subscription{}, Cursors: map[string]uint64{}}
	if rec.Disc != 0 {
		sess.DisconnectedAt = time.UnixMilli(rec.Disc)
	}
	if rec.Will != nil {
		m, err := store.DecodeRecord(rec.Will.Msg)
		if err != nil {
			return nil, fmt.Errorf("jsstore: session will: %w", err)
		}
		m.Time = time.Time{}
		sess.Will = &store.Will{Message: *m, Delay: rec.Will.Delay}
	}
	for f, sub := range rec.Subs {
		sess.Subscriptions[f] = sub
	}
	prefix := cursorPrefix(instance, clientID)
	err := s.scanKV(ctx, prefix+"*", func(k string, v []byte, _ uint64) error {
		q, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(k, prefix))
		if err != nil || len(v) != 8 {
			return fmt.Errorf("jsstore: cursor key %q: malformed", k)
		}
		sess.Cursors[string(q)] = binary.BigEndian.Uint64(v)
		return nil
	})
	s.liveCursors(sess)
	return sess, err
}

// DeleteSession removes a session, its cursors and subscriptions. A node
// that served the session and lost it to another node only forgets its
// own read state.
func (s *Store) DeleteSession(ctx context.Context, instance, clientID string) error {
	if err := s.check(); err != nil {
		return err
	}
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	k := sessKey{instance, clientID}
	// This node's own serving state goes before the write: the deletion,
	// seen by the index (from the writer or the watcher, whichever comes
	// first), must not read as another node taking the session over
	// (which would end this node's next connection of the client).
	s.ss.mu.Lock()
	ls := s.ss.live[k]
	delete(s.ss.live, k)
	s.ss.mu.Unlock()
	var subs map[string]store.Subscription
	_, _, err := s.updateRecord(ctx, instance, clientID, func(rec *sessionRecord) (*sessionRecord, error) {
		if rec == nil || ls != nil && (ls.lost.Load() || rec.Owner != s.opts.Node) { // stale: staleLocked
			subs = nil
			return nil, errSkip
		}
		subs = rec.Subs
		return nil, nil
	})
	if err != nil {
		return err
	}
	return s.purgeCursors(ctx, instance, clientID, subs)
}

// purgeCursors removes the cursors of a deleted session's subscriptions.
func (s *Store) purgeCursors(ctx context.Context, instance, clientID string, subs map[string]store.Subscription) error {
	for f := range subs {
		if err := s.purge(ctx, cursorKey(instance, clientID, f)); err != nil {
			return err
		}
	}
	return nil
}

// Subscribe adds or updates a subscription. A new one starts after the
// instance's last stream sequence, which it returns and records as
// Subscription.Since and as the queue's cursor.
func (s *Store) Subscribe(ctx context.Context, instance, clientID string, sub store.Subscription) (uint64, error) {
	if mqtttopic.CheckFilter(sub.Filter) != nil {
		return 0, fmt.Errorf("%w: filter %q", store.ErrInvalidName, sub.Filter)
	}
	if err := s.check(); err != nil {
		return 0, err
	}
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	rec, err := s.readRecord(ctx, instance, clientID)
	if err != nil {
		return 0, err
	}
	if rec == nil {
		return 0, fmt.Errorf("%w: %s/%s", store.ErrNoSession, instance, clientID)
	}
	if prev, ok := rec.Subs[sub.Filter]; ok {
		return s.resubscribe(ctx, instance, clientID, sub, prev)
	}
	// Register the queue before reading the boundary, so an append that
	// lands after it raises an event for this subscriber.
	k := sessKey{instance, clientID}
	s.pendSub(k, sub.Filter, 1)
	defer s.pendSub(k, sub.Filter, -1)
	boundary, err := s.lastSeq(ctx, instance)
	if err != nil {
		return 0, err
	}
	sub.Since = boundary
	if err := s.put(ctx, cursorKey(instance, clientID, sub.Filter), binary.BigEndian.AppendUint64(nil, boundary)); err != nil {
		return 0, err
	}
	_, _, err = s.updateRecord(ctx, instance, clientID, func(rec *sessionRecord) (*sessionRecord, error) {
		if rec == nil {
			return nil, fmt.Errorf("%w: %s/%s", store.ErrNoSession, instance, clientID)
		}
		if rec.Subs == nil {
			rec.Subs = map[string]store.Subscription{}
		}
		rec.Subs[sub.Filter] = sub
		return rec, nil
	})
	if err != nil {
		return 0, err
	}
	s.ss.mu.Lock()
	defer s.ss.mu.Unlock()
	if ls := s.ss.live[k]; ls != nil {
		ls.mu.Lock()
		ls.queues[sub.Filter] = &cursorState{committed: boundary, read: boundary, acked: map[uint64]bool{}}
		ls.mu.Unlock()
	}
	return boundary, nil
}

// resubscribe updates an existing subscription's options; its cursor stays.
func (s *Store) resubscribe(ctx context.Context, instance, clientID string, sub, prev store.Subscription) (uint64, error) {
	sub.Since = prev.Since
	rec, _, err := s.updateRecord(ctx, instance, clientID, func(rec *sessionRecord) (*sessionRecord, error) {
		if rec == nil {
			return nil, fmt.Errorf("%w: %s/%s", store.ErrNoSession, instance, clientID)
		}
		if rec.Subs == nil {
			rec.Subs = map[string]store.Subscription{}
		}
		rec.Subs[sub.Filter] = sub
		return rec, nil
	})
	if err != nil {
		return 0, err
	}
	sess, err := s.loadSession(ctx, rec, instance, clientID)
	if err != nil {
		return 0, err
	}
	return sess.Cursors[sub.Filter], nil
}

// pendSub counts a subscription being made into the index (d = ±1), so
// the watcher keeps it while the record does not have it yet.
func (s *Store) pendSub(k sessKey, filter string, d int) {
	s.ss.mu.Lock()
	defer s.ss.mu.Unlock()
	p := s.ss.pend[k]
	if p == nil {
		p = map[string]int{}
		s.ss.pend[k] = p
	}
	p[filter] += d
	if p[filter] > 0 {
		s.ss.addSub(k.instance, filter, k.client)
		return
	}
	delete(p, filter)
	if len(p) == 0 {
		delete(s.ss.pend, k)
	}
	if st := s.ss.recs[k]; st == nil || !st.own[filter] {
		if s.ss.delSub(k.instance, filter, k.client) {
			s.ev.forget(store.QueueRef{Instance: k.instance, Queue: filter})
		}
		if st != nil {
			delete(st.subs, filter)
		}
	}
}

// Unsubscribe removes a subscription and its cursor.
func (s *Store) Unsubscribe(ctx context.Context, instance, clientID, filter string) error {
	if err := s.check(); err != nil {
		return err
	}
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	rec, _, err := s.updateRecord(ctx, instance, clientID, func(rec *sessionRecord) (*sessionRecord, error) {
		if rec == nil {
			return nil, errSkip
		}
		if _, ok := rec.Subs[filter]; !ok {
			return nil, errSkip
		}
		delete(rec.Subs, filter)
		return rec, nil
	})
	if err != nil || rec == nil {
		return err
	}
	if err := s.purge(ctx, cursorKey(instance, clientID, filter)); err != nil {
		return err
	}
	s.ss.mu.Lock()
	if ls := s.ss.live[sessKey{instance, clientID}]; ls != nil {
		ls.mu.Lock()
		delete(ls.queues, filter)
		ls.mu.Unlock()
	}
	s.ss.mu.Unlock()
	return nil
}

// SessionsOn lists the persistent sessions subscribed to a queue.
func (s *Store) SessionsOn(instance, queue string) []string {
	s.ss.mu.RLock()
	defer s.ss.mu.RUnlock()
	out := make([]string, 0, len(s.ss.byQueue[instance][queue]))
	for c := range s.ss.byQueue[instance][queue] {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
