package consume

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/aeriemq/aerie/nodelink"
)

func (s *Service) registerGroups(srv *nodelink.Server) {
	srv.Handle(nodelink.OpGroups, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		var req nodelink.GroupsRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, nodelink.Errorf(http.StatusBadRequest, "bad groups request")
		}
		return s.Groups(ctx, inst, req)
	})
}

// Groups lists the consumer groups of a topic with their committed offset,
// lag and pending messages, by name.
func (s *Service) Groups(ctx context.Context, inst string, req nodelink.GroupsRequest) ([]nodelink.GroupStat, error) {
	queue, err := s.queueOf(inst, req.TopicID)
	if err != nil {
		return nil, err
	}
	cursors, err := s.st.Groups(ctx, inst, queue)
	if err != nil {
		return nil, err
	}
	out := make([]nodelink.GroupStat, 0, len(cursors))
	for _, c := range cursors {
		gs := nodelink.GroupStat{Group: c.Group, Committed: c.Committed}
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
		gs.Lag, gs.LagCapped, oldest, err = s.st.QueueLag(ctx, inst, queue, gs.Committed, nodelink.LagCap)
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
