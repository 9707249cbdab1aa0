package forward

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aeriemq/aerie/dataplane/nodeapi"
)

// Client is the control plane's side of the rule operations: it calls the
// node serving an instance through the node API. Callers check tenancy
// (org → instance → rule) first: the node trusts the instance ID.
type Client struct {
	Caller nodeapi.Caller
}

func (c Client) call(ctx context.Context, nodeID, instanceID, op string, req RuleRequest, out any) error {
	if c.Caller == nil {
		return nodeapi.ErrNoNode
	}
	raw, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode node request: %w", err)
	}
	return c.Caller.Call(ctx, nodeID, nodeapi.Request{Op: op, InstanceID: instanceID, Body: raw}, out)
}

// Status returns a rule's status on its node (StatePending when the node
// does not run it yet).
func (c Client) Status(ctx context.Context, nodeID, instanceID, ruleID string) (Status, error) {
	var all []Status
	if err := c.call(ctx, nodeID, instanceID, OpStatus, RuleRequest{RuleID: ruleID}, &all); err != nil {
		return Status{}, err
	}
	for _, s := range all {
		if s.RuleID == ruleID {
			return s, nil
		}
	}
	return Status{RuleID: ruleID, State: StatePending}, nil
}

// Statuses returns the status of each rule of the instance its node runs.
func (c Client) Statuses(ctx context.Context, nodeID, instanceID string) (map[string]Status, error) {
	var all []Status
	if err := c.call(ctx, nodeID, instanceID, OpStatus, RuleRequest{RuleID: "*"}, &all); err != nil {
		return nil, err
	}
	out := make(map[string]Status, len(all))
	for _, s := range all {
		out[s.RuleID] = s
	}
	return out, nil
}

// DeadLetters returns a page of a rule's dead letters after offset after.
func (c Client) DeadLetters(ctx context.Context, nodeID, instanceID, ruleID string, after uint64, limit int) (DeadLetterPage, error) {
	var out DeadLetterPage
	err := c.call(ctx, nodeID, instanceID, OpDeadLetters, RuleRequest{RuleID: ruleID, After: after, Limit: limit}, &out)
	if out.Items == nil {
		out.Items = []DeadLetter{}
	}
	return out, err
}

// Replay asks the node to try a rule's dead letters again.
func (c Client) Replay(ctx context.Context, nodeID, instanceID, ruleID string) (CountResult, error) {
	var out CountResult
	return out, c.call(ctx, nodeID, instanceID, OpReplay, RuleRequest{RuleID: ruleID}, &out)
}

// Purge empties a rule's dead-letter list.
func (c Client) Purge(ctx context.Context, nodeID, instanceID, ruleID string) (CountResult, error) {
	var out CountResult
	return out, c.call(ctx, nodeID, instanceID, OpPurge, RuleRequest{RuleID: ruleID}, &out)
}
