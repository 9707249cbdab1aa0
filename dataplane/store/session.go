package store

import (
	"github.com/aeriemq/aerie/internal/mqtttopic"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/linxGnu/grocksdb"
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
