package nodelink

import (
	"context"
	"encoding/json"
	"fmt"
)

// Nodes is the control plane's typed client of the request path: each
// method asks the node nodeID about (or on behalf of) one of its
// instances. Errors are the node's *Error, ErrNoNode (nothing was sent),
// ErrNoAnswer (sent, no answer) or the context's.
type Nodes struct {
	Caller Caller
}

func (n Nodes) call(ctx context.Context, nodeID, instanceID, op string, in, out any) error {
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

// Clients lists the instance's connected clients.
func (n Nodes) Clients(ctx context.Context, nodeID, instanceID string) ([]ClientInfo, error) {
	var out []ClientInfo
	return out, n.call(ctx, nodeID, instanceID, OpClientsList, nil, &out)
}

// Disconnect closes the instance's client clientID; false when it is not
// connected there.
func (n Nodes) Disconnect(ctx context.Context, nodeID, instanceID, clientID string) (bool, error) {
	var out Done
	err := n.call(ctx, nodeID, instanceID, OpClientDisconnect, ClientRef{ClientID: clientID}, &out)
	return out.Done, err
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
