package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// topicNode resolves the org's topic (404 for another org's instance or
// topic) to the node serving its instance.
func (a *API) topicNode(ctx context.Context, r *http.Request) (tenancy.TopicTarget, error) {
	tgt, err := a.svc.ResolveTopic(ctx, PrincipalFrom(ctx).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "topic_id"))
	if err != nil {
		return tgt, err
	}
	if a.node.Caller == nil {
		return tgt, errNoNodeLink
	}
	return tgt, nil
}

func queryInt(r *http.Request, name string, def, lo, hi int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: name, Message: fmt.Sprintf("must be an integer from %d to %d", lo, hi)}}}
	}
	return n, nil
}

// pollParams reads a poll's query; every representation has the same
// bounds.
func pollParams(r *http.Request) (nodelink.PollRequest, error) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit", 100, 1, nodelink.MaxPollLimit)
	if err != nil {
		return nodelink.PollRequest{}, err
	}
	wait, err := queryInt(r, "wait", 0, 0, int64(nodelink.MaxPollWait/time.Second))
	if err != nil {
		return nodelink.PollRequest{}, err
	}
	lease, err := queryInt(r, "lease", int64(nodelink.DefaultLease/time.Second), 1, int64(nodelink.MaxLease/time.Second))
	if err != nil {
		return nodelink.PollRequest{}, err
	}
	return nodelink.PollRequest{Group: q.Get("group"), Limit: int(limit), WaitMillis: wait * 1000,
		LeaseMillis: lease * 1000, Start: q.Get("start")}, nil
}

// pollTopic reads a topic's messages as a consumer group: a JSON batch
// (long poll: waits up to wait seconds when there is none), one raw
// payload (Accept: application/octet-stream) or a stream of Server-Sent
// Events (Accept: text/event-stream, topicstream.go).
func (a *API) pollTopic(w http.ResponseWriter, r *http.Request) {
	req, err := pollParams(r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	switch negotiatePoll(r.Header.Get("Accept")) {
	case mediaEventStream:
		a.streamTopic(w, r, req)
		return
	case mediaOctetStream:
		a.rawTopicMessage(w, r, req)
		return
	}
	tgt, err := a.topicNode(r.Context(), r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out, err := a.pollNode(r.Context(), tgt, req)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if out.Messages == nil {
		out.Messages = []nodelink.Message{}
	}
	WriteJSON(w, http.StatusOK, out)
}

// pollNode reads a batch of tgt's messages from the node serving it.
func (a *API) pollNode(ctx context.Context, tgt tenancy.TopicTarget, req nodelink.PollRequest) (nodelink.PollResult, error) {
	req.TopicID = tgt.Topic.ID
	out, err := a.node.Poll(ctx, tgt.NodeID, tgt.Topic.InstanceID, req)
	return out, readError(err, tgt.NodeID)
}

// readError is nodeError for reads: nothing is lost when no answer comes,
// so the node is just unavailable.
func readError(err error, nodeID string) error {
	if errors.Is(err, nodelink.ErrNoAnswer) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: the instance's node %s: %w", tenancy.ErrNodeUnavailable, nodeID, err)
	}
	return nodeError(err, nodeID, "query")
}

// ackTopic commits a consumer group's offsets.
func (a *API) ackTopic(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Group   string   `json:"group"`
		Offsets []uint64 `json:"offsets"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if len(in.Offsets) > 10*nodelink.MaxPollLimit {
		a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "offsets", Message: "at most 10000 offsets"}}})
		return
	}
	tgt, err := a.topicNode(r.Context(), r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out, err := a.node.Ack(r.Context(), tgt.NodeID, tgt.Topic.InstanceID, nodelink.AckRequest{TopicID: tgt.Topic.ID, Group: in.Group, Offsets: in.Offsets})
	if err != nil {
		a.WriteError(w, r, readError(err, tgt.NodeID))
		return
	}
	WriteJSON(w, http.StatusOK, out)
}

// topicStorage reports the bytes the node stores for the topic.
func (a *API) topicStorage(w http.ResponseWriter, r *http.Request) {
	tgt, err := a.topicNode(r.Context(), r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	stats, err := a.node.TopicStats(r.Context(), tgt.NodeID, tgt.Topic.InstanceID)
	if err != nil {
		a.WriteError(w, r, readError(err, tgt.NodeID))
		return
	}
	for _, s := range stats {
		if s.TopicID == tgt.Topic.ID {
			WriteJSON(w, http.StatusOK, s)
			return
		}
	}
	a.WriteError(w, r, fmt.Errorf("%w: topic %s not applied on its node yet", tenancy.ErrNodeUnavailable, tgt.Topic.ID))
}

type groupsJSON struct {
	Data []nodelink.GroupStat `json:"data"`
}

// topicGroups lists the topic's consumer groups with their lag, read from
// the node serving the instance.
func (a *API) topicGroups(w http.ResponseWriter, r *http.Request) {
	tgt, err := a.topicNode(r.Context(), r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out, err := a.node.Groups(r.Context(), tgt.NodeID, tgt.Topic.InstanceID, tgt.Topic.ID)
	if err != nil {
		a.WriteError(w, r, readError(err, tgt.NodeID))
		return
	}
	if out == nil {
		out = []nodelink.GroupStat{}
	}
	WriteJSON(w, http.StatusOK, groupsJSON{Data: out})
}
