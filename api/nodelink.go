package api

import (
	"github.com/aeriemq/aerie/internal/problem"

	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// The control plane's services as the node link needs them: node
// authentication and heartbeats (tenancy), usage reports (tenancy checks
// placement, billing counts), with the link's types converted to theirs.

// Hub is the control plane's end of the node link over this API's
// services, for the HTTP routes and for a node in the same process
// (nodelink.LocalSource).
func (a *API) Hub() *nodelink.Hub {
	return &nodelink.Hub{Feed: a.feed, Control: linkControl{svc: a.svc, meter: a.meter}, Log: a.log}
}

// NewHub is the Hub of a control plane whose API is built from d.
func NewHub(d Deps) *nodelink.Hub {
	return (&API{log: d.Log, svc: d.Tenancy, feed: d.Feed, meter: d.Meter}).Hub()
}

// linkControl implements nodelink.Control.
type linkControl struct {
	svc   *tenancy.Service
	meter *billing.Meter
}

func (c linkControl) AuthenticateNode(ctx context.Context, nodeID, token string) error {
	return c.svc.AuthenticateNode(ctx, nodeID, token)
}

func (c linkControl) NodeHeartbeat(ctx context.Context, nodeID string, ack nodelink.Ack) error {
	if err := c.svc.NodeHeartbeat(ctx, nodeID, ack); err != nil {
		return err
	}
	if ack.APIURL != "" {
		return c.svc.SetNodeAPIURL(ctx, nodeID, ack.APIURL)
	}
	return nil
}

// RuleSecret hands a rule's signing secret to the node its instance is
// placed on.
func (c linkControl) RuleSecret(ctx context.Context, nodeID, ruleID string) ([]byte, error) {
	return c.svc.RuleSecretForNode(ctx, nodeID, ruleID)
}

// IngestUsage counts a node's report once. A node may bill only the
// instances placed on it: a report naming any other is refused whole, so
// nothing of it is billed.
func (c linkControl) IngestUsage(ctx context.Context, rep nodelink.UsageReport) (bool, error) {
	ids := make([]string, len(rep.Instances))
	for i, u := range rep.Instances {
		ids[i] = u.InstanceID
	}
	if err := c.svc.CheckUsageInstances(ctx, rep.NodeID, ids); err != nil {
		var fe *tenancy.ForeignUsageError
		if errors.As(err, &fe) {
			return false, fmt.Errorf("%w: %w", nodelink.ErrUsageRefused, err)
		}
		return false, err
	}
	if c.meter == nil {
		return false, nil
	}
	br := billingReport(rep)
	if err := c.ownTopicsOnly(ctx, br); err != nil {
		return false, err
	}
	return c.meter.Ingest(ctx, br)
}

// ownTopicsOnly keeps, of the report's storage per topic, the instances'
// own provisioned topics (tenancy owns topics; billing records what it is
// given): a topic deleted meanwhile, or another instance's, is left out.
func (c linkControl) ownTopicsOnly(ctx context.Context, rep billing.UsageReport) error {
	var ids []string
	for _, u := range rep.Instances {
		if len(u.TopicStoredBytes) > 0 {
			ids = append(ids, u.InstanceID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	own, err := c.svc.InstanceTopicIDs(ctx, ids)
	if err != nil {
		return err
	}
	for i, u := range rep.Instances {
		kept := make(map[string]int64, len(u.TopicStoredBytes))
		for id, n := range u.TopicStoredBytes {
			if own[u.InstanceID][id] {
				kept[id] = n
			}
		}
		rep.Instances[i].TopicStoredBytes = kept
	}
	return nil
}

func billingReport(rep nodelink.UsageReport) billing.UsageReport {
	out := billing.UsageReport{NodeID: rep.NodeID, Seq: rep.Seq, From: rep.From, To: rep.To, Instances: make([]billing.InstanceUsage, len(rep.Instances))}
	for i, u := range rep.Instances {
		out.Instances[i] = billing.InstanceUsage{InstanceID: u.InstanceID, Connects: u.Connects, AuthFailures: u.AuthFailures,
			MessagesIn: u.MessagesIn, MessagesOut: u.MessagesOut, BytesIn: u.BytesIn, BytesOut: u.BytesOut,
			MessageUnitsIn: u.MessageUnitsIn, MessageUnitsOut: u.MessageUnitsOut, ConnectionSeconds: u.ConnectionSeconds,
			Drops: u.Drops, Connections: u.Connections, Subscriptions: u.Subscriptions, Retained: u.Retained, StoredBytes: u.StoredBytes,
			MessagesForwarded: u.MessagesForwarded,
			TopicStoredBytes:  u.TopicStoredBytes}
	}
	return out
}

// writeLinkError answers a node's request that failed: a malformed field
// is a validation error; the rest maps like any API error (a refused usage
// report is 403 through tenancy.ForeignUsageError).
func (a *API) writeLinkError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *nodelink.FieldError
	if errors.As(err, &fe) {
		err = &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: fe.Field, Message: fe.Message}}}
	}
	if errors.Is(err, nodelink.ErrUnknownEndpoint) {
		err = problem.ErrRouteNotFound
	}
	a.WriteError(w, r, err)
}

// nodeError maps what the node link answered to the service's errors: a
// node's 400 is a validation error of what (the query, usually), 404 (not
// on that node yet) and an unreachable node are ErrNodeUnavailable, 409 is
// ErrConflict, a request sent and not answered ErrOutcomeUnknown.
func nodeError(err error, nodeID, what string) error {
	var ne *nodelink.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ne) && ne.Status == http.StatusBadRequest:
		return &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: what, Message: ne.Message}}}
	case errors.As(err, &ne) && ne.Status == http.StatusNotFound:
		return fmt.Errorf("%w: %s", tenancy.ErrNodeUnavailable, ne.Message)
	case errors.As(err, &ne) && ne.Status == http.StatusConflict:
		return fmt.Errorf("%w: %s", tenancy.ErrConflict, ne.Message)
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, nodelink.ErrNoAnswer), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: the instance's node %s: %w", tenancy.ErrOutcomeUnknown, nodeID, err)
	}
	return fmt.Errorf("%w: the instance's node %s: %w", tenancy.ErrNodeUnavailable, nodeID, err)
}

// NewNodeInspector reads live client state through the node link (in
// process in `aerie serve`, over HTTP from `aerie controlplane`), from the
// live nodes of the instance's cell when route is set.
func NewNodeInspector(c nodelink.Caller, route *tenancy.Service) tenancy.NodeInspector {
	n := nodelink.Nodes{Caller: c}
	if route != nil {
		n.Route = route
	}
	return nodeInspector{n}
}

type nodeInspector struct{ n nodelink.Nodes }

func (i nodeInspector) Clients(ctx context.Context, nodeID, instanceID string) ([]nodelink.ClientInfo, error) {
	out, err := i.n.Clients(ctx, nodeID, instanceID)
	return out, inspectError(err, nodeID)
}

func (i nodeInspector) Disconnect(ctx context.Context, nodeID, instanceID, clientID string) (bool, error) {
	ok, err := i.n.Disconnect(ctx, nodeID, instanceID, clientID)
	return ok, inspectError(err, nodeID)
}

func (i nodeInspector) PendingUsage(ctx context.Context, nodeID, instanceID string) (nodelink.InstanceUsage, error) {
	out, err := i.n.PendingUsage(ctx, nodeID, instanceID)
	return out, inspectError(err, nodeID)
}

func (i nodeInspector) Sessions(ctx context.Context, nodeID, instanceID string) ([]nodelink.SessionInfo, error) {
	out, err := i.n.Sessions(ctx, nodeID, instanceID)
	return out, inspectError(err, nodeID)
}

func (i nodeInspector) DiscardSession(ctx context.Context, nodeID, instanceID, clientID string) (bool, error) {
	ok, err := i.n.DiscardSession(ctx, nodeID, instanceID, clientID)
	return ok, inspectError(err, nodeID)
}

// inspectError: live-state reads have no outcome to lose, so anything but
// a conflict is the node being unavailable.
func inspectError(err error, nodeID string) error {
	var ne *nodelink.Error
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
