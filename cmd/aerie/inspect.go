package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	dpconfig "github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/gateway"
	"github.com/aeriemq/aerie/tenancy"
)

// localInspector answers live client state for the instances of the node
// in this process (aerie serve). Instances on other nodes (aerie dataplane
// processes) are not reachable from here yet: ErrNodeUnavailable.
type localInspector struct {
	gw     *gateway.Gateway
	nodeID atomic.Pointer[string] // set once the node is registered
}

func (l *localInspector) local(nodeID string) error {
	if id := l.nodeID.Load(); l.gw == nil || id == nil || *id != nodeID {
		return fmt.Errorf("%w: the instance's node %s is not in this process; its live clients cannot be read from here", tenancy.ErrNodeUnavailable, nodeID)
	}
	return nil
}

// Clients implements api.NodeInspector.
func (l *localInspector) Clients(_ context.Context, nodeID, instanceID string) ([]dpconfig.ClientInfo, error) {
	if err := l.local(nodeID); err != nil {
		return nil, err
	}
	return l.gw.Clients(instanceID), nil
}

// Disconnect implements api.NodeInspector.
func (l *localInspector) Disconnect(_ context.Context, nodeID, instanceID, clientID string) (bool, error) {
	if err := l.local(nodeID); err != nil {
		return false, err
	}
	return l.gw.Disconnect(instanceID, clientID), nil
}

// PendingUsage implements api.NodeInspector.
func (l *localInspector) PendingUsage(_ context.Context, nodeID, instanceID string) (dpconfig.InstanceUsage, error) {
	if err := l.local(nodeID); err != nil {
		return dpconfig.InstanceUsage{}, err
	}
	return l.gw.PendingUsage(instanceID), nil
}

// Sessions implements api.NodeInspector.
func (l *localInspector) Sessions(ctx context.Context, nodeID, instanceID string) ([]dpconfig.SessionInfo, error) {
	if err := l.local(nodeID); err != nil {
		return nil, err
	}
	return l.gw.Sessions(ctx, instanceID)
}

// DiscardSession implements api.NodeInspector.
func (l *localInspector) DiscardSession(ctx context.Context, nodeID, instanceID, clientID string) (bool, error) {
	if err := l.local(nodeID); err != nil {
		return false, err
	}
	ok, err := l.gw.DiscardSession(ctx, instanceID, clientID)
	if errors.Is(err, gateway.ErrSessionOnline) {
		return false, fmt.Errorf("%w: %w", tenancy.ErrConflict, err)
	}
	return ok, err
}
