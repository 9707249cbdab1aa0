package forward

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/aeriemq/aerie/dataplane/nodeapi"
	"github.com/aeriemq/aerie/dataplane/store"
)

// Operations served on the node API.
const (
	OpStatus      = "rules.status"
	OpDeadLetters = "rules.deadletters"
	OpReplay      = "rules.replay"
	OpPurge       = "rules.purge"
)

// Rule states.
const (
	StateActive  = "active"  // delivering, or waiting for messages
	StateFailing = "failing" // the last attempt failed; retrying
	StatePaused  = "paused"
	StateError   = "error"   // cannot run (sink cannot be built); see LastError
	StatePending = "pending" // not (yet) on this node
)

// Status is a rule's delivery state and counters on the node.
type Status struct {
	RuleID          string     `json:"rule_id"`
	State           string     `json:"state"`
	Delivered       int64      `json:"delivered"`
	Failed          int64      `json:"failed"`
	Retries         int64      `json:"retries"`
	DeadLettered    int64      `json:"dead_lettered"`
	DeadLetters     int64      `json:"dead_letters"`
	LagMessages     int        `json:"lag_messages"`
	LagCapped       bool       `json:"lag_capped,omitempty"`
	LagSeconds      float64    `json:"lag_seconds"`
	LastError       string     `json:"last_error,omitempty"`
	LastErrorAt     *time.Time `json:"last_error_at,omitempty"`
	LastDeliveredAt *time.Time `json:"last_delivered_at,omitempty"`
}

// RuleRequest names a rule of the instance.
type RuleRequest struct {
	RuleID string `json:"rule_id"`
	After  uint64 `json:"after,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// DeadLetter is one dead letter as the API shows it.
type DeadLetter struct {
	Offset      uint64    `json:"offset"`
	Topic       string    `json:"topic"`
	Payload     []byte    `json:"payload"`
	QoS         byte      `json:"qos"`
	PublishedAt time.Time `json:"published_at"`
	Reason      string    `json:"reason"`
	Attempts    int       `json:"attempts"`
	DeadAt      time.Time `json:"dead_at"`
}

// DeadLetterPage is a page of a rule's dead letters.
type DeadLetterPage struct {
	Items []DeadLetter `json:"items"`
	Next  uint64       `json:"next,omitempty"` // pass as After for the next page; 0 at the end
}

// CountResult answers replay (dead letters queued for a retry) and purge
// (dead letters removed).
type CountResult struct {
	Count int64 `json:"count"`
}

// Register adds the Service's operations to a node API server.
func (s *Service) Register(srv *nodeapi.Server) {
	srv.Handle(OpStatus, func(ctx context.Context, inst string, _ json.RawMessage) (any, error) {
		return s.Statuses(ctx, inst), nil
	})
	srv.Handle(OpDeadLetters, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		req, err := decodeRule(body)
		if err != nil {
			return nil, err
		}
		return s.DeadLetters(ctx, inst, req.RuleID, req.After, req.Limit)
	})
	srv.Handle(OpReplay, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		req, err := decodeRule(body)
		if err != nil {
			return nil, err
		}
		return s.Replay(inst, req.RuleID)
	})
	srv.Handle(OpPurge, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		req, err := decodeRule(body)
		if err != nil {
			return nil, err
		}
		return s.Purge(inst, req.RuleID)
	})
}

func decodeRule(body json.RawMessage) (RuleRequest, error) {
	var req RuleRequest
	if err := json.Unmarshal(body, &req); err != nil || req.RuleID == "" {
		return req, nodeapi.Errorf(http.StatusBadRequest, "bad rule request")
	}
	return req, nil
}

func (s *Service) needRunner(inst, rule string) (*runner, error) {
	rn := s.runner(inst, rule)
	if rn == nil {
		return nil, nodeapi.Errorf(http.StatusNotFound, "rule %s is not on this node", rule)
	}
	return rn, nil
}

// Statuses returns the status of each of the instance's rules.
func (s *Service) Statuses(ctx context.Context, inst string) []Status {
	rules := s.o.State.Rules(inst)
	out := make([]Status, 0, len(rules))
	for _, r := range rules {
		out = append(out, s.status(ctx, inst, r.ID))
	}
	return out
}

func (s *Service) status(ctx context.Context, inst, rule string) Status {
	st := Status{RuleID: rule, State: StatePending}
	rn := s.runner(inst, rule)
	if rn == nil {
		return st
	}
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
		st.State = StatePaused
	case rn.sink == nil && st.LastError != "":
		st.State = StateError
	case failing:
		st.State = StateFailing
	default:
		st.State = StateActive
	}
	if ents, err := s.o.Store.Pull(ctx, inst, rn.queue, rn.cursor.Load(), lagCap); err == nil && len(ents) > 0 {
		st.LagMessages, st.LagCapped = len(ents), len(ents) == lagCap
		st.LagSeconds = max(0, time.Since(ents[0].Message.Time).Seconds())
	}
	return st
}

// DeadLetters lists a rule's dead letters after offset after.
func (s *Service) DeadLetters(ctx context.Context, inst, rule string, after uint64, limit int) (DeadLetterPage, error) {
	rn, err := s.needRunner(inst, rule)
	if err != nil {
		return DeadLetterPage{}, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	ds, err := s.o.Store.DeadLetters(ctx, inst, rn.rule.ID, after, limit+1)
	if err != nil {
		return DeadLetterPage{}, err
	}
	page := DeadLetterPage{Items: make([]DeadLetter, 0, len(ds))}
	if len(ds) > limit {
		ds = ds[:limit]
		page.Next = ds[limit-1].Offset
	}
	for _, d := range ds {
		page.Items = append(page.Items, toDeadLetter(inst, d))
	}
	return page, nil
}

func toDeadLetter(inst string, d store.DeadLetter) DeadLetter {
	m := d.Message
	topic := m.Topic
	if len(topic) > len(inst) && topic[:len(inst)+1] == mount(inst) {
		topic = topic[len(inst)+1:]
	}
	return DeadLetter{Offset: d.Offset, Topic: topic, Payload: m.Payload, QoS: m.QoS, PublishedAt: m.Time.UTC(),
		Reason: d.Reason, Attempts: d.Attempts, DeadAt: d.DeadAt}
}

// Replay asks the rule to try its dead letters again (asynchronously,
// before its next batch; paused rules when resumed).
func (s *Service) Replay(inst, rule string) (CountResult, error) {
	rn, err := s.needRunner(inst, rule)
	if err != nil {
		return CountResult{}, err
	}
	select {
	case rn.replay <- struct{}{}:
	default:
	}
	return CountResult{Count: rn.dead.Load()}, nil
}

// Purge empties a rule's dead-letter list.
func (s *Service) Purge(inst, rule string) (CountResult, error) {
	rn, err := s.needRunner(inst, rule)
	if err != nil {
		return CountResult{}, err
	}
	n, err := s.o.Store.CountDeadLetters(inst, rule)
	if err != nil {
		return CountResult{}, err
	}
	if err := s.o.Store.DeleteDeadLetters(inst, rule, nil); err != nil {
		return CountResult{}, err
	}
	rn.dead.Store(0)
	return CountResult{Count: int64(n)}, nil
}
