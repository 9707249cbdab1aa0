package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/linxGnu/grocksdb"

	"github.com/aeriemq/aerie/internal/mqtttopic"
)

// NeverExpire is the Session.Expiry of an MQTT 3.1.1 cleanSession=false
// session (or v5 expiry 0xFFFFFFFF): it lives until deleted.
const NeverExpire time.Duration = -1

// ErrNoSession is returned when a persistent session does not exist.
var ErrNoSession = errors.New("store: no such session")

// Subscription is one subscription of a persistent session. Its queue is the
// filter itself: a concrete topic's queue or the filter's wildcard queue.
type Subscription struct {
	Filter            string `json:"f"`
	QoS               byte   `json:"q"`
	NoLocal           bool   `json:"nl,omitempty"`
	RetainAsPublished bool   `json:"rap,omitempty"`
	RetainHandling    byte   `json:"rh,omitempty"`
	Identifier        uint32 `json:"id,omitempty"`
	// Since is the log offset the subscription started after (set by
	// Subscribe): it covers exactly the messages with greater offsets.
	Since uint64 `json:"sn,omitempty"`
}

// Will is a session's will message, published by the gateway when
// ExpireSessions says it is due (after Delay, or at session end if earlier).
type Will struct {
	Message Message       `json:"m"`
	Delay   time.Duration `json:"d,omitempty"`
}

// Session is a persistent session (3.1.1 cleanSession=false, or v5 session
// expiry > 0).
type Session struct {
	Instance        string
	ClientID        string
	ProtocolVersion byte          // 4 (3.1.1) or 5
	Expiry          time.Duration // NeverExpire for no expiry
	DisconnectedAt  time.Time     // zero while connected
	Will            *Will
	// Subscriptions and Cursors are filled by LoadSession/Resume and are
	// ignored by SaveSession: use Subscribe/Unsubscribe and Ack.
	Subscriptions map[string]Subscription
	Cursors       map[string]uint64 // queue → last offset acknowledged in order
}

type sessionRecord struct {
	V    byte                    `json:"v"`
	Exp  time.Duration           `json:"e"`
	Disc int64                   `json:"dc,omitempty"` // unix ms
	Will *willRecord             `json:"w,omitempty"`
	Subs map[string]Subscription `json:"s,omitempty"`
}

type willRecord struct {
	Msg   []byte        `json:"m"` // log encoding
	Delay time.Duration `json:"d,omitempty"`
}

type sessKey struct{ instance, client string }

// sessions is the in-memory side of persistent sessions.
type sessions struct {
	lock    sync.Mutex   // serialises record read-modify-writes
	mu      sync.RWMutex // guards byQueue and live
	byQueue map[string]map[string]map[string]struct{}
	live    map[sessKey]*liveSession
}

type liveSession struct {
	mu     sync.Mutex
	queues map[string]*cursorState
	// volatile: the session ends with its connection (expiry 0), so its
	// cursors are kept in memory only (nothing to resume from).
	volatile bool
}

// cursorState tracks delivery on one queue of an online session.
type cursorState struct {
	committed uint64 // persisted cursor
	read      uint64 // last offset handed out
	inflight  []uint64
	acked     map[uint64]bool
}

func (ss *sessions) init() {
	ss.byQueue = map[string]map[string]map[string]struct{}{}
	ss.live = map[sessKey]*liveSession{}
}

func (ss *sessions) addSub(inst, queue, client string) {
	q := ss.byQueue[inst]
	if q == nil {
		q = map[string]map[string]struct{}{}
		ss.byQueue[inst] = q
	}
	c := q[queue]
	if c == nil {
		c = map[string]struct{}{}
		q[queue] = c
	}
	c[client] = struct{}{}
}

func (ss *sessions) delSub(inst, queue, client string) {
	delete(ss.byQueue[inst][queue], client)
	if len(ss.byQueue[inst][queue]) == 0 {
		delete(ss.byQueue[inst], queue)
	}
}

func parseSessKey(k []byte) (inst, client string, kind byte, rest []byte, ok bool) {
	i := indexByte(k, sep)
	if i <= 0 {
		return "", "", 0, nil, false
	}
	j := indexByte(k[i+1:], sep)
	if j <= 0 || i+1+j+1 >= len(k) {
		return "", "", 0, nil, false
	}
	return string(k[:i]), string(k[i+1 : i+1+j]), k[i+1+j+1], k[i+1+j+2:], true
}

func (s *Store) loadSessions(ctx context.Context) error {
	it := s.db.NewIteratorCF(s.ro, s.sess)
	defer it.Close()
	for it.SeekToFirst(); it.Valid(); it.Next() {
		inst, client, kind, _, ok := parseSessKey(it.Key().Data())
		if !ok || kind != sessKindMeta {
			continue
		}
		var rec sessionRecord
		if err := json.Unmarshal(it.Value().Data(), &rec); err != nil {
			return fmt.Errorf("store: session %s/%s: %w", inst, client, err)
		}
		for f := range rec.Subs {
			s.ss.addSub(inst, f, client)
			if mqtttopic.HasWildcard(f) {
				s.addFilterLocked(inst, f)
			}
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("store: load sessions: %w", err)
	}
	return ctx.Err()
}

func (s *Store) addFilterLocked(inst, f string) {
	m := s.filters[inst]
	if m == nil {
		m = map[string]int{}
		s.filters[inst] = m
	}
	if m[f]++; m[f] == 1 {
		t := s.tries[inst]
		if t == nil {
			t = mqtttopic.NewIndex()
			s.tries[inst] = t
		}
		t.Add(f)
	}
}

func (s *Store) readRecord(inst, client string) (*sessionRecord, error) {
	v, err := s.getCF(s.sess, sessMetaKey(inst, client))
	if err != nil {
		return nil, fmt.Errorf("store: read session: %w", err)
	}
	if v == nil {
		return nil, nil
	}
	var rec sessionRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("store: decode session %s/%s: %w", inst, client, err)
	}
	return &rec, nil
}

func (s *Store) writeRecord(wb *grocksdb.WriteBatch, inst, client string, rec *sessionRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("store: encode session: %w", err)
	}
	wb.PutCF(s.sess, sessMetaKey(inst, client), v)
	return nil
}

func (s *Store) write(wb *grocksdb.WriteBatch) error {
	s.written.Add(uint64(len(wb.Data())))
	if err := s.db.Write(s.woWAL, wb); err != nil {
		return fmt.Errorf("store: write: %w", err)
	}
	return nil
}

// SaveSession creates or updates a persistent session's record (protocol
// version, expiry, disconnect time, will). Existing subscriptions and
// cursors are kept.
func (s *Store) SaveSession(ctx context.Context, sess Session) error {
	if err := checkName("instance", sess.Instance); err != nil {
		return err
	}
	if err := checkName("client id", sess.ClientID); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	rec, err := s.readRecord(sess.Instance, sess.ClientID)
	if err != nil {
		return err
	}
	if rec == nil {
		rec = &sessionRecord{}
	}
	rec.V, rec.Exp, rec.Disc, rec.Will = sess.ProtocolVersion, sess.Expiry, 0, nil
	if !sess.DisconnectedAt.IsZero() {
		rec.Disc = sess.DisconnectedAt.UnixMilli()
	}
	if sess.Will != nil {
		m := sess.Will.Message
		m.Instance = sess.Instance
		rec.Will = &willRecord{Msg: encodeMessage(nil, &m), Delay: sess.Will.Delay}
	}
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	if err := s.writeRecord(wb, sess.Instance, sess.ClientID, rec); err != nil {
		return err
	}
	if err := s.write(wb); err != nil {
		return err
	}
	return ctx.Err()
}

// LoadSession returns a persistent session with its subscriptions and
// persisted cursors, or ErrNoSession.
func (s *Store) LoadSession(ctx context.Context, instance, clientID string) (*Session, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	return s.loadSession(ctx, instance, clientID)
}

func (s *Store) loadSession(ctx context.Context, instance, clientID string) (*Session, error) {
	rec, err := s.readRecord(instance, clientID)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: %s/%s", ErrNoSession, instance, clientID)
	}
	sess := &Session{Instance: instance, ClientID: clientID, ProtocolVersion: rec.V, Expiry: rec.Exp,
		Subscriptions: map[string]Subscription{}, Cursors: map[string]uint64{}}
	if rec.Disc != 0 {
		sess.DisconnectedAt = time.UnixMilli(rec.Disc)
	}
	if rec.Will != nil {
		m, err := decodeMessage(rec.Will.Msg)
		if err != nil {
			return nil, fmt.Errorf("store: session will: %w", err)
		}
		m.Time = time.Time{}
		sess.Will = &Will{Message: *m, Delay: rec.Will.Delay}
	}
	for f, sub := range rec.Subs {
		sess.Subscriptions[f] = sub
	}
	prefix := append(sessPrefix(instance, clientID), sessKindCursor)
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	ro.SetIterateUpperBound(prefixEnd(sessPrefix(instance, clientID)))
	it := s.db.NewIteratorCF(ro, s.sess)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		sess.Cursors[string(it.Key().Data()[len(prefix):])] = u64(it.Value().Data())
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("store: read cursors: %w", err)
	}
	return sess, ctx.Err()
}

// Subscribe adds (or updates) a subscription of an existing persistent
// session. The first persistent subscription to a wildcard filter creates
// its queue. A new subscription's cursor starts at the current log end (it
// receives messages published after the call; retained ones come from
// Retained). It returns the subscription's cursor.
func (s *Store) Subscribe(ctx context.Context, instance, clientID string, sub Subscription) (uint64, error) {
	if mqtttopic.CheckFilter(sub.Filter) != nil {
		return 0, fmt.Errorf("%w: filter %q", ErrInvalidName, sub.Filter)
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	rec, err := s.readRecord(instance, clientID)
	if err != nil {
		return 0, err
	}
	if rec == nil {
		return 0, fmt.Errorf("%w: %s/%s", ErrNoSession, instance, clientID)
	}
	if rec.Subs == nil {
		rec.Subs = map[string]Subscription{}
	}
	prev, existed := rec.Subs[sub.Filter]
	if existed {
		sub.Since = prev.Since
	}
	rec.Subs[sub.Filter] = sub
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	if err := s.writeRecord(wb, instance, clientID, rec); err != nil {
		return 0, err
	}
	if existed {
		return s.cursor(instance, clientID, sub.Filter), s.write(wb)
	}
	// Register the queue between two group commits: every message after
	// boundary is indexed in it, none before.
	var boundary uint64
	if err := s.control(ctx, func() {
		s.filtersMu.Lock()
		if mqtttopic.HasWildcard(sub.Filter) {
			s.addFilterLocked(instance, sub.Filter)
		}
		boundary = s.next.Load() - 1
		s.filtersMu.Unlock()
	}); err != nil {
		return 0, err
	}
	sub.Since = boundary
	rec.Subs[sub.Filter] = sub
	if err := s.writeRecord(wb, instance, clientID, rec); err != nil {
		return 0, err
	}
	wb.PutCF(s.sess, sessCursorKey(instance, clientID, sub.Filter), u64b(boundary))
	if err := s.write(wb); err != nil {
		return 0, err
	}
	s.ss.mu.Lock()
	s.ss.addSub(instance, sub.Filter, clientID)
	if ls := s.ss.live[sessKey{instance, clientID}]; ls != nil {
		ls.mu.Lock()
		ls.queues[sub.Filter] = &cursorState{committed: boundary, read: boundary, acked: map[uint64]bool{}}
		ls.mu.Unlock()
	}
	s.ss.mu.Unlock()
	return boundary, nil
}

func (s *Store) cursor(instance, clientID, queue string) uint64 {
	v, _ := s.getCF(s.sess, sessCursorKey(instance, clientID, queue))
	return u64(v)
}

// Unsubscribe removes a subscription; the last persistent subscriber of a
// wildcard filter drops its queue (one range delete).
func (s *Store) Unsubscribe(ctx context.Context, instance, clientID, filter string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	rec, err := s.readRecord(instance, clientID)
	if err != nil || rec == nil {
		return err
	}
	if _, ok := rec.Subs[filter]; !ok {
		return nil
	}
	delete(rec.Subs, filter)
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	if err := s.writeRecord(wb, instance, clientID, rec); err != nil {
		return err
	}
	wb.DeleteCF(s.sess, sessCursorKey(instance, clientID, filter))
	if err := s.write(wb); err != nil {
		return err
	}
	s.forgetSubs(instance, clientID, []string{filter})
	return s.releaseFilters(ctx, instance, []string{filter})
}

func (s *Store) forgetSubs(instance, clientID string, filters []string) {
	s.ss.mu.Lock()
	defer s.ss.mu.Unlock()
	ls := s.ss.live[sessKey{instance, clientID}]
	for _, f := range filters {
		s.ss.delSub(instance, f, clientID)
		if _, read := s.ss.byQueue[instance][f]; !read {
			s.tc.drop(QueueRef{instance, f}) // nobody left to read it
		}
		if ls != nil {
			ls.mu.Lock()
			delete(ls.queues, f)
			ls.mu.Unlock()
		}
	}
}

// releaseFilters drops one persistent subscriber from each wildcard filter
// and deletes the queues nobody subscribes to any more.
func (s *Store) releaseFilters(ctx context.Context, instance string, filters []string) error {
	var werr error
	err := s.control(ctx, func() {
		wb := grocksdb.NewWriteBatch()
		defer wb.Destroy()
		s.filtersMu.Lock()
		for _, f := range filters {
			if !mqtttopic.HasWildcard(f) {
				continue
			}
			m := s.filters[instance]
			if m[f]--; m[f] > 0 {
				continue
			}
			delete(m, f)
			if len(m) == 0 {
				delete(s.filters, instance)
			}
			if t := s.tries[instance]; t != nil && t.Remove(f) {
				delete(s.tries, instance)
			}
			p := lqPrefix(instance, f)
			wb.DeleteRangeCF(s.lq, p, prefixEnd(p))
			s.tc.drop(QueueRef{instance, f})
		}
		s.filtersMu.Unlock()
		if wb.Count() > 0 {
			werr = s.write(wb)
		}
	})
	if err != nil {
		return err
	}
	return werr
}

// DeleteSession removes a persistent session, its cursors and its
// subscriptions (dropping wildcard queues left without subscribers).
func (s *Store) DeleteSession(ctx context.Context, instance, clientID string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	return s.deleteSessionLocked(ctx, instance, clientID)
}

func (s *Store) deleteSessionLocked(ctx context.Context, instance, clientID string) error {
	rec, err := s.readRecord(instance, clientID)
	if err != nil || rec == nil {
		return err
	}
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	p := sessPrefix(instance, clientID)
	wb.DeleteRangeCF(s.sess, p, prefixEnd(p))
	if err := s.write(wb); err != nil {
		return err
	}
	filters := make([]string, 0, len(rec.Subs))
	for f := range rec.Subs {
		filters = append(filters, f)
	}
	s.forgetSubs(instance, clientID, filters)
	s.ss.mu.Lock()
	delete(s.ss.live, sessKey{instance, clientID})
	s.ss.mu.Unlock()
	return s.releaseFilters(ctx, instance, filters)
}

// SessionsOn lists the persistent sessions subscribed to a queue (the
// gateway intersects it with its online clients after a queue event).
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

// Resume marks a persistent session connected and sets its delivery
// positions to the persisted cursors: unacknowledged messages are delivered
// again (QoS1 duplicates), nothing after a cursor is skipped.
func (s *Store) Resume(ctx context.Context, instance, clientID string) (*Session, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	rec, err := s.readRecord(instance, clientID)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: %s/%s", ErrNoSession, instance, clientID)
	}
	if rec.Disc != 0 {
		rec.Disc = 0
		wb := grocksdb.NewWriteBatch()
		defer wb.Destroy()
		if err := s.writeRecord(wb, instance, clientID, rec); err != nil {
			return nil, err
		}
		if err := s.write(wb); err != nil {
			return nil, err
		}
	}
	sess, err := s.loadSession(ctx, instance, clientID)
	if err != nil {
		return nil, err
	}
	ls := &liveSession{queues: map[string]*cursorState{}, volatile: rec.Exp == 0}
	for q, c := range sess.Cursors {
		ls.queues[q] = &cursorState{committed: c, read: c, acked: map[uint64]bool{}}
	}
	s.ss.mu.Lock()
	s.ss.live[sessKey{instance, clientID}] = ls
	s.ss.mu.Unlock()
	return sess, nil
}

// Disconnect marks a persistent session offline at `at` (its expiry and
// will delay run from then) and forgets its in-memory delivery state.
func (s *Store) Disconnect(ctx context.Context, instance, clientID string, at time.Time) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	s.ss.mu.Lock()
	delete(s.ss.live, sessKey{instance, clientID})
	s.ss.mu.Unlock()
	rec, err := s.readRecord(instance, clientID)
	if err != nil || rec == nil {
		return err
	}
	rec.Disc = at.UnixMilli()
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	if err := s.writeRecord(wb, instance, clientID, rec); err != nil {
		return err
	}
	if err := s.write(wb); err != nil {
		return err
	}
	return ctx.Err()
}

func (s *Store) liveQueue(instance, clientID, queue string) (*liveSession, *cursorState, error) {
	s.ss.mu.RLock()
	ls := s.ss.live[sessKey{instance, clientID}]
	s.ss.mu.RUnlock()
	if ls == nil {
		return nil, nil, fmt.Errorf("%w: %s/%s is not resumed", ErrNoSession, instance, clientID)
	}
	ls.mu.Lock()
	cs := ls.queues[queue]
	if cs == nil {
		ls.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: %s/%s has no subscription %q", ErrNoSession, instance, clientID, queue)
	}
	return ls, cs, nil
}

// PullSession returns up to limit new entries for a resumed session's
// queue (limit = the client's free receive-maximum/inflight window) and
// records them as in flight. Entries come from the tail cache when the
// session is near the head, so a broadcast costs about one store read.
func (s *Store) PullSession(ctx context.Context, instance, clientID, queue string, limit int) ([]Entry, error) {
	ls, cs, err := s.liveQueue(instance, clientID, queue)
	if err != nil {
		return nil, err
	}
	defer ls.mu.Unlock()
	ents, err := s.Pull(ctx, instance, queue, cs.read, limit)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		cs.inflight = append(cs.inflight, e.Offset)
	}
	if len(ents) > 0 {
		cs.read = ents[len(ents)-1].Offset
	}
	return ents, nil
}

// Ack records the acknowledgement (PUBACK, PUBCOMP; or immediately after
// sending for QoS0 delivery) of an entry pulled by PullSession. The
// persisted cursor advances over the leading run of acknowledged entries
// only. It reports whether the cursor moved.
func (s *Store) Ack(ctx context.Context, instance, clientID, queue string, offset uint64) (bool, error) {
	ls, cs, err := s.liveQueue(instance, clientID, queue)
	if err != nil {
		return false, err
	}
	defer ls.mu.Unlock()
	i := sort.Search(len(cs.inflight), func(i int) bool { return cs.inflight[i] >= offset })
	if i == len(cs.inflight) || cs.inflight[i] != offset {
		return false, nil // duplicate or unknown ack
	}
	cs.acked[offset] = true
	moved := false
	for len(cs.inflight) > 0 && cs.acked[cs.inflight[0]] {
		delete(cs.acked, cs.inflight[0])
		cs.committed = cs.inflight[0]
		cs.inflight = cs.inflight[1:]
		moved = true
	}
	if !moved || ls.volatile {
		return moved, nil
	}
	if err := s.enter(); err != nil {
		return false, err
	}
	defer s.leave()
	if err := s.db.PutCF(s.woWAL, s.sess, sessCursorKey(instance, clientID, queue), u64b(cs.committed)); err != nil {
		return false, fmt.Errorf("store: save cursor: %w", err)
	}
	s.written.Add(uint64(len(instance) + len(clientID) + len(queue) + 3 + 8))
	return true, ctx.Err()
}

// Inflight returns how many pulled entries of a session await an ack.
func (s *Store) Inflight(instance, clientID string) int {
	s.ss.mu.RLock()
	ls := s.ss.live[sessKey{instance, clientID}]
	s.ss.mu.RUnlock()
	if ls == nil {
		return 0
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	n := 0
	for _, cs := range ls.queues {
		n += len(cs.inflight) - len(cs.acked)
	}
	return n
}

// SessionRef names a persistent session.
type SessionRef struct{ Instance, ClientID string }

// Expired reports the outcome of ExpireSessions.
type Expired struct {
	Wills    []Message    // wills now due: the gateway publishes them
	Sessions []SessionRef // sessions whose expiry elapsed; removed
}

// ExpireSessions fires due wills (will delay elapsed, or session ended) and
// removes sessions whose expiry elapsed since they disconnected.
func (s *Store) ExpireSessions(ctx context.Context, now time.Time) (Expired, error) {
	var out Expired
	if err := s.enter(); err != nil {
		return out, err
	}
	defer s.leave()
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	type due struct {
		inst, client string
		rec          sessionRecord
	}
	var todo []due
	it := s.db.NewIteratorCF(s.ro, s.sess)
	for it.SeekToFirst(); it.Valid(); it.Next() {
		inst, client, kind, _, ok := parseSessKey(it.Key().Data())
		if !ok || kind != sessKindMeta {
			continue
		}
		var rec sessionRecord
		if err := json.Unmarshal(it.Value().Data(), &rec); err != nil {
			it.Close()
			return out, fmt.Errorf("store: session %s/%s: %w", inst, client, err)
		}
		if rec.Disc != 0 {
			todo = append(todo, due{inst, client, rec})
		}
	}
	err := it.Err()
	it.Close()
	if err != nil {
		return out, fmt.Errorf("store: scan sessions: %w", err)
	}
	for _, d := range todo {
		disc := time.UnixMilli(d.rec.Disc)
		expired := d.rec.Exp != NeverExpire && !now.Before(disc.Add(d.rec.Exp))
		if w := d.rec.Will; w != nil && (expired || !now.Before(disc.Add(w.Delay))) {
			m, err := decodeMessage(w.Msg)
			if err != nil {
				return out, fmt.Errorf("store: will of %s/%s: %w", d.inst, d.client, err)
			}
			m.Time = time.Time{}
			out.Wills = append(out.Wills, *m)
			d.rec.Will = nil
			if !expired {
				wb := grocksdb.NewWriteBatch()
				err := s.writeRecord(wb, d.inst, d.client, &d.rec)
				if err == nil {
					err = s.write(wb)
				}
				wb.Destroy()
				if err != nil {
					return out, err
				}
			}
		}
		if expired {
			if err := s.deleteSessionLocked(ctx, d.inst, d.client); err != nil {
				return out, err
			}
			out.Sessions = append(out.Sessions, SessionRef{d.inst, d.client})
		}
	}
	return out, nil
}

// DisconnectAll marks every persistent session that is recorded as connected
// as disconnected at `at`. The gateway calls it at start: sessions that were
// online when the node stopped (or crashed) then expire and fire their wills
// like any other disconnected session.
func (s *Store) DisconnectAll(ctx context.Context, at time.Time) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	n := 0
	it := s.db.NewIteratorCF(s.ro, s.sess)
	for it.SeekToFirst(); it.Valid(); it.Next() {
		inst, client, kind, _, ok := parseSessKey(it.Key().Data())
		if !ok || kind != sessKindMeta {
			continue
		}
		s.ss.mu.RLock()
		live := s.ss.live[sessKey{inst, client}] != nil
		s.ss.mu.RUnlock()
		if live {
			continue
		}
		var rec sessionRecord
		if err := json.Unmarshal(it.Value().Data(), &rec); err != nil {
			it.Close()
			return n, fmt.Errorf("store: session %s/%s: %w", inst, client, err)
		}
		if rec.Disc != 0 {
			continue
		}
		rec.Disc = at.UnixMilli()
		if err := s.writeRecord(wb, inst, client, &rec); err != nil {
			it.Close()
			return n, err
		}
		n++
	}
	err := it.Err()
	it.Close()
	if err != nil {
		return n, fmt.Errorf("store: scan sessions: %w", err)
	}
	if n > 0 {
		if err := s.write(wb); err != nil {
			return 0, err
		}
	}
	return n, ctx.Err()
}
