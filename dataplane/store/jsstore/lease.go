package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
)

var _ store.Leases = (*Store)(nil)

// Leases (store.Leases): "l.<name>" → leaseRecord (JSON) in the sessions
// bucket. Every change is a compare-and-set on the revision read from the
// bucket's leader, so of two nodes taking a free lease one wins. A lease
// is free when it was never held or was released, when its expiry passed
// (the holder's wall clock: the cell's clocks must agree to well within a
// TTL, e.g. NTP), or when its owner left the cell (its heartbeat is gone,
// as the nodes bucket's leader has it: nodes.go).

type leaseRecord struct {
	Owner string `json:"o,omitempty"`
	Exp   int64  `json:"e,omitempty"` // unix ms
	Info  []byte `json:"i,omitempty"`
	Pokes uint64 `json:"p,omitempty"`
}

func (r leaseRecord) lease() store.Lease {
	l := store.Lease{Owner: r.Owner, Info: r.Info, Pokes: r.Pokes}
	if r.Exp > 0 {
		l.Expires = time.UnixMilli(r.Exp).UTC()
	}
	return l
}

func leaseKey(name string) string { return "l." + tok(name) }

// readLease returns a lease record and its revision.
func (s *Store) readLease(ctx context.Context, name string) (leaseRecord, uint64, error) {
	var r leaseRecord
	v, rev, err := s.kvLast(ctx, leaseKey(name))
	if err != nil || v == nil {
		return r, rev, err
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, rev, fmt.Errorf("jsstore: lease %s: %w", name, err)
	}
	return r, rev, nil
}

// updateLease applies fn to the lease record by compare-and-set, retried
// on conflict; fn returns false to leave it as it is.
func (s *Store) updateLease(ctx context.Context, name string, fn func(r *leaseRecord) bool) (leaseRecord, bool, error) {
	if err := s.check(); err != nil {
		return leaseRecord{}, false, err
	}
	for n := 0; ; n++ {
		r, rev, err := s.readLease(ctx, name)
		if err != nil {
			return r, false, err
		}
		if !fn(&r) {
			return r, false, nil
		}
		b, _ := json.Marshal(r)
		_, err = s.kvWrite(ctx, leaseKey(name), b, false, &rev)
		if err == nil {
			return r, true, nil
		}
		if !errors.Is(err, errConflict) || n+1 >= casRetries {
			return r, false, err
		}
		if err := casBackoff(ctx, n); err != nil {
			return r, false, fmt.Errorf("jsstore: lease %s: %w", name, err)
		}
	}
}

// AcquireLease takes or renews a lease for this node (see store.Leases).
func (s *Store) AcquireLease(ctx context.Context, name string, ttl time.Duration, info []byte) (store.Lease, bool, error) {
	me := s.opts.Node
	r, wrote, err := s.updateLease(ctx, name, func(r *leaseRecord) bool {
		now := s.opts.Now()
		if r.Owner != "" && r.Owner != me && now.UnixMilli() < r.Exp {
			if !s.nodeLeft(ctx, r.Owner) {
				return false
			}
		}
		r.Owner, r.Exp, r.Info = me, now.Add(ttl).UnixMilli(), info
		return true
	})
	return r.lease(), wrote && err == nil, err
}

// ReadLease returns a lease as the bucket's leader has it.
func (s *Store) ReadLease(ctx context.Context, name string) (store.Lease, error) {
	if err := s.check(); err != nil {
		return store.Lease{}, err
	}
	r, _, err := s.readLease(ctx, name)
	return r.lease(), err
}

// PokeLease counts a request for the lease's owner.
func (s *Store) PokeLease(ctx context.Context, name string) error {
	_, _, err := s.updateLease(ctx, name, func(r *leaseRecord) bool {
		r.Pokes++
		return true
	})
	return err
}

// ReleaseLease gives the lease up if this node holds it (its pokes stay).
func (s *Store) ReleaseLease(ctx context.Context, name string) error {
	me := s.opts.Node
	_, _, err := s.updateLease(ctx, name, func(r *leaseRecord) bool {
		if r.Owner != me {
			return false
		}
		r.Owner, r.Exp, r.Info = "", 0, nil
		return true
	})
	return err
}

// nodeLeft reports whether a node has left the cell: its heartbeat entry
// is gone as the nodes bucket's leader has it (an error reads as "still
// there").
func (s *Store) nodeLeft(ctx context.Context, node string) bool {
	if s.nodesKV == nil || node == s.opts.Node {
		return false
	}
	v, _, err := s.leaderLast(ctx, "KV_"+s.nodesBucket(), "$KV."+s.nodesBucket()+"."+tok(node))
	return err == nil && v == nil
}
