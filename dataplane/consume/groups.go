package consume

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/aeriemq/aerie/dataplane/nodeapi"
)

// OpGroups lists a topic's consumer groups with their lag.
const OpGroups = "topics.groups"

// LagCap bounds the messages counted for a group's lag (LagCapped says so).
const LagCap = 10000

// GroupsRequest asks for a topic's consumer groups.
type GroupsRequest struct {
	TopicID string `json:"topic_id"`
}

// GroupStat is a consumer group of a topic as the node sees it.
type GroupStat struct {
	Group     string `json:"group"`
	Committed uint64 `json:"committed"`
	// Lag counts the topic's stored messages after the committed offset
	// (handed out and not yet acknowledged ones included), at most LagCap.
	Lag       int  `json:"lag"`
	LagCapped bool `json:"lag_capped"`
	// Pending counts the messages handed out and not acknowledged yet
	// (since the node started).
	Pending int `json:"pending"`
	// OldestUnread is when the first message after the committed offset
	// was stored (nil when the group is caught up).
	OldestUnread *time.Time `json:"oldest_unread_at,omitempty"`
}

func (s *Service) registerGroups(srv *nodeapi.Server) {
	srv.Handle(OpGroups, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		var req GroupsRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, nodeapi.Errorf(http.StatusBadRequest, "bad groups request")
		}
		return s.Groups(ctx, inst, req)
	})
}

// Groups lists the consumer groups of a topic with their committed offset,
// lag and pending messages, by name.
func (s *Service) Groups(ctx context.Context, inst string, req GroupsRequest) ([]GroupStat, error) {
	queue, err := s.queueOf(inst, req.TopicID)
	if err != nil {
		return nil, err
	}
	cursors, err := s.st.Groups(inst, queue)
	if err != nil {
		return nil, err
	}
	out := make([]GroupStat, 0, len(cursors))
	for _, c := range cursors {
		gs := GroupStat{Group: c.Group, Committed: c.Committed}
		s.mu.Lock()
		g := s.groups[groupKey{inst, queue, c.Group}]
		s.mu.Unlock()
		if g != nil {
			g.mu.Lock()
			gs.Committed = g.committed
			for _, o := range g.outs {
				if !o.acked {
					gs.Pending++
				}
			}
			g.mu.Unlock()
		}
		var oldest time.Time
		gs.Lag, gs.LagCapped, oldest, err = s.st.QueueLag(ctx, inst, queue, gs.Committed, LagCap)
		if err != nil {
			return nil, err
		}
		if !oldest.IsZero() {
			u := oldest.UTC()
			gs.OldestUnread = &u
		}
		out = append(out, gs)
	}
	return out, nil
}
