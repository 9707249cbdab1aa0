package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/tenancy"
)

// Live clients and sessions: read from the node serving the instance
// (a.nodes, a tenancy.NodeInspector), never from Postgres.

// errNoInspector: this process cannot reach the instance's node for live
// state.
var errNoInspector = fmt.Errorf("%w: live client state is not reachable from this control plane", tenancy.ErrNodeUnavailable)

func (a *API) listClients(w http.ResponseWriter, r *http.Request) {
	listLive(a, w, r, tenancy.NodeInspector.Clients, tenancy.FilterClients)
}

func (a *API) listSessions(w http.ResponseWriter, r *http.Request) {
	listLive(a, w, r, tenancy.NodeInspector.Sessions, tenancy.FilterSessions)
}

func (a *API) disconnectClient(w http.ResponseWriter, r *http.Request) {
	dropLive(a, w, r, tenancy.NodeInspector.Disconnect, "no client %q is connected to instance %s")
}

func (a *API) discardSession(w http.ResponseWriter, r *http.Request) {
	dropLive(a, w, r, tenancy.NodeInspector.DiscardSession, "no persistent session %q in instance %s")
}

// liveInstance resolves the instance of the route, with a node inspector
// to ask; false when it answered an error.
func (a *API) liveInstance(w http.ResponseWriter, r *http.Request) (tenancy.Instance, bool) {
	in, err := a.svc.Instance(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"))
	if err == nil && a.nodes == nil {
		err = errNoInspector
	}
	if err != nil {
		a.WriteError(w, r, err)
		return tenancy.Instance{}, false
	}
	return in, true
}

// listLive answers one page of a live list read from the instance's node,
// searched with ?q= and paged by client ID.
func listLive[T any](a *API, w http.ResponseWriter, r *http.Request,
	read func(tenancy.NodeInspector, context.Context, string, string) ([]T, error),
	filter func([]T, string, string, int) ([]T, string)) {
	page, err := ParsePage(r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	in, ok := a.liveInstance(w, r)
	if !ok {
		return
	}
	all, err := read(a.nodes, r.Context(), in.NodeID, in.ID)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	list, next := filter(all, r.URL.Query().Get("q"), page.After, page.Limit)
	WriteJSON(w, http.StatusOK, List[T]{Data: list, NextCursor: NextCursor(next)})
}

// dropLive disconnects a client or discards a session on the instance's
// node: 204, or 404 (notFound, with the client ID and instance) when there
// was none.
func dropLive(a *API, w http.ResponseWriter, r *http.Request,
	drop func(tenancy.NodeInspector, context.Context, string, string, string) (bool, error), notFound string) {
	in, ok := a.liveInstance(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "client_id")
	done, err := drop(a.nodes, r.Context(), in.NodeID, in.ID, id)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if !done {
		a.WriteError(w, r, fmt.Errorf("%w: "+notFound, tenancy.ErrNotFound, id, in.ID))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
