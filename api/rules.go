package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

type sinkJSON struct {
	Type          string            `json:"type"`
	URL           string            `json:"url"`
	Mode          string            `json:"mode"`
	Headers       map[string]string `json:"headers"`
	TimeoutMillis int64             `json:"timeout_ms"`
}

type ruleJSON struct {
	ID            string    `json:"id"`
	InstanceID    string    `json:"instance_id"`
	Name          string    `json:"name"`
	Filter        string    `json:"filter"`
	Paused        bool      `json:"paused"`
	MaxAgeSeconds int64     `json:"max_age_seconds"`
	Sink          sinkJSON  `json:"sink"`
	SecretPrefix  string    `json:"secret_prefix"`
	Secret        string    `json:"secret,omitempty"` // at creation only
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func toRule(r tenancy.Rule) ruleJSON {
	h := r.Sink.Headers
	if h == nil {
		h = map[string]string{}
	}
	return ruleJSON{ID: r.ID, InstanceID: r.InstanceID, Name: r.Name, Filter: r.Filter, Paused: r.Paused, MaxAgeSeconds: r.MaxAgeSeconds,
		Sink:         sinkJSON{Type: r.Sink.Type, URL: r.Sink.URL, Mode: r.Sink.Mode, Headers: h, TimeoutMillis: r.Sink.TimeoutMillis},
		SecretPrefix: r.SecretPrefix, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

type sinkInput struct {
	Type          *string            `json:"type"`
	URL           *string            `json:"url"`
	Mode          *string            `json:"mode"`
	Headers       *map[string]string `json:"headers"`
	TimeoutMillis *int64             `json:"timeout_ms"`
}

type ruleInput struct {
	Name          *string    `json:"name"`
	Filter        *string    `json:"filter"`
	Paused        *bool      `json:"paused"`
	MaxAgeSeconds *int64     `json:"max_age_seconds"`
	Sink          *sinkInput `json:"sink"`
}

func (in ruleInput) patch() tenancy.RulePatch {
	p := tenancy.RulePatch{Name: in.Name, Filter: in.Filter, Paused: in.Paused, MaxAgeSeconds: in.MaxAgeSeconds}
	if in.Sink != nil {
		p.URL, p.Mode, p.Headers, p.TimeoutMillis = in.Sink.URL, in.Sink.Mode, in.Sink.Headers, in.Sink.TimeoutMillis
	}
	return p
}

func (a *API) createRule(w http.ResponseWriter, r *http.Request) {
	var in ruleInput
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	var rule nodelink.Rule
	if in.Sink != nil && in.Sink.Type != nil {
		rule.Sink.Type = *in.Sink.Type
	}
	in.patch().Apply(&rule)
	out, secret, err := a.svc.CreateRule(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), rule)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	j := toRule(out)
	j.Secret = secret
	w.Header().Set("Location", r.URL.Path+"/"+out.ID)
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusCreated, j)
}

func (a *API) listRules(w http.ResponseWriter, r *http.Request) {
	page, err := ParsePage(r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	list, next, err := a.svc.ListRules(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), page)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, NewList(list, next, toRule))
}

func (a *API) getRule(w http.ResponseWriter, r *http.Request) {
	out, err := a.svc.GetRule(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "rule_id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, toRule(out))
}

func (a *API) updateRule(w http.ResponseWriter, r *http.Request, p tenancy.RulePatch, action string) {
	out, err := a.svc.UpdateRule(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "rule_id"), p, action)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, toRule(out))
}

func (a *API) patchRule(w http.ResponseWriter, r *http.Request) {
	var in ruleInput
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if in.Sink != nil && in.Sink.Type != nil && *in.Sink.Type != nodelink.SinkWebhook {
		a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "sink.type", Message: "cannot change; create another rule"}}})
		return
	}
	a.updateRule(w, r, in.patch(), "rule.update")
}

func (a *API) pauseRule(w http.ResponseWriter, r *http.Request) {
	on := true
	a.updateRule(w, r, tenancy.RulePatch{Paused: &on}, "rule.pause")
}

func (a *API) resumeRule(w http.ResponseWriter, r *http.Request) {
	off := false
	a.updateRule(w, r, tenancy.RulePatch{Paused: &off}, "rule.resume")
}

func (a *API) deleteRule(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.DeleteRule(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "rule_id")); err != nil {
		a.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ruleNode resolves the org's rule (404 for another org's instance or
// rule) and returns its node and a client of the node's rule operations.
func (a *API) ruleNode(r *http.Request) (tenancy.RuleTarget, nodelink.Nodes, error) {
	tgt, err := a.svc.ResolveRule(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "rule_id"))
	return tgt, a.node, err
}

// nodeErr maps a node call's failure to the API's errors.
func nodeErr(err error) error {
	var ne *nodelink.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return err
	case errors.As(err, &ne) && ne.Status == http.StatusNotFound:
		return fmt.Errorf("%w: the rule is not running on its node yet", tenancy.ErrNodeUnavailable)
	}
	return fmt.Errorf("%w: %w", tenancy.ErrNodeUnavailable, err)
}

// ruleStatus answers the rule's delivery state and counters, live from the
// node.
func (a *API) ruleStatus(w http.ResponseWriter, r *http.Request) {
	tgt, fc, err := a.ruleNode(r)
	if err == nil {
		var st nodelink.RuleStatus
		if st, err = fc.RuleStatus(r.Context(), tgt.NodeID, tgt.Rule.InstanceID, tgt.Rule.ID); err == nil {
			WriteJSON(w, http.StatusOK, st)
			return
		}
		err = nodeErr(err)
	}
	a.WriteError(w, r, err)
}

type deadLettersJSON struct {
	Data       []nodelink.DeadLetter `json:"data"`
	NextCursor *string               `json:"next_cursor"`
}

func (a *API) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	page, err := ParsePage(r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	var after uint64
	if page.After != "" {
		if after, err = strconv.ParseUint(page.After, 10, 64); err != nil {
			a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "cursor", Message: "is not a cursor this API returned"}}})
			return
		}
	}
	tgt, fc, err := a.ruleNode(r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out, err := fc.DeadLetters(r.Context(), tgt.NodeID, tgt.Rule.InstanceID, tgt.Rule.ID, after, page.Limit)
	if err != nil {
		a.WriteError(w, r, nodeErr(err))
		return
	}
	next := ""
	if out.Next > 0 {
		next = strconv.FormatUint(out.Next, 10)
	}
	WriteJSON(w, http.StatusOK, deadLettersJSON{Data: out.Items, NextCursor: NextCursor(next)})
}

// deadLetterOp runs replay or purge on the rule's node and audits it.
func (a *API) deadLetterOp(w http.ResponseWriter, r *http.Request, action string, status int,
	op func(nodelink.Nodes, context.Context, string, string, string) (nodelink.CountResult, error)) {
	tgt, fc, err := a.ruleNode(r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out, err := op(fc, r.Context(), tgt.NodeID, tgt.Rule.InstanceID, tgt.Rule.ID)
	if err != nil {
		a.WriteError(w, r, nodeErr(err))
		return
	}
	if err := a.svc.RecordAudit(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, action, tgt.Rule.ID); err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, status, out)
}

func (a *API) replayDeadLetters(w http.ResponseWriter, r *http.Request) {
	a.deadLetterOp(w, r, "rule.replay", http.StatusAccepted, nodelink.Nodes.ReplayDeadLetters)
}

func (a *API) purgeDeadLetters(w http.ResponseWriter, r *http.Request) {
	a.deadLetterOp(w, r, "rule.purge", http.StatusOK, nodelink.Nodes.PurgeDeadLetters)
}

// ruleRoutes registers the forwarding rules of an instance
// (/instances/{instance_id}/rules…).
func (a *API) ruleRoutes(r chi.Router) {
	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/rules", a.listRules)
	r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/rules", a.createRule)
	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/rules/{rule_id}", a.getRule)
	r.With(a.RequireScope(tenancy.ScopeWrite)).Patch("/rules/{rule_id}", a.patchRule)
	r.With(a.RequireScope(tenancy.ScopeWrite)).Delete("/rules/{rule_id}", a.deleteRule)
	r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/rules/{rule_id}/pause", a.pauseRule)
	r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/rules/{rule_id}/resume", a.resumeRule)
	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/rules/{rule_id}/status", a.ruleStatus)
	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/rules/{rule_id}/dead-letters", a.listDeadLetters)
	r.With(a.RequireScope(tenancy.ScopeWrite)).Delete("/rules/{rule_id}/dead-letters", a.purgeDeadLetters)
	r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/rules/{rule_id}/dead-letters/replay", a.replayDeadLetters)
}
