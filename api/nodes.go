package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/tenancy"
)

// NodeRoutes registers the data-plane node API (/internal/v1/nodes/…):
// the config watch stream, acks/heartbeats and usage reports, each
// authenticated with the node's token.
func (a *API) NodeRoutes(r chi.Router) {
	r.Route("/nodes/{node_id}", func(r chi.Router) {
		r.Use(a.authenticateNode)
		r.Get("/watch", a.watchConfig)
		r.Post("/ack", a.ackConfig)
		r.Post("/usage", a.reportUsage)
		r.Post("/publishes/{publish_id}/result", a.publishResult)
		r.Get("/rules/{rule_id}/secret", a.ruleSecret)
	})
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func (a *API) authenticateNode(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.svc.AuthenticateNode(r.Context(), chi.URLParam(r, "node_id"), bearer(r)); err != nil {
			a.WriteError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// watchConfig streams the node's config events as newline-delimited JSON.
func (a *API) watchConfig(w http.ResponseWriter, r *http.Request) {
	var since int64
	if s := r.URL.Query().Get("since"); s != "" {
		if err := json.Unmarshal([]byte(s), &since); err != nil || since < 0 {
			a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "since", Message: "must be a revision (integer ≥ 0)"}}})
			return
		}
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		a.WriteError(w, r, errors.New("streaming unsupported"))
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	enc := json.NewEncoder(w)
	node := chi.URLParam(r, "node_id")
	err := a.feed.Watch(r.Context(), node, since, func(ev config.Event) error {
		_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
		if err := enc.Encode(ev); err != nil {
			return err
		}
		fl.Flush()
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		a.log.Warn("config watch ended", "node", node, "error", err)
	}
}

func (a *API) ackConfig(w http.ResponseWriter, r *http.Request) {
	var ack config.Ack
	if err := DecodeJSON(w, r, &ack); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if err := a.svc.NodeHeartbeat(r.Context(), chi.URLParam(r, "node_id"), ack); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if ack.APIURL != "" {
		if err := a.svc.SetNodeAPIURL(r.Context(), chi.URLParam(r, "node_id"), ack.APIURL); err != nil {
			a.WriteError(w, r, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) reportUsage(w http.ResponseWriter, r *http.Request) {
	var rep config.UsageReport
	if err := DecodeJSON(w, r, &rep); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if rep.NodeID != chi.URLParam(r, "node_id") {
		a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "node_id", Message: "must be the node of the URL"}}})
		return
	}
	// A node may bill only the instances placed on it: a report naming any
	// other is refused whole (403), so nothing of it is billed.
	ids := make([]string, len(rep.Instances))
	for i, u := range rep.Instances {
		ids[i] = u.InstanceID
	}
	if err := a.svc.CheckUsageInstances(r.Context(), rep.NodeID, ids); err != nil {
		var fe *tenancy.ForeignUsageError
		if errors.As(err, &fe) {
			a.log.Warn("usage report refused: instances not placed on the reporting node", "node", fe.NodeID, "seq", rep.Seq, "instances", fe.Instances)
		}
		a.WriteError(w, r, err)
		return
	}
	if a.meter == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	dup, err := a.meter.Ingest(r.Context(), rep)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"seq": rep.Seq, "duplicate": dup})
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
	Endpoints       map[string]string `json:"endpoints"`
	Connections     int64             `json:"connections"`
	Instances       int               `json:"instances"`
	AppliedRevision int64             `json:"applied_revision"`
	CreatedAt       time.Time         `json:"created_at"`
	LastSeenAt      *time.Time        `json:"last_seen_at"`
	Token           string            `json:"token,omitempty"`
}

func toNode(n tenancy.Node) nodeJSON {
	return nodeJSON{ID: n.ID, Name: n.Name, Endpoints: n.Endpoints, Connections: n.Connections, Instances: n.Instances,
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
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	n, tok, err := a.svc.CreateNode(r.Context(), in.Name)
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
