package store

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// SessionInfo is one persistent session as the console lists it.
type SessionInfo struct {
	ClientID       string // as the gateway knows it
	Online         bool
	DisconnectedAt time.Time // zero while online
	Expiry         time.Duration
	Subscriptions  []string
	// Backlog counts the stored messages after the session's cursors (at
	// most the cap given to Sessions; Capped says it was reached), Oldest
	// is when the first of them was stored.
	Backlog int
	Capped  bool
	Oldest  time.Time
}

// Sessions lists the instance's persistent sessions that hold
// subscriptions, with their backlog counted up to capPerQueue entries per
// subscription.
func (s *Store) Sessions(ctx context.Context, instance string, capPerQueue int) ([]SessionInfo, error) {
	s.ss.mu.RLock()
	seen := map[string]bool{}
	for _, clients := range s.ss.byQueue[instance] {
		for c := range clients {
			seen[c] = true
		}
	}
	s.ss.mu.RUnlock()
	ids := make([]string, 0, len(seen))
	for c := range seen {
		ids = append(ids, c)
	}
	sort.Strings(ids)
	out := make([]SessionInfo, 0, len(ids))
	for _, id := range ids {
		sess, err := s.LoadSession(ctx, instance, id)
		if err != nil || sess == nil {
			continue // ended meanwhile
		}
		info := SessionInfo{ClientID: id, Online: sess.DisconnectedAt.IsZero(), DisconnectedAt: sess.DisconnectedAt, Expiry: sess.Expiry}
		for f := range sess.Subscriptions {
			info.Subscriptions = append(info.Subscriptions, f)
		}
		sort.Strings(info.Subscriptions)
		for q, cur := range sess.Cursors {
			ents, err := s.Pull(ctx, instance, q, cur, capPerQueue)
			if err != nil {
				return nil, fmt.Errorf("backlog of %s: %w", id, err)
			}
			info.Backlog += len(ents)
			info.Capped = info.Capped || len(ents) == capPerQueue
			if len(ents) > 0 && ents[0].Message != nil && (info.Oldest.IsZero() || ents[0].Message.Time.Before(info.Oldest)) {
				info.Oldest = ents[0].Message.Time
			}
		}
		out = append(out, info)
	}
	return out, nil
}
