package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/dataplane/consume"
	"github.com/aeriemq/aerie/dataplane/nodeapi"
	"github.com/aeriemq/aerie/tenancy"
)

// callNode resolves the org's topic (404 for another org's instance or
// topic) and calls op on the node serving its instance.
func (a *API) callNode(ctx context.Context, r *http.Request, op string, body func(topicID string) any, out any) error {
	tgt, err := a.resolveTopic(ctx, r)
	if err != nil {
		return err
	}
	return a.callTopicNode(ctx, r, tgt, op, body(tgt.Topic.ID), out)
}

// resolveTopic finds the org's topic of the request and its node.
func (a *API) resolveTopic(ctx context.Context, r *http.Request) (tenancy.TopicTarget, error) {
	return a.svc.ResolveTopic(ctx, PrincipalFrom(ctx).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "topic_id"))
}

// callTopicNode calls op with body on the node serving tgt.
func (a *API) callTopicNode(ctx context.Context, r *http.Request, tgt tenancy.TopicTarget, op string, body, out any) error {
	if a.nodeAPI == nil {
		return fmt.Errorf("%w: no node API", tenancy.ErrNodeUnavailable)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode node request: %w", err)
	}
	err = a.nodeAPI.Call(ctx, tgt.NodeID, nodeapi.Request{Op: op, InstanceID: chi.URLParam(r, "instance_id"), Body: raw}, out)
	var ne *nodeapi.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ne) && ne.Status == http.StatusBadRequest:
		return &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "query", Message: ne.Message}}}
	case errors.As(err, &ne) && ne.Status == http.StatusNotFound:
		// The node has not applied the topic yet.
		return fmt.Errorf("%w: %s", tenancy.ErrNodeUnavailable, ne.Message)
	case errors.Is(err, context.Canceled):
		return err
	}
	return fmt.Errorf("%w: %w", tenancy.ErrNodeUnavailable, err)
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

type pollJSON struct {
	Messages  []consume.Message `json:"messages"`
	Committed uint64            `json:"committed"`
}

// pollParams reads a poll's query; every representation has the same
// bounds.
func pollParams(r *http.Request) (consume.PollRequest, error) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit", 100, 1, consume.MaxLimit)
	if err != nil {
		return consume.PollRequest{}, err
	}
	wait, err := queryInt(r, "wait", 0, 0, int64(consume.MaxWait/time.Second))
	if err != nil {
		return consume.PollRequest{}, err
	}
	lease, err := queryInt(r, "lease", int64(consume.DefaultLease/time.Second), 1, int64(consume.MaxLease/time.Second))
	if err != nil {
		return consume.PollRequest{}, err
	}
	return consume.PollRequest{Group: q.Get("group"), Limit: int(limit), WaitMillis: wait * 1000, LeaseMillis: lease * 1000, Start: q.Get("start")}, nil
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
	var out pollJSON
	err = a.callNode(r.Context(), r, consume.OpPoll, func(id string) any { req.TopicID = id; return req }, &out)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if out.Messages == nil {
		out.Messages = []consume.Message{}
	}
	WriteJSON(w, http.StatusOK, out)
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
	if len(in.Offsets) > 10*consume.MaxLimit {
		a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "offsets", Message: "at most 10000 offsets"}}})
		return
	}
	var out consume.AckResult
	if err := a.callNode(r.Context(), r, consume.OpAck, func(id string) any {
		return consume.AckRequest{TopicID: id, Group: in.Group, Offsets: in.Offsets}
	}, &out); err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, out)
}

// topicStorage reports the bytes the node stores for the topic.
func (a *API) topicStorage(w http.ResponseWriter, r *http.Request) {
	var stats []consume.TopicStat
	var id string
	if err := a.callNode(r.Context(), r, consume.OpStats, func(tid string) any { id = tid; return struct{}{} }, &stats); err != nil {
		a.WriteError(w, r, err)
		return
	}
	for _, s := range stats {
		if s.TopicID == id {
			WriteJSON(w, http.StatusOK, s)
			return
		}
	}
	a.WriteError(w, r, fmt.Errorf("%w: topic %s not applied on its node yet", tenancy.ErrNodeUnavailable, id))
}
