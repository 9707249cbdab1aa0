package jsstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/nats-io/nats.go/jetstream"
)

// The session index (who subscribes to which queue) is kept in sync with
// the sessions bucket: this node applies its own writes at once (with the
// revision they got) and a watcher applies every write of the cell in
// revision order. A write older than the one applied for a key is skipped,
// so the two paths converge on the bucket's state.

// recState is what the index holds of one session record.
type recState struct {
	rev     uint64
	deleted bool
	owner   string
	subs    map[string]bool // filters registered in byQueue for it
	own     map[string]bool // filters of the record itself
}

// errSkip tells updateRecord to leave the record as it is.
var errSkip = errors.New("jsstore: no change")

// applyRecord brings the index to rec (nil: deleted) at revision rev;
// fromWatch marks the watcher's in-order delivery. It runs under ss.mu.
func (s *Store) applyRecordLocked(k sessKey, rec *sessionRecord, rev uint64, fromWatch bool) {
	ss := &s.ss
	st := ss.recs[k]
	if st != nil && rev <= st.rev {
		if fromWatch && st.deleted && rev == st.rev && len(ss.pend[k]) == 0 {
			delete(ss.recs, k) // the watcher is past the deletion: no stale write can follow
		}
		return
	}
	if st == nil {
		st = &recState{subs: map[string]bool{}}
		ss.recs[k] = st
	}
	want, own := map[string]bool{}, map[string]bool{}
	if rec != nil {
		for f := range rec.Subs {
			want[f], own[f] = true, true
		}
	}
	st.own = own
	for f := range ss.pend[k] {
		want[f] = true
	}
	for f := range st.subs {
		if !want[f] {
			if ss.delSub(k.instance, f, k.client) {
				s.ev.forget(store.QueueRef{Instance: k.instance, Queue: f})
			}
			delete(st.subs, f)
		}
	}
	for f := range want {
		if !st.subs[f] {
			ss.addSub(k.instance, f, k.client)
			st.subs[f] = true
		}
	}
	st.rev, st.deleted, st.owner = rev, rec == nil, ""
	if rec != nil {
		st.owner = rec.Owner
	}
	if ls := ss.live[k]; ls != nil && !ls.lost.Load() && (rec == nil || rec.Owner != s.opts.Node) {
		// Another node resumed (or deleted) a session this node serves.
		ls.lost.Store(true)
		s.cell.push(store.CellEvent{Kind: store.CellTakeover, Instance: k.instance, ClientID: k.client})
	}
	if fromWatch && st.deleted && len(ss.pend[k]) == 0 {
		delete(ss.recs, k)
	}
}

func (s *Store) applyRecord(k sessKey, rec *sessionRecord, rev uint64) {
	s.ss.mu.Lock()
	s.applyRecordLocked(k, rec, rev, false)
	s.ss.mu.Unlock()
}

// watchSessions loads the session records into the index and then
// follows the sessions bucket from the sequence it loaded with an ordered
// consumer (pull heartbeats of followBeat, so it is recreated within a few
// seconds when the server it ran on stops).
func (s *Store) watchSessions(ctx context.Context) error {
	stream, err := s.js.Stream(ctx, "KV_"+s.bucket)
	if err != nil {
		return fmt.Errorf("jsstore: sessions stream: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("jsstore: sessions stream: %w", err)
	}
	err = s.scanKV(ctx, "s.>", func(key string, v []byte, rev uint64) error {
		s.applyKV(key, v, true, rev)
		return nil
	})
	if err != nil {
		return err
	}
	prefix := "$KV." + s.bucket + "."
	return s.follow(ctx, "KV_"+s.bucket, prefix+"s.>", info.State.LastSeq+1, func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		put := m.Headers().Get(kvOpHeader) == ""
		s.applyKV(strings.TrimPrefix(m.Subject(), prefix), m.Data(), put, md.Sequence.Stream)
	})
}

// followBeat is the idle heartbeat of the ordered consumers that follow
// the sessions bucket and the retained stream.
const followBeat = time.Second

// follow starts an ordered consumer of a stream's subjects from seq.
func (s *Store) follow(ctx context.Context, stream, filter string, seq uint64, fn func(jetstream.Msg)) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if seq > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq
	}
	cons, err := s.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("jsstore: follow %s: %w", stream, err)
	}
	cc, err := cons.Consume(fn, jetstream.PullHeartbeat(followBeat))
	if err != nil {
		return fmt.Errorf("jsstore: follow %s: %w", stream, err)
	}
	s.follows = append(s.follows, cc)
	return nil
}

func (s *Store) applyKV(key string, v []byte, put bool, rev uint64) {
	k, ok := recordKeyOf(key)
	if !ok {
		return
	}
	var rec *sessionRecord
	if put {
		rec = &sessionRecord{}
		if json.Unmarshal(v, rec) != nil {
			return
		}
	}
	s.ss.mu.Lock()
	s.applyRecordLocked(k, rec, rev, true)
	s.ss.mu.Unlock()
}

// recordKeyOf parses "s.<inst>.<client>".
func recordKeyOf(key string) (sessKey, bool) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 || parts[0] != "s" {
		return sessKey{}, false
	}
	inst, err1 := base64.RawURLEncoding.DecodeString(parts[1])
	client, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil {
		return sessKey{}, false
	}
	return sessKey{string(inst), string(client)}, true
}

// updateRecord is a compare-and-set read-modify-write of a session record:
// fn gets the record as the leader has it (nil if none) and returns the new
// one (nil: purge it), or errSkip to change nothing. A write that raced
// with another is retried on a fresh read. It returns the record and
// revision in effect afterwards (rec nil when skipped or purged).
func (s *Store) updateRecord(ctx context.Context, inst, client string, fn func(*sessionRecord) (*sessionRecord, error)) (*sessionRecord, uint64, error) {
	key := recordKey(inst, client)
	for n := 0; ; n++ {
		rec, rev, err := s.readRecordRev(ctx, inst, client)
		if err != nil {
			return nil, 0, err
		}
		next, err := fn(rec)
		if errors.Is(err, errSkip) {
			return nil, rev, nil
		}
		if err != nil {
			return nil, 0, err
		}
		var val []byte
		if next != nil {
			if val, err = json.Marshal(next); err != nil {
				return nil, 0, fmt.Errorf("jsstore: encode session: %w", err)
			}
		}
		nrev, err := s.kvWrite(ctx, key, val, next == nil, &rev)
		if err == nil {
			s.applyRecord(sessKey{inst, client}, next, nrev)
			return next, nrev, nil
		}
		if !errors.Is(err, errConflict) || n >= casRetries {
			return nil, 0, err
		}
		if err := casBackoff(ctx, n); err != nil {
			return nil, 0, err
		}
	}
}

// readRecordRev reads a session record and its revision from the leader.
func (s *Store) readRecordRev(ctx context.Context, inst, client string) (*sessionRecord, uint64, error) {
	v, rev, err := s.kvLast(ctx, recordKey(inst, client))
	if err != nil || v == nil {
		return nil, rev, err
	}
	var rec sessionRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, 0, fmt.Errorf("jsstore: session %s/%s: %w", inst, client, err)
	}
	return &rec, rev, nil
}

// stale reports whether this node's write to a session it served would
// clobber a newer owner's: it resumed the session and lost it since.
// It runs under ss.mu (read).
func (s *Store) staleLocked(k sessKey, rec *sessionRecord) bool {
	ls := s.ss.live[k]
	return ls != nil && (ls.lost.Load() || rec != nil && rec.Owner != s.opts.Node)
}

func (s *Store) stale(k sessKey, rec *sessionRecord) bool {
	s.ss.mu.RLock()
	defer s.ss.mu.RUnlock()
	return s.staleLocked(k, rec)
}
