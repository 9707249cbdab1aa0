package console

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// Live clients: read from the node serving the instance (c.nodes), never
// from Postgres.

// clientsPageSize is how many clients one page of the list shows.
const clientsPageSize = 50

// ClientsView is an instance's live clients page.
type ClientsView struct {
	Inst    tenancy.Instance
	Clients []nodelink.ClientInfo
	Query   string
	After   string // cursor of this page ("" on the first)
	Next    string // cursor of the next page ("" on the last)
	Err     string // the node could not be asked
	// Sessions are the persistent sessions (first page, same search).
	Sessions []nodelink.SessionInfo
}

// liveClients asks the instance's node for its connected clients.
func (c *Console) liveClients(ctx context.Context, in tenancy.Instance) ([]nodelink.ClientInfo, error) {
	if c.nodes == nil {
		return nil, errors.New("no data-plane node is reachable from this console")
	}
	return c.nodes.Clients(ctx, in.NodeID, in.ID)
}

// liveCount is the instance's live connection count; -1 when unknown.
func (c *Console) liveCount(ctx context.Context, in tenancy.Instance) int {
	list, err := c.liveClients(ctx, in)
	if err != nil {
		return -1
	}
	return len(list)
}

func (c *Console) clientsView(r *http.Request, in tenancy.Instance) ClientsView {
	v := ClientsView{Inst: in, Query: strings.TrimSpace(r.URL.Query().Get("q")), After: r.URL.Query().Get("after")}
	all, err := c.liveClients(r.Context(), in)
	if err != nil {
		v.Err = "The live client list is unavailable right now: " + err.Error()
		return v
	}
	v.Clients, v.Next = tenancy.FilterClients(all, v.Query, v.After, clientsPageSize)
	if sess, err := c.nodes.Sessions(r.Context(), in.NodeID, in.ID); err == nil {
		v.Sessions, _ = tenancy.FilterSessions(sess, v.Query, "", clientsPageSize)
	}
	return v
}

func (c *Console) clientsPage(w http.ResponseWriter, r *http.Request) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	v := c.clientsView(r, in)
	if r.Header.Get("X-Partial") != "" {
		p := c.page(w, r, in.Name, "instances")
		c.render(w, r, http.StatusOK, ClientsRegion(p, v))
		return
	}
	p := c.page(w, r, in.Name+" · clients", "instances")
	c.render(w, r, http.StatusOK, ClientsPage(p, v))
}

func (c *Console) disconnectClient(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	id := r.PostFormValue("client_id")
	back := c.instancePath(in.OrgID, in.ID, "/clients")
	if c.nodes == nil {
		c.errorPage(w, r, http.StatusServiceUnavailable, "No data-plane node is reachable from this console; try again later.")
		return
	}
	done, err := c.nodes.Disconnect(r.Context(), in.NodeID, in.ID, id)
	switch {
	case err != nil:
		c.errorPage(w, r, http.StatusServiceUnavailable, "The instance's node could not be reached: "+err.Error())
		return
	case !done:
		setFlash(w, "Client “"+id+"” is no longer connected.", c.secure)
	default:
		setFlash(w, "Client “"+id+"” disconnected. It may reconnect unless its credential is disabled.", c.secure)
	}
	seeOther(w, r, back)
}

// plural is "1 <one>" or "n <many>".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// credDeleteWarning is the confirmation a credential's Delete asks for,
// with what it cuts off.
func credDeleteWarning(username string, live map[string]int) string {
	msg := "Delete “" + username + "”? Devices using it can no longer connect."
	switch n := live[username]; {
	case live == nil:
	case n > 0:
		msg += " " + plural(n, "connection is", "connections are") + " open now and will be closed."
	default:
		msg += " No device is connected with it right now."
	}
	return msg
}

func (c *Console) discardSession(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	if c.nodes == nil {
		c.errorPage(w, r, http.StatusServiceUnavailable, "No data-plane node is reachable from this console; try again later.")
		return
	}
	id := r.PostFormValue("client_id")
	done, err := c.nodes.DiscardSession(r.Context(), in.NodeID, in.ID, id)
	switch {
	case errors.Is(err, tenancy.ErrConflict):
		setFlash(w, "Session “"+id+"” is connected: disconnect the client first, then discard its session.", c.secure)
	case err != nil:
		c.errorPage(w, r, http.StatusServiceUnavailable, "The instance's node could not be reached: "+err.Error())
		return
	case !done:
		setFlash(w, "Session “"+id+"” no longer exists.", c.secure)
	default:
		setFlash(w, "Session “"+id+"” discarded with its backlog.", c.secure)
	}
	seeOther(w, r, c.instancePath(in.OrgID, in.ID, "/clients"))
}
