package console

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/tenancy"
)

// Each handler checks the caller's scope with allow (the API's rule for the
// same operation) before calling the service; read pages are covered by
// orgScope.

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	p := c.page(w, r, orgFrom(r.Context()).Name, "overview")
	ctx := r.Context()
	members, _, err := c.svc.ListMembers(ctx, p.Org.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	keys, _, err := c.svc.ListAPIKeys(ctx, p.Org.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	insts, _, err := c.svc.ListInstances(ctx, p.Org.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ov := Overview{Members: len(members), APIKeys: len(keys), Instances: len(insts)}
	for _, in := range insts {
		if in.Status == tenancy.InstanceRunning {
			ov.Running++
		}
	}
	if c.bill != nil {
		sub, err := c.bill.Subscription(ctx, p.Org.ID)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		ov.Plan = sub.PlanID
		if plan, err := c.bill.Plans().Get(ctx, sub.PlanID); err == nil {
			ov.Plan = plan.Name
		}
	}
	if ov.Checklist, err = c.checklist(ctx, p.Org.ID, insts); err != nil {
		c.fail(w, r, err)
		return
	}
	if ov.Dashboard, err = c.orgDashboard(r, p.Org.ID, insts); err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, OverviewPage(p, ov))
}

func (c *Console) settings(w http.ResponseWriter, r *http.Request) {
	p := c.page(w, r, "Settings", "settings")
	c.render(w, r, http.StatusOK, SettingsPage(p, Form{Values: map[string]string{"name": p.Org.Name}}))
}

func (c *Console) renameOrg(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o := orgFrom(r.Context())
	f := formOf(r, "name", "expect")
	expect := f.Get("expect")
	_, err := c.svc.RenameOrg(r.Context(), actor(r), o.ID, f.Get("name"), &expect)
	if err != nil {
		switch {
		case f.fieldErrors(err, nil):
		case errors.Is(err, tenancy.ErrStale):
			f.Errors["name"] = "Someone renamed the organisation meanwhile (to \"" + o.Name + "\"). Submit again to replace it."
			f.Values["expect"] = o.Name
		default:
			c.fail(w, r, err)
			return
		}
		c.render(w, r, http.StatusUnprocessableEntity, SettingsPage(c.page(w, r, "Settings", "settings"), f))
		return
	}
	setFlash(w, "Organisation renamed.", c.secure)
	seeOther(w, r, "/orgs/"+o.ID+"/settings")
}

func (c *Console) members(w http.ResponseWriter, r *http.Request) {
	c.showMembers(w, r, http.StatusOK, Form{})
}

func (c *Console) showMembers(w http.ResponseWriter, r *http.Request, status int, f Form) {
	p := c.page(w, r, "Members", "members")
	ms, _, err := c.svc.ListMembers(r.Context(), p.Org.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	invs, _, err := c.svc.ListInvitations(r.Context(), p.Org.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var keysBy map[string]int
	if p.CanAdmin() { // only admins see Remove, and its warning
		keys, _, err := c.svc.ListAPIKeys(r.Context(), p.Org.ID, tenancy.Page{Limit: 200})
		if err != nil {
			c.fail(w, r, err)
			return
		}
		keysBy = keysByCreator(keys)
	}
	c.render(w, r, status, MembersPage(p, ms, invs, f, keysBy))
}

func (c *Console) changeRole(w http.ResponseWriter, r *http.Request) {
	role, ok := c.allow(w, r, tenancy.ScopeAdmin)
	if !ok {
		return
	}
	o, uid := orgFrom(r.Context()), chi.URLParam(r, "user")
	m, err := c.svc.ChangeRole(r.Context(), actor(r), role, o.ID, uid, tenancy.Role(r.PostFormValue("role")), "")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	setFlash(w, m.Email+" is now "+string(m.Role)+".", c.secure)
	seeOther(w, r, "/orgs/"+o.ID+"/members")
}

func (c *Console) removeMember(w http.ResponseWriter, r *http.Request) {
	role, ok := c.allow(w, r, tenancy.ScopeAdmin)
	if !ok {
		return
	}
	o, uid := orgFrom(r.Context()), chi.URLParam(r, "user")
	if err := c.svc.RemoveMember(r.Context(), actor(r), role, o.ID, uid); err != nil {
		c.fail(w, r, err)
		return
	}
	setFlash(w, "Member removed.", c.secure)
	if uid == userFrom(r.Context()).ID {
		seeOther(w, r, "/")
		return
	}
	seeOther(w, r, "/orgs/"+o.ID+"/members")
}

func (c *Console) invite(w http.ResponseWriter, r *http.Request) {
	role, ok := c.allow(w, r, tenancy.ScopeAdmin)
	if !ok {
		return
	}
	o := orgFrom(r.Context())
	f := formOf(r, "email", "role")
	inv, err := c.svc.Invite(r.Context(), actor(r), role, o.ID, f.Get("email"), tenancy.Role(f.Get("role")))
	if err != nil {
		switch {
		case f.fieldErrors(err, nil):
		case errors.Is(err, tenancy.ErrConflict):
			f.Errors["email"] = "is already a member"
		case errors.Is(err, tenancy.ErrForbidden):
			f.Errors["role"] = "cannot be above your own role"
		default:
			c.fail(w, r, err)
			return
		}
		c.showMembers(w, r, http.StatusUnprocessableEntity, f)
		return
	}
	setFlash(w, "Invitation sent to "+inv.Email+" (valid 7 days).", c.secure)
	seeOther(w, r, "/orgs/"+o.ID+"/members")
}

func (c *Console) apiKeys(w http.ResponseWriter, r *http.Request) {
	c.showAPIKeys(w, r, http.StatusOK, Form{Values: map[string]string{"scope": "read"}}, nil)
}

// NewSecret is a secret just created, shown once.
type NewSecret struct {
	Name   string
	Secret string
}

func (c *Console) showAPIKeys(w http.ResponseWriter, r *http.Request, status int, f Form, created *NewSecret) {
	p := c.page(w, r, "API keys", "api-keys")
	keys, _, err := c.svc.ListAPIKeys(r.Context(), p.Org.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, status, APIKeysPage(p, keys, f, created))
}

func (c *Console) createAPIKey(w http.ResponseWriter, r *http.Request) {
	role, ok := c.allow(w, r, tenancy.ScopeAdmin)
	if !ok {
		return
	}
	o := orgFrom(r.Context())
	f := formOf(r, "name", "scope", "expires")
	in := tenancy.NewAPIKey{Name: f.Get("name"), Scopes: []tenancy.Scope{tenancy.Scope(f.Get("scope"))}, MaxScope: role.MaxScope()}
	if e := f.Get("expires"); e != "" {
		t, err := time.Parse("2006-01-02", e)
		if err != nil {
			f.Errors["expires"] = "must be a date (YYYY-MM-DD)"
			c.showAPIKeys(w, r, http.StatusUnprocessableEntity, f, nil)
			return
		}
		in.ExpiresAt = &t
	}
	k, secret, err := c.svc.CreateAPIKey(r.Context(), actor(r), o.ID, in)
	if err != nil {
		switch {
		case f.fieldErrors(err, map[string]string{"scopes": "scope", "expires_at": "expires"}):
		case errors.Is(err, tenancy.ErrForbidden):
			f.Errors["scope"] = "cannot be above your own role's scope"
		default:
			c.fail(w, r, err)
			return
		}
		c.showAPIKeys(w, r, http.StatusUnprocessableEntity, f, nil)
		return
	}
	// The secret is in this response only (never in a cookie or a redirect).
	c.showAPIKeys(w, r, http.StatusCreated, Form{Values: map[string]string{"scope": "read"}}, &NewSecret{Name: k.Name, Secret: secret})
}

func (c *Console) revokeAPIKey(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeAdmin); !ok {
		return
	}
	o := orgFrom(r.Context())
	if err := c.svc.RevokeAPIKey(r.Context(), actor(r), o.ID, chi.URLParam(r, "key")); err != nil {
		c.fail(w, r, err)
		return
	}
	setFlash(w, "API key revoked.", c.secure)
	seeOther(w, r, "/orgs/"+o.ID+"/api-keys")
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request) {
	p := c.page(w, r, "Audit log", "audit")
	q := r.URL.Query()
	evs, next, err := c.svc.ListAuditEvents(r.Context(), p.Org.ID, tenancy.AuditFilter{Action: q.Get("action")},
		tenancy.Page{After: q.Get("after"), Limit: 25})
	if err != nil {
		var ve *tenancy.ValidationError
		if errors.As(err, &ve) {
			c.errorPage(w, r, http.StatusBadRequest, "This page of the audit log does not exist.")
			return
		}
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, AuditPage(p, evs, q.Get("action"), next, q.Get("after") != ""))
}

// BillingView is the billing page's data.
type BillingView struct {
	Sub      billing.Subscription
	Plan     billing.Plan
	Pending  string
	Plans    []billing.Plan
	Draft    billing.Draft
	Invoices []billing.Invoice
	Form     Form // the spend-limit form
}

func (c *Console) billingPage(w http.ResponseWriter, r *http.Request) {
	c.showBilling(w, r, http.StatusOK, Form{})
}

func (c *Console) showBilling(w http.ResponseWriter, r *http.Request, status int, f Form) {
	if c.bill == nil {
		c.errorPage(w, r, http.StatusNotFound, "Billing is not enabled on this server.")
		return
	}
	p := c.page(w, r, "Usage & billing", "billing")
	ctx := r.Context()
	v := BillingView{Form: f}
	var err error
	if v.Sub, err = c.bill.Subscription(ctx, p.Org.ID); err != nil {
		c.fail(w, r, err)
		return
	}
	if v.Plans, err = c.bill.Plans().List(ctx); err != nil {
		c.fail(w, r, err)
		return
	}
	for _, pl := range v.Plans {
		if pl.ID == v.Sub.PlanID {
			v.Plan = pl
		}
		if pl.ID == v.Sub.PendingPlanID {
			v.Pending = pl.Name
		}
	}
	if v.Draft, err = c.bill.Draft(ctx, p.Org.ID, billing.PeriodOf(c.now())); err != nil {
		c.fail(w, r, err)
		return
	}
	if v.Invoices, err = c.bill.Invoices(ctx, p.Org.ID); err != nil {
		c.fail(w, r, err)
		return
	}
	if v.Form.Values == nil {
		v.Form = Form{Values: map[string]string{"action": v.Sub.LimitAction}}
		if v.Sub.SpendLimitCents != nil {
			v.Form.Values["limit"] = strconv.FormatFloat(float64(*v.Sub.SpendLimitCents)/100, 'f', 2, 64)
		}
	}
	c.render(w, r, status, BillingPage(p, v))
}

// changePlan needs the admin scope: it changes what the org pays.
func (c *Console) changePlan(w http.ResponseWriter, r *http.Request) {
	if c.bill == nil {
		c.errorPage(w, r, http.StatusNotFound, "Billing is not enabled on this server.")
		return
	}
	if _, ok := c.allow(w, r, tenancy.ScopeAdmin); !ok {
		return
	}
	o := orgFrom(r.Context())
	planID := r.PostFormValue("plan")
	res, err := c.bill.ChangePlan(r.Context(), o.ID, planID, c.now())
	if errors.Is(err, billing.ErrInvalid) {
		c.errorPage(w, r, http.StatusUnprocessableEntity, "Choose one of the listed plans.")
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if err := c.svc.RecordAudit(r.Context(), actor(r), o.ID, "subscription.update", planID); err != nil {
		c.fail(w, r, err)
		return
	}
	if res.Applied {
		setFlash(w, "Plan changed.", c.secure)
	} else {
		setFlash(w, "Plan change scheduled for "+res.EffectiveAt.Format("2006-01-02")+" (this period's usage exceeds the new plan).", c.secure)
	}
	seeOther(w, r, "/orgs/"+o.ID+"/billing")
}

// setSpendLimit needs the admin scope, like the API's PUT subscription.
func (c *Console) setSpendLimit(w http.ResponseWriter, r *http.Request) {
	if c.bill == nil {
		c.errorPage(w, r, http.StatusNotFound, "Billing is not enabled on this server.")
		return
	}
	if _, ok := c.allow(w, r, tenancy.ScopeAdmin); !ok {
		return
	}
	o := orgFrom(r.Context())
	f := formOf(r, "limit", "action")
	var cents *int64
	if l := f.Get("limit"); l != "" {
		v, err := strconv.ParseFloat(l, 64)
		if err != nil || v < 0 || v > 1e12 {
			f.Errors["limit"] = "must be an amount such as 50 or 49.90, or empty for no limit"
			c.showBilling(w, r, http.StatusUnprocessableEntity, f)
			return
		}
		n := int64(math.Round(v * 100))
		cents = &n
	}
	if _, err := c.bill.SetSpendLimit(r.Context(), o.ID, cents, f.Get("action")); err != nil {
		if !errors.Is(err, billing.ErrInvalid) {
			c.fail(w, r, err)
			return
		}
		f.Errors["action"] = "choose throttle or suspend"
		c.showBilling(w, r, http.StatusUnprocessableEntity, f)
		return
	}
	if err := c.svc.RecordAudit(r.Context(), actor(r), o.ID, "subscription.update", "spend_limit"); err != nil {
		c.fail(w, r, err)
		return
	}
	setFlash(w, "Spend limit saved.", c.secure)
	seeOther(w, r, "/orgs/"+o.ID+"/billing")
}

func (c *Console) invoice(w http.ResponseWriter, r *http.Request) {
	if c.bill == nil {
		c.errorPage(w, r, http.StatusNotFound, "Billing is not enabled on this server.")
		return
	}
	p := c.page(w, r, "Invoice", "billing")
	inv, err := c.bill.Invoice(r.Context(), p.Org.ID, chi.URLParam(r, "invoice"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p.Title = "Invoice " + inv.Period
	c.render(w, r, http.StatusOK, InvoicePage(p, inv))
}

// Overview is the org overview's summary.
type Overview struct {
	Members   int
	APIKeys   int
	Plan      string
	Instances int // listed (up to 200)
	Running   int
	// Dashboard adds up the org's instances' metrics (nil without any).
	Dashboard *Dashboard
	// Checklist is the first-run guide.
	Checklist Checklist
}
