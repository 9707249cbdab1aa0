package console

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/tenancy"
)

// ACLView is the ACL rules page.
type ACLView struct {
	Inst  tenancy.Instance
	Rules []tenancy.ACLRule
	Creds map[string]string // credential ID → username
	List  []tenancy.Credential
	Form  Form
}

func (c *Console) aclRules(w http.ResponseWriter, r *http.Request) {
	c.showACL(w, r, http.StatusOK, Form{Values: map[string]string{"effect": tenancy.EffectAllow, "action": tenancy.ActionAll}})
}

func (c *Console) showACL(w http.ResponseWriter, r *http.Request, status int, f Form) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	rules, _, err := c.svc.ListACLRules(r.Context(), in.OrgID, in.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	creds, _, err := c.svc.ListCredentials(r.Context(), in.OrgID, in.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := ACLView{Inst: in, Rules: rules, Creds: map[string]string{}, List: creds, Form: f}
	for _, cr := range creds {
		v.Creds[cr.ID] = cr.Username
	}
	p := c.page(w, r, "ACL rules · "+in.Name, "instances")
	c.render(w, r, status, ACLPage(p, v))
}

func (c *Console) createACLRule(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	f := formOf(r, "effect", "action", "filter", "credential_id")
	_, err := c.svc.CreateACLRule(r.Context(), actor(r), o.ID, instID, tenancy.ACLRule{
		Effect: f.Get("effect"), Action: f.Get("action"), Filter: f.Get("filter"), CredentialID: f.Get("credential_id")})
	if err != nil {
		if !f.fieldErrors(err, nil) {
			c.fail(w, r, err)
			return
		}
		c.showACL(w, r, http.StatusUnprocessableEntity, f)
		return
	}
	setFlash(w, "Rule added.", c.secure)
	seeOther(w, r, c.instancePath(o.ID, instID, "/acl"))
}

func (c *Console) deleteACLRule(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	if err := c.svc.DeleteACLRule(r.Context(), actor(r), o.ID, instID, chi.URLParam(r, "rule")); err != nil {
		c.fail(w, r, err)
		return
	}
	setFlash(w, "Rule deleted.", c.secure)
	seeOther(w, r, c.instancePath(o.ID, instID, "/acl"))
}

func isDefaultRule(r tenancy.ACLRule) bool {
	return r.Effect == tenancy.EffectAllow && r.Action == tenancy.ActionAll && r.Filter == "#" && r.CredentialID == ""
}

func credUsername(v ACLView, id string) string {
	if id == "" {
		return "all credentials"
	}
	if u, ok := v.Creds[id]; ok {
		return u
	}
	return id
}
