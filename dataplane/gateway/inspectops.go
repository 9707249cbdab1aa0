package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/nodelink"
)

// RegisterInspect serves the gateway's operations of the node link on srv:
// live clients and sessions (the console's and API's views), pending usage
// and HTTP publish. The control plane calls them in process in `aerie
// serve` and over HTTP in the split topology; the link's types are
// converted here.
func (g *Gateway) RegisterInspect(srv *nodelink.Server) {
	client := func(body json.RawMessage) (string, error) {
		var ref nodelink.ClientRef
		if err := json.Unmarshal(body, &ref); err != nil || ref.ClientID == "" {
			return "", nodelink.Errorf(http.StatusBadRequest, "client_id is required")
		}
		return ref.ClientID, nil
	}
	srv.Handle(nodelink.OpClientsList, func(_ context.Context, inst string, _ json.RawMessage) (any, error) {
		cs := g.Clients(inst)
		out := make([]nodelink.ClientInfo, len(cs))
		for i, c := range cs {
			out[i] = nodelink.ClientInfo(c)
		}
		return out, nil
	})
	srv.Handle(nodelink.OpClientDisconnect, func(_ context.Context, inst string, body json.RawMessage) (any, error) {
		id, err := client(body)
		if err != nil {
			return nil, err
		}
		return nodelink.Done{Done: g.Disconnect(inst, id)}, nil
	})
	srv.Handle(nodelink.OpUsagePending, func(_ context.Context, inst string, _ json.RawMessage) (any, error) {
		return nodelink.InstanceUsage(g.PendingUsage(inst)), nil
	})
	srv.Handle(nodelink.OpSessionsList, func(ctx context.Context, inst string, _ json.RawMessage) (any, error) {
		ss, err := g.Sessions(ctx, inst)
		if err != nil {
			return nil, err
		}
		out := make([]nodelink.SessionInfo, len(ss))
		for i, s := range ss {
			out[i] = nodelink.SessionInfo(s)
		}
		return out, nil
	})
	srv.Handle(nodelink.OpSessionDiscard, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		id, err := client(body)
		if err != nil {
			return nil, err
		}
		ok, err := g.DiscardSession(ctx, inst, id)
		if errors.Is(err, ErrSessionOnline) {
			return nil, nodelink.Errorf(http.StatusConflict, "%v", err)
		}
		if err != nil {
			return nil, err
		}
		return nodelink.Done{Done: ok}, nil
	})
	srv.Handle(nodelink.OpPublish, func(ctx context.Context, inst string, body json.RawMessage) (any, error) {
		var p nodelink.Publish
		if err := json.Unmarshal(body, &p); err != nil || p.ID == "" {
			return nil, nodelink.Errorf(http.StatusBadRequest, "bad publish request")
		}
		p.InstanceID = inst
		return nodelink.PublishResult(g.Publish(ctx, config.Publish(p))), nil
	})
}
