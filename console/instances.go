package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/tenancy"
)

// Instance pages: every read and write goes through tenancy.Service (and
// billing.Meter for the charts), with the scope the API demands for the
// same operation: write for create/suspend/resume/protection/credentials/
// ACL/quotas, admin for delete.

func (c *Console) instancesPath(orgID string) string { return "/orgs/" + orgID + "/instances" }

func (c *Console) instancePath(orgID, instID, rest string) string {
	return "/orgs/" + orgID + "/instances/" + instID + rest
}

// loadInstance answers the {inst} of the URL in the current org; another
// org's instance (or none) writes the 404 page and returns false.
func (c *Console) loadInstance(w http.ResponseWriter, r *http.Request) (tenancy.Instance, bool) {
	in, err := c.svc.Instance(r.Context(), orgFrom(r.Context()).ID, chi.URLParam(r, "inst"))
	if err != nil {
		c.fail(w, r, err)
		return tenancy.Instance{}, false
	}
	return in, true
}

func (c *Console) instances(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Partial") != "" {
		// The list alone, for the page's live refresh.
		p := Page{Org: orgFrom(r.Context())} // no flash taken, no CSRF cookie set
		list, _, err := c.svc.ListInstances(r.Context(), p.Org.ID, tenancy.Page{Limit: 200})
		if err != nil {
			c.fail(w, r, err)
			return
		}
		c.render(w, r, http.StatusOK, InstancesTable(p, list))
		return
	}
	c.showInstances(w, r, http.StatusOK, Form{})
}

func (c *Console) showInstances(w http.ResponseWriter, r *http.Request, status int, f Form) {
	p := c.page(w, r, "Instances", "instances")
	list, _, err := c.svc.ListInstances(r.Context(), p.Org.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, status, InstancesPage(p, list, f))
}

func (c *Console) createInstance(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o := orgFrom(r.Context())
	f := formOf(r, "name")
	in, err := c.svc.CreateInstance(r.Context(), actor(r), o.ID, tenancy.NewInstance{Name: f.Get("name")})
	if err != nil {
		switch {
		case f.fieldErrors(err, nil):
		case errors.Is(err, tenancy.ErrNoNode):
			f.Errors["name"] = "No data-plane node is available to host a new instance right now. Try again in a minute."
			c.showInstances(w, r, http.StatusServiceUnavailable, f)
			return
		default:
			c.fail(w, r, err)
			return
		}
		c.showInstances(w, r, http.StatusUnprocessableEntity, f)
		return
	}
	setFlash(w, "Instance “"+in.Name+"” created.", c.secure)
	seeOther(w, r, c.instancePath(o.ID, in.ID, ""))
}

// InstanceView is an instance's detail page.
type InstanceView struct {
	Inst      tenancy.Instance
	Snippets  Snippets
	Dashboard *Dashboard
	LiveConns int // connected now, from the node; -1 when unknown
}

func (c *Console) instance(w http.ResponseWriter, r *http.Request) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	d, err := c.dashboard(r, in.OrgID, in.ID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p := c.page(w, r, in.Name, "instances")
	c.render(w, r, http.StatusOK, InstancePage(p, InstanceView{Inst: in, Snippets: snippetsFor(in, "<username>", "<password>"), Dashboard: d,
		LiveConns: c.liveCount(r.Context(), in)}))
}

func (c *Console) setInstanceStatus(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o := orgFrom(r.Context())
	st := r.PostFormValue("status")
	in, err := c.svc.UpdateInstance(r.Context(), actor(r), o.ID, chi.URLParam(r, "inst"), tenancy.InstancePatch{Status: &st}, nil)
	if err != nil {
		var ve *tenancy.ValidationError
		if errors.As(err, &ve) {
			c.errorPage(w, r, http.StatusUnprocessableEntity, "Choose running or suspended.")
			return
		}
		c.fail(w, r, err)
		return
	}
	if in.Status == tenancy.InstanceSuspended {
		setFlash(w, "Instance suspended: devices are disconnected and refused until you resume it.", c.secure)
	} else {
		setFlash(w, "Instance resumed.", c.secure)
	}
	seeOther(w, r, c.instancePath(o.ID, in.ID, ""))
}

func (c *Console) setDeletionProtection(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o := orgFrom(r.Context())
	on := r.PostFormValue("protection") == "on"
	in, err := c.svc.UpdateInstance(r.Context(), actor(r), o.ID, chi.URLParam(r, "inst"), tenancy.InstancePatch{DeletionProtection: &on}, nil)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if on {
		setFlash(w, "Deletion protection is on.", c.secure)
	} else {
		setFlash(w, "Deletion protection is off: the instance can be deleted.", c.secure)
	}
	seeOther(w, r, c.instancePath(o.ID, in.ID, ""))
}

func (c *Console) deleteInstance(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeAdmin); !ok {
		return
	}
	o := orgFrom(r.Context())
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	id := in.ID
	if in.DeletionProtection {
		c.errorPage(w, r, http.StatusConflict, "Deletion protection is on for this instance: turn it off first, then delete.")
		return
	}
	if strings.TrimSpace(r.PostFormValue("confirm_name")) != in.Name {
		setFlash(w, "Nothing was deleted: type the instance name “"+in.Name+"” exactly to confirm.", c.secure)
		seeOther(w, r, c.instancePath(o.ID, id, ""))
		return
	}
	if err := c.svc.DeleteInstance(r.Context(), actor(r), o.ID, id); err != nil {
		if errors.Is(err, tenancy.ErrDeletionProtected) {
			c.errorPage(w, r, http.StatusConflict, "Deletion protection is on for this instance: turn it off first, then delete.")
			return
		}
		c.fail(w, r, err)
		return
	}
	setFlash(w, "Instance deleted.", c.secure)
	seeOther(w, r, c.instancesPath(o.ID))
}
