package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// NodeInspector reads live state from the data-plane node serving an
// instance (never from Postgres): its connected clients, and disconnects
// one. In `aerie serve` the node is in the same process.
type NodeInspector interface {
	// Clients lists the instance's connected clients on node nodeID.
	Clients(ctx context.Context, nodeID, instanceID string) ([]nodelink.ClientInfo, error)
	// Disconnect closes the instance's client clientID on node nodeID;
	// false when it is not connected there.
	Disconnect(ctx context.Context, nodeID, instanceID, clientID string) (bool, error)
	// PendingUsage is the instance's usage counted on the node since its
	// last usage report, with its gauges (connections) now.
	PendingUsage(ctx context.Context, nodeID, instanceID string) (nodelink.InstanceUsage, error)
	// Sessions lists the instance's persistent sessions with their backlog.
	Sessions(ctx context.Context, nodeID, instanceID string) ([]nodelink.SessionInfo, error)
	// DiscardSession deletes an offline persistent session; false when
	// there is none (tenancy.ErrConflict-wrapped error while it is online).
	DiscardSession(ctx context.Context, nodeID, instanceID, clientID string) (bool, error)
}

// errNoInspector: this process cannot reach the instance's node for live
// state.
var errNoInspector = fmt.Errorf("%w: live client state is not reachable from this control plane", tenancy.ErrNodeUnavailable)

// FilterClients keeps the clients whose client ID, username or remote
// address contains q (case-insensitive), after the client ID after, at
// most limit of them; next is the last one's ID when more follow.
func FilterClients(list []nodelink.ClientInfo, q, after string, limit int) (page []nodelink.ClientInfo, next string) {
	q = strings.ToLower(q)
	for _, c := range list {
		if after != "" && c.ClientID <= after {
			continue
		}
		if q != "" && !strings.Contains(strings.ToLower(c.ClientID), q) && !strings.Contains(strings.ToLower(c.Username), q) &&
			!strings.Contains(strings.ToLower(c.RemoteAddr), q) {
			continue
		}
		if len(page) == limit {
			return page, page[len(page)-1].ClientID
		}
		page = append(page, c)
	}
	return page, ""
}

func (a *API) listClients(w http.ResponseWriter, r *http.Request) {
	page, err := ParsePage(r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	in, err := a.svc.Instance(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if a.nodes == nil {
		a.WriteError(w, r, errNoInspector)
		return
	}
	all, err := a.nodes.Clients(r.Context(), in.NodeID, in.ID)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	list, next := FilterClients(all, r.URL.Query().Get("q"), page.After, page.Limit)
	if list == nil {
		list = []nodelink.ClientInfo{}
	}
	WriteJSON(w, http.StatusOK, List[nodelink.ClientInfo]{Data: list, NextCursor: NextCursor(next)})
}

func (a *API) disconnectClient(w http.ResponseWriter, r *http.Request) {
	in, err := a.svc.Instance(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if a.nodes == nil {
		a.WriteError(w, r, errNoInspector)
		return
	}
	id := chi.URLParam(r, "client_id")
	ok, err := a.nodes.Disconnect(r.Context(), in.NodeID, in.ID, id)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if !ok {
		a.WriteError(w, r, fmt.Errorf("%w: no client %q is connected to instance %s", tenancy.ErrNotFound, id, in.ID))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listSessions(w http.ResponseWriter, r *http.Request) {
	page, err := ParsePage(r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	in, err := a.svc.Instance(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if a.nodes == nil {
		a.WriteError(w, r, errNoInspector)
		return
	}
	all, err := a.nodes.Sessions(r.Context(), in.NodeID, in.ID)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	list, next := FilterSessions(all, r.URL.Query().Get("q"), page.After, page.Limit)
	WriteJSON(w, http.StatusOK, List[nodelink.SessionInfo]{Data: list, NextCursor: NextCursor(next)})
}

// FilterSessions is FilterClients for sessions (by client ID).
func FilterSessions(list []nodelink.SessionInfo, q, after string, limit int) (page []nodelink.SessionInfo, next string) {
	q = strings.ToLower(q)
	page = []nodelink.SessionInfo{}
	for _, s := range list {
		if (after != "" && s.ClientID <= after) || (q != "" && !strings.Contains(strings.ToLower(s.ClientID), q)) {
			continue
		}
		if len(page) == limit {
			return page, page[len(page)-1].ClientID
		}
		page = append(page, s)
	}
	return page, ""
}

func (a *API) discardSession(w http.ResponseWriter, r *http.Request) {
	in, err := a.svc.Instance(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if a.nodes == nil {
		a.WriteError(w, r, errNoInspector)
		return
	}
	id := chi.URLParam(r, "client_id")
	ok, err := a.nodes.DiscardSession(r.Context(), in.NodeID, in.ID, id)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if !ok {
		a.WriteError(w, r, fmt.Errorf("%w: no persistent session %q in instance %s", tenancy.ErrNotFound, id, in.ID))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
