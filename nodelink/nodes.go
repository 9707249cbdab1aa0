package nodelink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// Router names the nodes serving an instance: the live nodes of its cell,
// best first (tenancy implements it over Postgres).
type Router interface {
	InstanceNodes(ctx context.Context, instanceID string) ([]string, error)
}

// Nodes is the control plane's typed client of the request path: each
// method asks a node about (or on behalf of) one of its instances. Errors
// are the node's *Error, ErrNoNode (nothing was sent), ErrNoAnswer (sent,
// no answer) or the context's.
type Nodes struct {
	Caller Caller
	// Route, when set, sends each request to the instance's cell: its
	// first live node, then the next one while a node cannot be reached
	// (ErrNoNode: nothing was sent, so nothing is done twice). nodeID, the
	// instance's preferred node, is asked when Route is nil or names no
	// live node.
	Route Router
}

// Call sends op about the instance to its cell (see Route) and decodes the
// answer into out.
func (n Nodes) Call(ctx context.Context, nodeID, instanceID, op string, in, out any) error {
	return n.call(ctx, nodeID, instanceID, op, in, out)
}

// targets is where a request about the instance goes, in order.
func (n Nodes) targets(ctx context.Context, nodeID, instanceID string) []string {
	if n.Route == nil || instanceID == "" {
		return []string{nodeID}
	}
	ids, err := n.Route.InstanceNodes(ctx, instanceID)
	if err != nil || len(ids) == 0 {
		return []string{nodeID}
	}
	return ids
}

func (n Nodes) call(ctx context.Context, nodeID, instanceID, op string, in, out any) error {
	var err error
	for _, t := range n.targets(ctx, nodeID, instanceID) {
		if err = n.callNode(ctx, t, instanceID, op, in, out); !errors.Is(err, ErrNoNode) {
			return err
		}
	}
	return err
}

// callNode sends one request to one node.
func (n Nodes) callNode(ctx context.Context, nodeID, instanceID, op string, in, out any) error {
	if n.Caller == nil {
		return fmt.Errorf("%w: no node link in this process", ErrNoNode)
	}
	var raw json.RawMessage
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode node request: %w", err)
		}
		raw = b
	}
	return n.Caller.Call(ctx, nodeID, Request{Op: op, InstanceID: instanceID, Body: raw}, out)
}

// Clients lists the instance's connected clients: the merged answers of
// every live node of its cell (a device may be connected to any of them),
// sorted by client ID. It fails only when no node answered.
func (n Nodes) Clients(ctx context.Context, nodeID, instanceID string) ([]ClientInfo, error) {
	var all []ClientInfo
	var firstErr error
	answered := 0
	for _, t := range n.targets(ctx, nodeID, instanceID) {
		var part []ClientInfo
		if err := n.callNode(ctx, t, instanceID, OpClientsList, nil, &part); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		answered++
		all = append(all, part...)
	}
	if answered == 0 {
		return nil, firstErr
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].ClientID < all[j].ClientID })
	return all, nil
}

// Disconnect closes the instance's client clientID on whichever live node
// of its cell it is connected to; false when it is connected to none.
func (n Nodes) Disconnect(ctx context.Context, nodeID, instanceID, clientID string) (bool, error) {
	var firstErr error
	answered := false
	for _, t := range n.targets(ctx, nodeID, instanceID) {
		var out Done
		err := n.callNode(ctx, t, instanceID, OpClientDisconnect, ClientRef{ClientID: clientID}, &out)
		if err == nil && out.Done {
			return true, nil
		}
		if err == nil {
			answered = true
		} else if firstErr == nil {
			firstErr = err
		}
	}
	if answered {
		return false, nil
	}
	return false, firstErr
}

// PendingUsage is the instance's usage counted on the node since its last
// usage report, with its gauges now.
func (n Nodes) PendingUsage(ctx context.Context, nodeID, instanceID string) (InstanceUsage, error) {
	var out InstanceUsage
	return out, n.call(ctx, nodeID, instanceID, OpUsagePending, nil, &out)
}

// Sessions lists the instance's persistent sessions with their backlog.
func (n Nodes) Sessions(ctx context.Context, nodeID, instanceID string) ([]SessionInfo, error) {
	var out []SessionInfo
	return out, n.call(ctx, nodeID, instanceID, OpSessionsList, nil, &out)
}

// DiscardSession deletes an offline persistent session; false when there
// is none (a 409 *Error while it is online).
func (n Nodes) DiscardSession(ctx context.Context, nodeID, instanceID, clientID string) (bool, error) {
	var out Done
	err := n.call(ctx, nodeID, instanceID, OpSessionDiscard, ClientRef{ClientID: clientID}, &out)
	return out.Done, err
}

// Poll reads a batch of a topic's messages as a consumer group.
func (n Nodes) Poll(ctx context.Context, nodeID, instanceID string, req PollRequest) (PollResult, error) {
	var out PollResult
	return out, n.call(ctx, nodeID, instanceID, OpPoll, req, &out)
}

// Ack commits a consumer group's offsets.
func (n Nodes) Ack(ctx context.Context, nodeID, instanceID string, req AckRequest) (AckResult, error) {
	var out AckResult
	return out, n.call(ctx, nodeID, instanceID, OpAck, req, &out)
}

// TopicStats reports the storage of the instance's topics on the node.
func (n Nodes) TopicStats(ctx context.Context, nodeID, instanceID string) ([]TopicStat, error) {
	var out []TopicStat
	return out, n.call(ctx, nodeID, instanceID, OpStats, struct{}{}, &out)
}

// Groups lists a topic's consumer groups with their lag on the node.
func (n Nodes) Groups(ctx context.Context, nodeID, instanceID, topicID string) ([]GroupStat, error) {
	var out []GroupStat
	return out, n.call(ctx, nodeID, instanceID, OpGroups, GroupsRequest{TopicID: topicID}, &out)
}

// Publish asks the node to publish p into its instance and returns the
// node's answer (a refusal is a non-empty Code, not an error).
func (n Nodes) Publish(ctx context.Context, nodeID string, p Publish) (PublishResult, error) {
	var out PublishResult
	return out, n.call(ctx, nodeID, p.InstanceID, OpPublish, p, &out)
}
