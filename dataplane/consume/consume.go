// Package consume serves consumer groups on a node: cloud applications read
// a provisioned topic's queue in the node's store (no second copy) as named
// groups.
//
// A group is a committed offset on the topic's queue (in the store) plus,
// in memory, the messages handed out and not yet acknowledged. A poll hands
// out the messages whose lease has expired (redelivery) and then the next
// ones after everything handed out, each leased for Lease; readers of one
// group share the messages (each goes to one reader at a time). Commit is
// explicit: the ack call names the offsets done, and the committed offset
// moves over the leading run of acknowledged ones (durably). A reader that
// dies before acknowledging loses its lease: the messages go out again once
// it expires, or after a node restart (the in-memory part is gone; the group
// resumes after its committed offset). Delivery is at least once.
package consume

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/internal/mqtttopic"
	"github.com/aeriemq/aerie/nodelink"
)

// Bounds of a poll (the link's) and of a group's outstanding messages.
const (
	MaxLimit       = nodelink.MaxPollLimit
	MaxWait        = nodelink.MaxPollWait
	DefaultLease   = nodelink.DefaultLease
	MaxLease       = nodelink.MaxLease
	MaxOutstanding = 20000 // handed out and not acknowledged, per group
)

type groupKey struct{ instance, queue, group string }

type out struct {
	e        store.Entry
	deadline time.Time
	acked    bool
	sent     int
}

type group struct {
	mu        sync.Mutex
	committed uint64
	next      uint64 // everything up to here was handed out at least once
	outs      []*out // ascending offsets
}

// Store is what the service needs of the node's store: the topic log and
// queue reads (*store.Store, jsstore.Store). On a cell every node shares
// the committed offsets (a reader may poll any node); what was handed out
// and not yet acknowledged is per node.
type Store interface {
	store.TopicLog
	Pull(ctx context.Context, instance, queue string, after uint64, limit int) ([]store.Entry, error)
}

// Service serves the consumer groups of a node.
type Service struct {
	st    Store
	state *configsync.State
	now   func() time.Time

	mu     sync.Mutex
	groups map[groupKey]*group
}

// New returns a Service over the node's store and config.
func New(st Store, state *configsync.State) *Service {
	return &Service{st: st, state: state, now: time.Now, groups: map[groupKey]*group{}}
}

// Register serves the consumer-group operations of the node link on srv.
func (s *Service) Register(srv *nodelink.Server) {
	srv.Handle(nodelink.OpPoll, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		var req nodelink.PollRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, nodelink.Errorf(http.StatusBadRequest, "bad poll request")
		}
		return s.Poll(ctx, inst, req)
	})
	srv.Handle(nodelink.OpAck, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		var req nodelink.AckRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, nodelink.Errorf(http.StatusBadRequest, "bad ack request")
		}
		return s.Ack(ctx, inst, req)
	})
	srv.Handle(nodelink.OpStats, func(ctx context.Context, inst string, _ json.RawMessage) (any, error) {
		return s.Stats(ctx, inst)
	})
	s.registerGroups(srv)
}

func (s *Service) queueOf(inst, topicID string) (string, error) {
	t, ok := s.state.Topic(inst, topicID)
	if !ok {
		return "", nodelink.Errorf(http.StatusNotFound, "topic %s is not on this node", topicID)
	}
	return mqtttopic.Mount(mqtttopic.MountOf(inst), t.Filter), nil
}

func validGroup(g string) bool {
	if g == "" || len(g) > 128 {
		return false
	}
	for _, c := range g {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (s *Service) group(ctx context.Context, inst, queue, name, start string) (*group, error) {
	k := groupKey{inst, queue, name}
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[k]; g != nil {
		return g, nil
	}
	off, ok, err := s.st.GroupCursor(ctx, inst, queue, name)
	if err != nil {
		return nil, err
	}
	if !ok {
		if start == "latest" {
			if off, err = s.st.LastOffset(ctx, inst); err != nil {
				return nil, err
			}
		}
		if err := s.st.CommitGroup(ctx, inst, queue, name, off); err != nil {
			return nil, err
		}
	}
	g := &group{committed: off, next: off}
	s.groups[k] = g
	return g, nil
}

func toMessage(e store.Entry) nodelink.Message {
	m := e.Message
	topic, _ := mqtttopic.Unmount(mqtttopic.MountOf(m.Instance), m.Topic)
	out := nodelink.Message{Offset: e.Offset, Topic: topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, PublishedAt: m.Time.UTC()}
	p := m.Properties
	if p.HasPayloadFormat() || p.MessageExpiry > 0 || p.ContentType != "" || p.ResponseTopic != "" || len(p.CorrelationData) > 0 || len(p.User) > 0 {
		pp := &nodelink.Properties{MessageExpiry: p.MessageExpiry, ContentType: p.ContentType, ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData, User: linkUser(p.User)}
		if p.HasPayloadFormat() {
			v := p.PayloadFormat
			pp.PayloadFormat = &v
		}
		out.Properties = pp
	}
	return out
}

// Poll hands out up to Limit messages to a reader of the group, waiting up
// to Wait for some when there are none.
func (s *Service) Poll(ctx context.Context, inst string, req nodelink.PollRequest) (nodelink.PollResult, error) {
	if !validGroup(req.Group) {
		return nodelink.PollResult{}, nodelink.Errorf(http.StatusBadRequest, "group must be 1-128 letters, digits, '-', '_' or '.'")
	}
	if req.Start != "" && req.Start != "earliest" && req.Start != "latest" {
		return nodelink.PollResult{}, nodelink.Errorf(http.StatusBadRequest, "start must be earliest or latest")
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxLimit)
	wait := min(time.Duration(req.WaitMillis)*time.Millisecond, MaxWait)
	lease := time.Duration(req.LeaseMillis) * time.Millisecond
	if lease <= 0 {
		lease = DefaultLease
	}
	lease = min(lease, MaxLease)
	queue, err := s.queueOf(inst, req.TopicID)
	if err != nil {
		return nodelink.PollResult{}, err
	}
	g, err := s.group(ctx, inst, queue, req.Group, req.Start)
	if err != nil {
		return nodelink.PollResult{}, err
	}
	if len(req.AckOffsets) > 0 {
		if _, err := s.ack(ctx, g, inst, queue, req.Group, req.AckOffsets); err != nil {
			return nodelink.PollResult{}, err
		}
	}
	deadline := time.Now().Add(wait)
	for {
		changed := s.st.Changed()
		msgs, nextLease, err := s.take(ctx, g, inst, queue, limit, lease)
		if err != nil || len(msgs) > 0 {
			g.mu.Lock()
			c := g.committed
			g.mu.Unlock()
			return nodelink.PollResult{Messages: msgs, Committed: c}, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			g.mu.Lock()
			c := g.committed
			g.mu.Unlock()
			return nodelink.PollResult{Messages: []nodelink.Message{}, Committed: c}, nil
		}
		if !nextLease.IsZero() {
			left = min(left, time.Until(nextLease)+time.Millisecond)
		}
		t := time.NewTimer(max(left, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return nodelink.PollResult{}, ctx.Err()
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// take hands out expired leases first, then new messages. It returns the
// earliest lease deadline still running when it hands out nothing.
func (s *Service) take(ctx context.Context, g *group, inst, queue string, limit int, lease time.Duration) ([]nodelink.Message, time.Time, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := s.now()
	var msgs []nodelink.Message
	var next time.Time
	for _, o := range g.outs {
		if len(msgs) >= limit {
			break
		}
		if o.acked {
			continue
		}
		if o.deadline.After(now) {
			if next.IsZero() || o.deadline.Before(next) {
				next = o.deadline
			}
			continue
		}
		o.deadline = now.Add(lease)
		o.sent++
		m := toMessage(o.e)
		m.Redelivered = true
		msgs = append(msgs, m)
	}
	if n := limit - len(msgs); n > 0 && len(g.outs) < MaxOutstanding {
		ents, err := s.st.Pull(ctx, inst, queue, g.next, min(n, MaxOutstanding-len(g.outs)))
		if err != nil {
			return nil, time.Time{}, err
		}
		for _, e := range ents {
			g.outs = append(g.outs, &out{e: e, deadline: now.Add(lease), sent: 1})
			msgs = append(msgs, toMessage(e))
			g.next = e.Offset
		}
	}
	return msgs, next, nil
}

// Ack acknowledges offsets handed to a group.
func (s *Service) Ack(ctx context.Context, inst string, req nodelink.AckRequest) (nodelink.AckResult, error) {
	if !validGroup(req.Group) {
		return nodelink.AckResult{}, nodelink.Errorf(http.StatusBadRequest, "group must be 1-128 letters, digits, '-', '_' or '.'")
	}
	queue, err := s.queueOf(inst, req.TopicID)
	if err != nil {
		return nodelink.AckResult{}, err
	}
	g, err := s.group(ctx, inst, queue, req.Group, "")
	if err != nil {
		return nodelink.AckResult{}, err
	}
	return s.ack(ctx, g, inst, queue, req.Group, req.Offsets)
}

func (s *Service) ack(ctx context.Context, g *group, inst, queue, name string, offs []uint64) (nodelink.AckResult, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, off := range offs {
		i := sort.Search(len(g.outs), func(i int) bool { return g.outs[i].e.Offset >= off })
		if i < len(g.outs) && g.outs[i].e.Offset == off {
			g.outs[i].acked = true
		}
	}
	n := 0
	for n < len(g.outs) && g.outs[n].acked {
		n++
	}
	if n > 0 {
		c := g.outs[n-1].e.Offset
		if err := s.st.CommitGroup(ctx, inst, queue, name, c); err != nil {
			return nodelink.AckResult{}, err
		}
		g.committed = c
		g.outs = append(g.outs[:0], g.outs[n:]...)
	}
	return nodelink.AckResult{Committed: g.committed, Pending: len(g.outs)}, nil
}

// Stats reports the storage of the instance's topics on this node.
func (s *Service) Stats(ctx context.Context, inst string) ([]nodelink.TopicStat, error) {
	ts, _ := s.state.Topics(inst)
	byFilter := map[string]int64{}
	stats, err := s.st.TopicStats(ctx, inst)
	if err != nil {
		return nil, err
	}
	for _, st := range stats {
		byFilter[st.Filter] = st.Bytes
	}
	out := make([]nodelink.TopicStat, 0, len(ts))
	for _, t := range ts {
		out = append(out, nodelink.TopicStat{TopicID: t.ID, Filter: t.Filter, StoredBytes: byFilter[mqtttopic.Mount(mqtttopic.MountOf(inst), t.Filter)]})
	}
	return out, nil
}

func linkUser(ps []store.UserProperty) []nodelink.UserProperty {
	if ps == nil {
		return nil
	}
	out := make([]nodelink.UserProperty, len(ps))
	for i, p := range ps {
		out[i] = nodelink.UserProperty(p)
	}
	return out
}
