package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/linxGnu/grocksdb"
)

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
