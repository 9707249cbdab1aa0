package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/aeriemq/aerie/dataplane/nodeapi"
)

// Node API operations on live client state (the console's and API's
// clients and sessions views). The control plane calls them through
// nodeapi, in-process in `aerie serve` and over HTTP in the split topology.
const (
	OpClientsList      = "clients.list"
	OpClientDisconnect = "clients.disconnect"
	OpUsagePending     = "usage.pending"
	OpSessionsList     = "sessions.list"
	OpSessionDiscard   = "sessions.discard"
)

// ClientRef names one client of an instance in a node API request.
type ClientRef struct {
	ClientID string `json:"client_id"`
}

// Done answers a disconnect or discard: false when there was nothing to do.
type Done struct {
	Done bool `json:"done"`
}

// RegisterInspect serves the live-state operations on srv.
func (g *Gateway) RegisterInspect(srv *nodeapi.Server) {
	client := func(body json.RawMessage) (string, error) {
		var ref ClientRef
		if err := json.Unmarshal(body, &ref); err != nil || ref.ClientID == "" {
			return "", nodeapi.Errorf(http.StatusBadRequest, "client_id is required")
		}
		return ref.ClientID, nil
	}
	srv.Handle(OpClientsList, func(_ context.Context, inst string, _ json.RawMessage) (any, error) {
		return g.Clients(inst), nil
	})
	srv.Handle(OpClientDisconnect, func(_ context.Context, inst string, body json.RawMessage) (any, error) {
		id, err := client(body)
		if err != nil {
			return nil, err
		}
		return Done{g.Disconnect(inst, id)}, nil
	})
	srv.Handle(OpUsagePending, func(_ context.Context, inst string, _ json.RawMessage) (any, error) {
		return g.PendingUsage(inst), nil
	})
	srv.Handle(OpSessionsList, func(ctx context.Context, inst string, _ json.RawMessage) (any, error) {
		return g.Sessions(ctx, inst)
	})
	srv.Handle(OpSessionDiscard, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		id, err := client(body)
		if err != nil {
			return nil, err
		}
		ok, err := g.DiscardSession(ctx, inst, id)
		if errors.Is(err, ErrSessionOnline) {
			return nil, nodeapi.Errorf(http.StatusConflict, "%v", err)
		}
		if err != nil {
			return nil, err
		}
		return Done{ok}, nil
	})
}
