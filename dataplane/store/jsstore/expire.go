package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
)

// revRecord is a session record with the revision it was read at.
type revRecord struct {
	rec *sessionRecord
	rev uint64
}

// allRecords returns every session record with its revision.
func (s *Store) allRecords(ctx context.Context) ([]revRecord, error) {
	var out []revRecord
	err := s.scanKV(ctx, "s.>", func(_ string, v []byte, rev uint64) error {
		rec := &sessionRecord{}
		if err := json.Unmarshal(v, rec); err != nil {
			return fmt.Errorf("jsstore: session record: %w", err)
		}
		out = append(out, revRecord{rec, rev})
		return nil
	})
	return out, err
}

// casRecord writes rec (nil: purges it) if its key is still at rev; false
// when another writer got there first.
func (s *Store) casRecord(ctx context.Context, rec *sessionRecord, inst, client string, rev uint64) (uint64, bool, error) {
	var val []byte
	if rec != nil {
		var err error
		if val, err = json.Marshal(rec); err != nil {
			return 0, false, fmt.Errorf("jsstore: encode session: %w", err)
		}
	}
	nrev, err := s.kvWrite(ctx, recordKey(inst, client), val, rec == nil, &rev)
	if errors.Is(err, errConflict) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	s.applyRecord(sessKey{inst, client}, rec, nrev)
	return nrev, true, nil
}

// ExpireSessions returns due wills and removes sessions whose expiry
// elapsed. Every change is a compare-and-set on the revision read, so
// with several nodes of a cell calling it at once each will is returned
// by exactly one of them (the one whose rewrite without the will, or
// whose deletion, won) and each session is deleted once. In a cell it
// first marks disconnected the sessions of nodes that left (reap).
func (s *Store) ExpireSessions(ctx context.Context, now time.Time) (store.Expired, error) {
	var out store.Expired
	if err := s.check(); err != nil {
		return out, err
	}
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	recs, err := s.allRecords(ctx)
	if err != nil {
		return out, err
	}
	gone := map[string]*time.Time{}
	for _, r := range recs {
		rec, rev := r.rec, r.rev
		if rec.Disc == 0 {
			if rec, rev, err = s.reap(ctx, rec, rev, gone); err != nil || rec == nil {
				if err != nil {
					return out, err
				}
				continue
			}
		}
		if err := s.expireOne(ctx, rec, rev, now, &out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// expireOne fires a disconnected session's will when due and deletes it
// when expired, each by compare-and-set.
func (s *Store) expireOne(ctx context.Context, rec *sessionRecord, rev uint64, now time.Time, out *store.Expired) error {
	disc := time.UnixMilli(rec.Disc)
	expired := rec.Exp != store.NeverExpire && !now.Before(disc.Add(rec.Exp))
	var will *store.Message
	if w := rec.Will; w != nil && (expired || !now.Before(disc.Add(w.Delay))) {
		m, err := store.DecodeRecord(w.Msg)
		if err != nil {
			return fmt.Errorf("jsstore: will of %s/%s: %w", rec.Inst, rec.Client, err)
		}
		m.Time = time.Time{}
		will = m
	}
	if !expired && will == nil {
		return nil
	}
	var next *sessionRecord
	if !expired {
		cp := *rec
		cp.Will = nil
		next = &cp
	}
	_, won, err := s.casRecord(ctx, next, rec.Inst, rec.Client, rev)
	if err != nil || !won {
		return err
	}
	if will != nil {
		out.Wills = append(out.Wills, *will)
	}
	if expired {
		s.ss.mu.Lock()
		delete(s.ss.live, sessKey{rec.Inst, rec.Client})
		s.ss.mu.Unlock()
		if err := s.purgeCursors(ctx, rec.Inst, rec.Client, rec.Subs); err != nil {
			return err
		}
		out.Sessions = append(out.Sessions, store.SessionRef{Instance: rec.Inst, ClientID: rec.Client})
	}
	return nil
}

// reap marks a connected session whose owner left the cell disconnected
// at the time the owner was last seen (now if never), by compare-and-set
// so one survivor does it. It returns the record as it then is, nil when
// it stays connected (owner alive, or another node changed it first).
func (s *Store) reap(ctx context.Context, rec *sessionRecord, rev uint64, cache map[string]*time.Time) (*sessionRecord, uint64, error) {
	last, gone := s.ownerGone(ctx, rec.Owner, cache)
	if !gone {
		return nil, 0, nil
	}
	cp := *rec
	cp.Disc = last.UnixMilli()
	nrev, won, err := s.casRecord(ctx, &cp, rec.Inst, rec.Client, rev)
	if err != nil || !won {
		return nil, 0, err
	}
	s.cell.reaped.Add(1)
	return &cp, nrev, nil
}

// DisconnectAll marks disconnected at `at` every session recorded as
// connected, owned by this node (in a cell: never another node's) and not
// resumed by this process: the sessions of this node's previous run.
func (s *Store) DisconnectAll(ctx context.Context, at time.Time) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	s.ss.lock.Lock()
	defer s.ss.lock.Unlock()
	recs, err := s.allRecords(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		rec := r.rec
		s.ss.mu.RLock()
		live := s.ss.live[sessKey{rec.Inst, rec.Client}] != nil
		s.ss.mu.RUnlock()
		if live || rec.Disc != 0 || rec.Owner != s.opts.Node && rec.Owner != "" {
			continue
		}
		cp := *rec
		cp.Disc = at.UnixMilli()
		_, won, err := s.casRecord(ctx, &cp, rec.Inst, rec.Client, r.rev)
		if err != nil {
			return n, err
		}
		if won {
			n++
		}
	}
	return n, nil
}
