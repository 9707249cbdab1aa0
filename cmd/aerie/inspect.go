package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	dpconfig "github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/gateway"
	"github.com/aeriemq/aerie/dataplane/nodeapi"
	"github.com/aeriemq/aerie/tenancy"
)

// nodeInspector answers live client state (tenancy.NodeInspector) by asking
// the node serving the instance through the node API: in-process in
// `aerie serve`, over HTTP from `aerie controlplane` to `aerie dataplane`.
type nodeInspector struct {
	c nodeapi.Caller
}

func (n nodeInspector) call(ctx context.Context, nodeID, instanceID, op string, in, out any) error {
	var raw json.RawMessage
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode node request: %w", err)
		}
		raw = b
	}
	err := n.c.Call(ctx, nodeID, nodeapi.Request{Op: op, InstanceID: instanceID, Body: raw}, out)
	var ne *nodeapi.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ne) && ne.Status == http.StatusConflict:
		return fmt.Errorf("%w: %s", tenancy.ErrConflict, ne.Message)
	case errors.Is(err, context.Canceled):
		return err
	}
	return fmt.Errorf("%w: the instance's node %s: %w", tenancy.ErrNodeUnavailable, nodeID, err)
}

// Clients implements tenancy.NodeInspector.
func (n nodeInspector) Clients(ctx context.Context, nodeID, instanceID string) ([]dpconfig.ClientInfo, error) {
	var out []dpconfig.ClientInfo
	return out, n.call(ctx, nodeID, instanceID, gateway.OpClientsList, nil, &out)
}

// Disconnect implements tenancy.NodeInspector.
func (n nodeInspector) Disconnect(ctx context.Context, nodeID, instanceID, clientID string) (bool, error) {
	var out gateway.Done
	err := n.call(ctx, nodeID, instanceID, gateway.OpClientDisconnect, gateway.ClientRef{ClientID: clientID}, &out)
	return out.Done, err
}

// PendingUsage implements tenancy.NodeInspector.
func (n nodeInspector) PendingUsage(ctx context.Context, nodeID, instanceID string) (dpconfig.InstanceUsage, error) {
	var out dpconfig.InstanceUsage
	return out, n.call(ctx, nodeID, instanceID, gateway.OpUsagePending, nil, &out)
}

// Sessions implements tenancy.NodeInspector.
func (n nodeInspector) Sessions(ctx context.Context, nodeID, instanceID string) ([]dpconfig.SessionInfo, error) {
	var out []dpconfig.SessionInfo
	return out, n.call(ctx, nodeID, instanceID, gateway.OpSessionsList, nil, &out)
}

// DiscardSession implements tenancy.NodeInspector.
func (n nodeInspector) DiscardSession(ctx context.Context, nodeID, instanceID, clientID string) (bool, error) {
	var out gateway.Done
	err := n.call(ctx, nodeID, instanceID, gateway.OpSessionDiscard, gateway.ClientRef{ClientID: clientID}, &out)
	return out.Done, err
}
