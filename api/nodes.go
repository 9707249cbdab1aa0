package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/tenancy"
)

// NodeRoutes serves the node link's control-plane end
// (/internal/v1/nodes/…: config watch, acks, usage reports), each request
// authenticated with the node's token.
func (a *API) NodeRoutes(r chi.Router) {
	hub := a.Hub()
	h := http.StripPrefix("/internal/v1", hub.Handler(a.writeLinkError))
	r.Handle("/nodes/*", h)
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// AdminRoutes registers the operator API (/v1/admin/…), authenticated with
// the operator token.
func (a *API) AdminRoutes(r chi.Router) {
	r.Route("/admin", func(r chi.Router) {
		r.Use(a.requireOperator)
		r.Get("/nodes", a.listNodes)
		r.Post("/nodes", a.createNode)
		r.Delete("/nodes/{node_id}", a.revokeNode)
		r.Post("/orgs/{org_id}/invoices/{invoice_id}/paid", a.markInvoicePaid)
	})
}

func (a *API) requireOperator(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(bearer(r)))
		want := sha256.Sum256([]byte(a.adminToken))
		if a.adminToken == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			a.WriteError(w, r, tenancy.ErrUnauthenticated)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type nodeJSON struct {
	ID              string            `json:"id"`
	Name            string            `json:"name"`
	Cell            string            `json:"cell"`
	Status          string            `json:"status"` // up or down
	Endpoints       map[string]string `json:"endpoints"`
	Connections     int64             `json:"connections"`
	Instances       int               `json:"instances"`
	AppliedRevision int64             `json:"applied_revision"`
	CreatedAt       time.Time         `json:"created_at"`
	LastSeenAt      *time.Time        `json:"last_seen_at"`
	Token           string            `json:"token,omitempty"`
}

func toNode(n tenancy.Node) nodeJSON {
	st := tenancy.NodeDown
	if n.Up {
		st = tenancy.NodeUp
	}
	return nodeJSON{ID: n.ID, Name: n.Name, Cell: n.Cell, Status: st, Endpoints: n.Endpoints, Connections: n.Connections, Instances: n.Instances,
		AppliedRevision: n.AppliedRevision, CreatedAt: n.CreatedAt.UTC(), LastSeenAt: n.LastSeenAt}
}

func (a *API) listNodes(w http.ResponseWriter, r *http.Request) {
	ns, err := a.svc.ListNodes(r.Context())
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	last, _, err := a.svc.ConfigRevision(r.Context())
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out := make([]nodeJSON, len(ns))
	for i, n := range ns {
		out[i] = toNode(n)
	}
	WriteJSON(w, http.StatusOK, map[string]any{"data": out, "next_cursor": nil, "config_revision": last})
}

func (a *API) createNode(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name string `json:"name"`
		Cell string `json:"cell"` // empty: a new cell named after the node
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	n, tok, err := a.svc.CreateNodeInCell(r.Context(), in.Name, in.Cell)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out := toNode(n)
	out.Token = tok
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusCreated, out)
}

func (a *API) revokeNode(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.RevokeNode(r.Context(), chi.URLParam(r, "node_id")); err != nil {
		a.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// markInvoicePaid records a customer's payment of an invoice (the
// built-in manual payment method): open or overdue → paid.
func (a *API) markInvoicePaid(w http.ResponseWriter, r *http.Request) {
	inv, err := a.billing.MarkPaid(r.Context(), chi.URLParam(r, "org_id"), chi.URLParam(r, "invoice_id"), time.Now())
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, inv)
}
