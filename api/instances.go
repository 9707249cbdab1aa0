package api

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/tenancy"
)

// instanceJSON is an instance as the API shows it.
type instanceJSON struct {
	ID                 string         `json:"id"`
	Name               string         `json:"name"`
	Plan               string         `json:"plan"`
	Status             string         `json:"status"`
	NodeID             string         `json:"node_id"`
	Endpoints          endpointsJSON  `json:"endpoints"`
	Cell               cellJSON       `json:"cell"`
	UsernameFormat     string         `json:"username_format"`
	AllowAnonymous     bool           `json:"allow_anonymous"`
	DeletionProtection bool           `json:"deletion_protection"`
	Quotas             tenancy.Quotas `json:"quotas"`
	Limited            string         `json:"limited"`
	CreatedAt          time.Time      `json:"created_at"`
	UpdatedAt          time.Time      `json:"updated_at"`
	// Sync state: the revision of the instance's latest config change,
	// what its node has applied, and whether that covers it.
	ConfigRevision  int64 `json:"config_revision"`
	AppliedRevision int64 `json:"applied_revision"`
	InSync          bool  `json:"in_sync"`
}

// etagView leaves the sync state and the cell's health out of the ETag:
// they move as nodes apply changes, go down and come back, which is no edit
// of the instance (If-Match stays valid).
func (in instanceJSON) etagView() any {
	in.ConfigRevision, in.AppliedRevision, in.InSync = 0, 0, false
	in.Cell, in.Endpoints = cellJSON{}, endpointsJSON{}
	return in
}

type endpointsJSON struct {
	MQTT  *string `json:"mqtt"`
	MQTTS *string `json:"mqtts"`
	WS    *string `json:"ws"`
	WSS   *string `json:"wss"`
}

// cellJSON is the instance's cell: its health and every node's endpoints.
type cellJSON struct {
	Name   string         `json:"name"`
	Status string         `json:"status"`
	Nodes  []cellNodeJSON `json:"nodes"`
}

type cellNodeJSON struct {
	Name      string        `json:"name"`
	Status    string        `json:"status"`
	Endpoints endpointsJSON `json:"endpoints"`
}

func toEndpoints(m map[string]string) endpointsJSON {
	return endpointsJSON{MQTT: endpoint(m, "mqtt"), MQTTS: endpoint(m, "mqtts"), WS: endpoint(m, "ws"), WSS: endpoint(m, "wss")}
}

func toCell(c *tenancy.CellInfo) cellJSON {
	out := cellJSON{Status: tenancy.CellDown, Nodes: []cellNodeJSON{}}
	if c == nil {
		return out
	}
	out.Name, out.Status = c.Name, c.Status
	for _, n := range c.Nodes {
		st := tenancy.NodeDown
		if n.Up {
			st = tenancy.NodeUp
		}
		out.Nodes = append(out.Nodes, cellNodeJSON{Name: n.Name, Status: st, Endpoints: toEndpoints(n.Endpoints)})
	}
	return out
}

func endpoint(m map[string]string, k string) *string {
	if v, ok := m[k]; ok && v != "" {
		return &v
	}
	return nil
}

func toInstance(in tenancy.Instance) instanceJSON {
	return instanceJSON{ID: in.ID, Name: in.Name, Plan: in.Plan, Status: in.Status, NodeID: in.NodeID,
		Endpoints: toEndpoints(in.Endpoints), Cell: toCell(in.Cell),
		UsernameFormat: "<username>@" + in.ID, AllowAnonymous: in.AllowAnonymous, DeletionProtection: in.DeletionProtection,
		Quotas: in.Quotas, Limited: in.Limited, CreatedAt: in.CreatedAt.UTC(), UpdatedAt: in.UpdatedAt.UTC(),
		ConfigRevision: in.ConfigRevision, AppliedRevision: in.NodeAppliedRevision, InSync: in.InSync()}
}

func (a *API) createInstance(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name               string `json:"name"`
		AllowAnonymous     bool   `json:"allow_anonymous"`
		DeletionProtection *bool  `json:"deletion_protection"` // nil: the plan's default
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	inst, err := a.svc.CreateInstance(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, tenancy.NewInstance{
		Name: in.Name, AllowAnonymous: in.AllowAnonymous, DeletionProtection: in.DeletionProtection})
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	org, id := PrincipalFrom(r.Context()).OrgID, inst.ID
	rerenderAfterWait(r, func(ctx context.Context) (tenancy.Instance, error) { return a.svc.Instance(ctx, org, id) }, toInstance)
	w.Header().Set("Location", r.URL.Path+"/"+inst.ID)
	WriteJSONWithETag(w, http.StatusCreated, toInstance(inst))
}

func (a *API) listInstances(w http.ResponseWriter, r *http.Request) {
	listPage(a, w, r, true, a.svc.ListInstances, toInstance)
}

func (a *API) getInstance(w http.ResponseWriter, r *http.Request) {
	inst, err := a.svc.Instance(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"))
	writeRead(a, w, r, inst, err, toInstance)
}

func (a *API) patchInstance(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name               *string `json:"name"`
		AllowAnonymous     *bool   `json:"allow_anonymous"`
		DeletionProtection *bool   `json:"deletion_protection"`
		Status             *string `json:"status"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	ctx, org, id := r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id")
	cur, err := a.svc.Instance(ctx, org, id)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if err := CheckIfMatch(r, toInstance(cur)); err != nil {
		a.WriteError(w, r, err)
		return
	}
	// With If-Match, the patch applies only to the version checked; without
	// it, to the current one (a status change made meanwhile, such as the
	// node reporting the instance running, is not a conflict).
	var expect *time.Time
	if r.Header.Get("If-Match") != "" {
		expect = &cur.UpdatedAt
	}
	inst, err := a.svc.UpdateInstance(ctx, ActorOf(r), org, id, tenancy.InstancePatch{Name: in.Name, AllowAnonymous: in.AllowAnonymous,
		DeletionProtection: in.DeletionProtection, Status: in.Status}, expect)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, toInstance(inst))
}

func (a *API) deleteInstance(w http.ResponseWriter, r *http.Request) {
	a.writeDone(w, r, a.svc.DeleteInstance(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id")))
}

// credentialJSON is a device credential; Password only in the answers to
// create and rotate.
type credentialJSON struct {
	ID              string     `json:"id"`
	InstanceID      string     `json:"instance_id"`
	Username        string     `json:"username"`
	MQTTUsername    string     `json:"mqtt_username"`
	ClientIDPattern string     `json:"client_id_pattern"`
	Enabled         bool       `json:"enabled"`
	ExpiresAt       *time.Time `json:"expires_at"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	Password        string     `json:"password,omitempty"`
	PasswordSource  string     `json:"password_source"`
}

func toCredential(c tenancy.Credential) credentialJSON {
	var exp *time.Time
	if c.ExpiresAt != nil {
		t := c.ExpiresAt.UTC()
		exp = &t
	}
	src := "generated"
	if c.PasswordSupplied {
		src = "supplied"
	}
	return credentialJSON{ID: c.ID, InstanceID: c.InstanceID, Username: c.Username, MQTTUsername: c.Username + "@" + c.InstanceID,
		ClientIDPattern: c.ClientIDPattern, Enabled: c.Enabled, ExpiresAt: exp, CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC(),
		PasswordSource: src}
}

type newCredentialJSON struct {
	Username        string     `json:"username"`
	ClientIDPattern string     `json:"client_id_pattern"`
	ExpiresAt       *time.Time `json:"expires_at"`
	Password        string     `json:"password"`
}

func (a *API) createCredentials(w http.ResponseWriter, r *http.Request) {
	var in struct {
		newCredentialJSON
		Credentials []newCredentialJSON `json:"credentials"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	bulk := in.Credentials != nil
	if bulk && (in.Username != "" || in.ClientIDPattern != "" || in.ExpiresAt != nil || in.Password != "") {
		a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "credentials",
			Message: "send either one credential (username, …) or a credentials list, not both"}}})
		return
	}
	list := in.Credentials
	if !bulk {
		list = []newCredentialJSON{in.newCredentialJSON}
	}
	news := make([]tenancy.NewCredential, len(list))
	for i, c := range list {
		news[i] = tenancy.NewCredential{Username: c.Username, ClientIDPattern: c.ClientIDPattern, ExpiresAt: c.ExpiresAt, Password: c.Password}
	}
	creds, pws, err := a.svc.CreateCredentials(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), news)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out := make([]credentialJSON, len(creds))
	for i, c := range creds {
		out[i] = toCredential(c)
		out[i].Password = pws[i]
	}
	w.Header().Set("Cache-Control", "no-store")
	if bulk {
		WriteJSON(w, http.StatusCreated, map[string]any{"data": out})
		return
	}
	w.Header().Set("Location", r.URL.Path+"/"+out[0].ID)
	WriteJSON(w, http.StatusCreated, out[0])
}

func (a *API) listCredentials(w http.ResponseWriter, r *http.Request) {
	listPage(a, w, r, true, inInstance(r, a.svc.ListCredentials), toCredential)
}

func (a *API) getCredential(w http.ResponseWriter, r *http.Request) {
	c, err := a.svc.Credential(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "credential_id"))
	writeRead(a, w, r, c, err, toCredential)
}

func (a *API) patchCredential(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Enabled *bool `json:"enabled"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	ctx, org, inst, id := r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "credential_id")
	cur, err := a.svc.Credential(ctx, org, inst, id)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if err := CheckIfMatch(r, toCredential(cur)); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if in.Enabled == nil {
		WriteJSONWithETag(w, http.StatusOK, toCredential(cur))
		return
	}
	c, err := a.svc.SetCredentialEnabled(ctx, ActorOf(r), org, inst, id, *in.Enabled)
	writeRead(a, w, r, c, err, toCredential)
}

func (a *API) rotateCredential(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Password string `json:"password"`
	}
	if r.ContentLength != 0 {
		if err := DecodeJSON(w, r, &in); err != nil {
			a.WriteError(w, r, err)
			return
		}
	}
	ctx, org, inst, id := r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "credential_id")
	var c tenancy.Credential
	var pw string
	var err error
	if in.Password != "" {
		c, err = a.svc.SetCredentialPassword(ctx, ActorOf(r), org, inst, id, in.Password)
	} else {
		c, pw, err = a.svc.RotateCredential(ctx, ActorOf(r), org, inst, id)
	}
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out := toCredential(c)
	out.Password = pw
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusOK, out)
}

func (a *API) deleteCredential(w http.ResponseWriter, r *http.Request) {
	a.writeDone(w, r, a.svc.DeleteCredential(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "credential_id")))
}

type aclRuleJSON struct {
	ID           string  `json:"id"`
	Effect       string  `json:"effect"`
	Action       string  `json:"action"`
	Filter       string  `json:"filter"`
	CredentialID *string `json:"credential_id"`
	Position     int     `json:"position"`
}

func toACLRule(r tenancy.ACLRule) aclRuleJSON {
	out := aclRuleJSON{ID: r.ID, Effect: r.Effect, Action: r.Action, Filter: r.Filter, Position: r.Position}
	if r.CredentialID != "" {
		c := r.CredentialID
		out.CredentialID = &c
	}
	return out
}

func (a *API) createACLRule(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Effect       string  `json:"effect"`
		Action       string  `json:"action"`
		Filter       string  `json:"filter"`
		CredentialID *string `json:"credential_id"`
		Position     *int    `json:"position"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	rule := tenancy.ACLRule{Effect: in.Effect, Action: in.Action, Filter: in.Filter}
	if in.CredentialID != nil {
		rule.CredentialID = *in.CredentialID
	}
	out, err := a.svc.CreateACLRuleAt(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), rule, in.Position)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", r.URL.Path+"/"+out.ID)
	WriteJSON(w, http.StatusCreated, toACLRule(out))
}

func (a *API) listACLRules(w http.ResponseWriter, r *http.Request) {
	listPage(a, w, r, false, inInstance(r, a.svc.ListACLRules), toACLRule)
}

func (a *API) deleteACLRule(w http.ResponseWriter, r *http.Request) {
	a.writeDone(w, r, a.svc.DeleteACLRule(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "rule_id")))
}

func (a *API) getQuotas(w http.ResponseWriter, r *http.Request) {
	q, _, err := a.svc.InstanceQuotas(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, q)
}

func (a *API) putQuotas(w http.ResponseWriter, r *http.Request) {
	var in tenancy.Quotas
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	ctx, org, id := r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id")
	cur, _, err := a.svc.InstanceQuotas(ctx, org, id)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if err := CheckIfMatch(r, cur); err != nil {
		a.WriteError(w, r, err)
		return
	}
	q, err := a.svc.SetInstanceQuotas(ctx, ActorOf(r), org, id, in)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, q)
}

type deviceTokenJSON struct {
	JTI        string                  `json:"jti"`
	InstanceID string                  `json:"instance_id"`
	ClientID   *string                 `json:"client_id"`
	Resources  []tenancy.TokenResource `json:"resources"`
	IssuedAt   time.Time               `json:"issued_at"`
	ExpiresAt  time.Time               `json:"expires_at"`
	RevokedAt  *time.Time              `json:"revoked_at"`
	Username   string                  `json:"mqtt_username"`
	Token      string                  `json:"token,omitempty"`
}

func toDeviceToken(t tenancy.DeviceToken) deviceTokenJSON {
	out := deviceTokenJSON{JTI: t.JTI, InstanceID: t.InstanceID, Resources: t.Resources, IssuedAt: t.IssuedAt.UTC(),
		ExpiresAt: t.ExpiresAt.UTC(), RevokedAt: t.RevokedAt, Username: tenancy.DeviceTokenUsername + "@" + t.InstanceID}
	if t.ClientID != "" {
		c := t.ClientID
		out.ClientID = &c
	}
	if out.Resources == nil {
		out.Resources = []tenancy.TokenResource{}
	}
	return out
}

func (a *API) issueDeviceToken(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ClientID   string                  `json:"client_id"`
		Resources  []tenancy.TokenResource `json:"resources"`
		TTLSeconds int64                   `json:"ttl_seconds"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	t, tok, err := a.svc.IssueDeviceToken(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"),
		tenancy.NewDeviceToken{ClientID: in.ClientID, Resources: in.Resources, TTL: time.Duration(in.TTLSeconds) * time.Second})
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out := toDeviceToken(t)
	out.Token = tok
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusCreated, out)
}

func (a *API) listDeviceTokens(w http.ResponseWriter, r *http.Request) {
	listPage(a, w, r, false, inInstance(r, a.svc.ListDeviceTokens), toDeviceToken)
}

func (a *API) revokeDeviceToken(w http.ResponseWriter, r *http.Request) {
	var in struct {
		JTI string `json:"jti"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if in.JTI == "" {
		a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "jti", Message: "is required"}}})
		return
	}
	t, err := a.svc.RevokeDeviceToken(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), in.JTI)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, toDeviceToken(t))
}

// getInstanceMetrics answers the instance's usage time series: from/to as
// RFC 3339 (default: the last hour), step as a duration ("10s", "1m", "1h";
// default 1m). The buckets come from the data plane's usage reports.
func (a *API) getInstanceMetrics(w http.ResponseWriter, r *http.Request) {
	ctx, org, id := r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id")
	if _, err := a.svc.Instance(ctx, org, id); err != nil {
		a.WriteError(w, r, err)
		return
	}
	now := time.Now().UTC()
	q := r.URL.Query()
	from, to, step := now.Add(-time.Hour), now, time.Minute
	var fields []tenancy.FieldError
	parseTime := func(name string, dst *time.Time) {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				fields = append(fields, tenancy.FieldError{Field: name, Message: "must be an RFC 3339 time"})
				return
			}
			*dst = t
		}
	}
	parseTime("from", &from)
	parseTime("to", &to)
	if v := q.Get("step"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fields = append(fields, tenancy.FieldError{Field: "step", Message: `must be a duration such as "10s", "1m" or "1h"`})
		} else {
			step = d
		}
	}
	if len(fields) > 0 {
		a.WriteError(w, r, &tenancy.ValidationError{Fields: fields})
		return
	}
	if a.meter == nil {
		a.WriteError(w, r, tenancy.ErrNotFound)
		return
	}
	pts, err := a.meter.Series(ctx, org, id, from, to, step, now)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	ts, err := a.latestTopicStorage(ctx, org, id)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"instance_id": id, "from": from.UTC(), "to": to.UTC(), "step_seconds": int64(step / time.Second), "points": pts,
		"topics": ts})
}
