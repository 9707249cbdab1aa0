package forward

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/nodelink"
)

// Register adds the Service's operations to a node API server.
func (s *Service) Register(srv *nodelink.Server) {
	srv.Handle(nodelink.OpRuleStatus, func(ctx context.Context, inst string, _ json.RawMessage) (any, error) {
		return s.Statuses(ctx, inst), nil
	})
	srv.Handle(nodelink.OpDeadLetters, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		req, err := decodeRule(body)
		if err != nil {
			return nil, err
		}
		return s.DeadLetters(ctx, inst, req.RuleID, req.After, req.Limit)
	})
	srv.Handle(nodelink.OpRuleReplay, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		req, err := decodeRule(body)
		if err != nil {
			return nil, err
		}
		return s.Replay(ctx, inst, req.RuleID)
	})
	srv.Handle(nodelink.OpRulePurge, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		req, err := decodeRule(body)
		if err != nil {
			return nil, err
		}
		return s.Purge(ctx, inst, req.RuleID)
	})
}

func decodeRule(body json.RawMessage) (nodelink.RuleRequest, error) {
	var req nodelink.RuleRequest
	if err := json.Unmarshal(body, &req); err != nil || req.RuleID == "" {
		return req, nodelink.Errorf(http.StatusBadRequest, "bad rule request")
	}
	return req, nil
}

func (s *Service) needRunner(inst, rule string) (*runner, error) {
	rn := s.runner(inst, rule)
	if rn == nil {
		return nil, nodelink.Errorf(http.StatusNotFound, "rule %s is not on this node", rule)
	}
	return rn, nil
}

// Statuses returns the status of each of the instance's rules.
func (s *Service) Statuses(ctx context.Context, inst string) []nodelink.RuleStatus {
	rules := s.o.State.Rules(inst)
	out := make([]nodelink.RuleStatus, 0, len(rules))
	for _, r := range rules {
		out = append(out, s.status(ctx, inst, r.ID))
	}
	return out
}

// status is a rule's status: this node's runner's figures when the rule
// runs here; in a cell, when another node holds the rule, that holder's
// figures as published with its lease (at most one renewal old), with
// the dead letters and lag read from the shared store.
func (s *Service) status(ctx context.Context, inst, rule string) nodelink.RuleStatus {
	st := nodelink.RuleStatus{RuleID: rule, State: nodelink.RuleStatePending}
	rn := s.runner(inst, rule)
	if rn == nil {
		return st
	}
	cursor := rn.cursor.Load()
	if s.o.Leases != nil && !rn.held.Load() {
		if rn.rule.Paused {
			st.State = nodelink.RuleStatePaused
		} else {
			s.remoteStatus(ctx, inst, rule, &st)
		}
		if n, err := s.o.Store.CountDeadLetters(ctx, inst, rule); err == nil {
			st.DeadLetters = int64(n)
		}
		if c, ok, err := s.o.Store.GroupCursor(ctx, inst, rn.queue, rn.group); err == nil && ok {
			cursor = c
		}
	} else {
		s.localStatus(rn, &st)
	}
	if ents, err := s.o.Store.Pull(ctx, inst, rn.queue, cursor, lagCap); err == nil && len(ents) > 0 {
		st.LagMessages, st.LagCapped = len(ents), len(ents) == lagCap
		st.LagSeconds = max(0, time.Since(ents[0].Message.Time).Seconds())
	}
	return st
}

// localStatus fills a status from this node's runner.
func (s *Service) localStatus(rn *runner, st *nodelink.RuleStatus) {
	c := rn.stats
	st.Delivered, st.Failed, st.Retries, st.DeadLettered = c.delivered.Load(), c.failed.Load(), c.retries.Load(), c.deadLettered.Load()
	st.DeadLetters = rn.dead.Load()
	c.mu.Lock()
	st.LastError = c.lastError
	if !c.lastErrorAt.IsZero() {
		t := c.lastErrorAt
		st.LastErrorAt = &t
	}
	if !c.lastDelivered.IsZero() {
		t := c.lastDelivered
		st.LastDeliveredAt = &t
	}
	failing := c.failing
	c.mu.Unlock()
	switch {
	case rn.rule.Paused:
		st.State = nodelink.RuleStatePaused
	case !rn.opened.Load() && st.LastError != "":
		st.State = nodelink.RuleStateError
	case failing:
		st.State = nodelink.RuleStateFailing
	default:
		st.State = nodelink.RuleStateActive
	}
}

// DeadLetters lists a rule's dead letters after offset after.
func (s *Service) DeadLetters(ctx context.Context, inst, rule string, after uint64, limit int) (nodelink.DeadLetterPage, error) {
	rn, err := s.needRunner(inst, rule)
	if err != nil {
		return nodelink.DeadLetterPage{}, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	ds, err := s.o.Store.DeadLetters(ctx, inst, rn.rule.ID, after, limit+1)
	if err != nil {
		return nodelink.DeadLetterPage{}, err
	}
	page := nodelink.DeadLetterPage{Items: make([]nodelink.DeadLetter, 0, len(ds))}
	if len(ds) > limit {
		ds = ds[:limit]
		page.Next = ds[limit-1].Offset
	}
	for _, d := range ds {
		page.Items = append(page.Items, toDeadLetter(inst, d))
	}
	return page, nil
}

func toDeadLetter(inst string, d store.DeadLetter) nodelink.DeadLetter {
	m := d.Message
	topic := m.Topic
	if len(topic) > len(inst) && topic[:len(inst)+1] == mount(inst) {
		topic = topic[len(inst)+1:]
	}
	return nodelink.DeadLetter{Offset: d.Offset, Topic: topic, Payload: m.Payload, QoS: m.QoS, PublishedAt: m.Time.UTC(),
		Reason: d.Reason, Attempts: d.Attempts, DeadAt: d.DeadAt}
}

// Replay asks the rule to try its dead letters again (asynchronously,
// before its next batch; paused rules when resumed). In a cell a node
// that does not hold the rule pokes its lease: the holder replays at its
// next renewal.
func (s *Service) Replay(ctx context.Context, inst, rule string) (nodelink.CountResult, error) {
	rn, err := s.needRunner(inst, rule)
	if err != nil {
		return nodelink.CountResult{}, err
	}
	if s.o.Leases != nil && !rn.held.Load() {
		if err := s.o.Leases.PokeLease(ctx, leaseName(inst, rule)); err != nil {
			return nodelink.CountResult{}, err
		}
		n, err := s.o.Store.CountDeadLetters(ctx, inst, rule)
		return nodelink.CountResult{Count: int64(n)}, err
	}
	rn.askReplay()
	return nodelink.CountResult{Count: rn.dead.Load()}, nil
}

// Purge empties a rule's dead-letter list.
func (s *Service) Purge(ctx context.Context, inst, rule string) (nodelink.CountResult, error) {
	rn, err := s.needRunner(inst, rule)
	if err != nil {
		return nodelink.CountResult{}, err
	}
	n, err := s.o.Store.CountDeadLetters(ctx, inst, rule)
	if err != nil {
		return nodelink.CountResult{}, err
	}
	if err := s.o.Store.DeleteDeadLetters(ctx, inst, rule, nil); err != nil {
		return nodelink.CountResult{}, err
	}
	rn.dead.Store(0)
	return nodelink.CountResult{Count: int64(n)}, nil
}
