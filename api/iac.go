package api

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/tenancy"
)

// nameFilter reads the `name` query parameter of a list (empty: no filter).
func nameFilter(r *http.Request) (string, error) {
	n := r.URL.Query().Get("name")
	if len(n) > 200 {
		return "", &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "name", Message: "must be at most 200 characters"}}}
	}
	return n, nil
}

func (a *API) getACLRule(w http.ResponseWriter, r *http.Request) {
	rule, err := a.svc.ACLRuleByID(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "rule_id"))
	writeRead(a, w, r, rule, err, toACLRule)
}

func (a *API) patchACLRule(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Effect       *string  `json:"effect"`
		Action       *string  `json:"action"`
		Filter       *string  `json:"filter"`
		CredentialID **string `json:"credential_id"`
		Position     *int     `json:"position"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	ctx, org, inst, id := r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "rule_id")
	cur, err := a.svc.ACLRuleByID(ctx, org, inst, id)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if err := CheckIfMatch(r, toACLRule(cur)); err != nil {
		a.WriteError(w, r, err)
		return
	}
	p := tenancy.ACLRulePatch{Effect: in.Effect, Action: in.Action, Filter: in.Filter, Position: in.Position}
	if in.CredentialID != nil {
		c := ""
		if *in.CredentialID != nil {
			c = **in.CredentialID
		}
		p.CredentialID = &c
	}
	out, err := a.svc.UpdateACLRule(ctx, ActorOf(r), org, inst, id, p)
	writeRead(a, w, r, out, err, toACLRule)
}

// putACLRules replaces the instance's whole ordered rule list (one config
// revision). If-Match compares with the ETag of the whole list as PUT
// returns it ({"data": [...]}).
func (a *API) putACLRules(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Rules []struct {
			Effect       string  `json:"effect"`
			Action       string  `json:"action"`
			Filter       string  `json:"filter"`
			CredentialID *string `json:"credential_id"`
		} `json:"rules"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if in.Rules == nil {
		a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "rules", Message: "is required (an empty list removes every rule)"}}})
		return
	}
	rules := make([]tenancy.ACLRule, len(in.Rules))
	for i, x := range in.Rules {
		rules[i] = tenancy.ACLRule{Effect: x.Effect, Action: x.Action, Filter: x.Filter}
		if x.CredentialID != nil {
			rules[i].CredentialID = *x.CredentialID
		}
	}
	ctx, org, inst := r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id")
	if r.Header.Get("If-Match") != "" {
		cur, err := a.svc.AllACLRules(ctx, org, inst)
		if err != nil {
			a.WriteError(w, r, err)
			return
		}
		if err := CheckIfMatch(r, aclRulesJSON(cur)); err != nil {
			a.WriteError(w, r, err)
			return
		}
	}
	out, err := a.svc.ReplaceACLRules(ctx, ActorOf(r), org, inst, rules)
	writeRead(a, w, r, out, err, aclRulesJSON)
}

func aclRulesJSON(rules []tenancy.ACLRule) map[string]any {
	out := make([]aclRuleJSON, len(rules))
	for i, r := range rules {
		out[i] = toACLRule(r)
	}
	return map[string]any{"data": out}
}

// NotModified answers a GET whose If-None-Match lists the ETag the handler
// sets with 304 Not Modified and no body.
func NotModified(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inm := r.Header.Get("If-None-Match")
		if inm == "" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&notModifiedWriter{ResponseWriter: w, inm: inm}, r)
	})
}

type notModifiedWriter struct {
	http.ResponseWriter
	inm     string
	wrote   bool
	discard bool
}

func (w *notModifiedWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	if code == http.StatusOK && etagListed(w.inm, w.Header().Get("ETag")) {
		w.discard = true
		h := w.Header()
		h.Del("Content-Type")
		h.Del("Content-Length")
		w.ResponseWriter.WriteHeader(http.StatusNotModified)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *notModifiedWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.discard {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *notModifiedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func etagListed(header, tag string) bool {
	if tag == "" {
		return false
	}
	weak := strings.TrimPrefix(tag, "W/")
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == weak {
			return true
		}
	}
	return false
}
