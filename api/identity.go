package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/internal/problem"
	"github.com/aeriemq/aerie/tenancy"
)

// Representations (JSON shapes of openapi.yaml's components).

type userJSON struct {
	ID            string    `json:"id"`
	Email         string    `json:"email"`
	EmailVerified bool      `json:"email_verified"`
	CreatedAt     time.Time `json:"created_at"`
}

func toUser(u tenancy.User) userJSON {
	return userJSON{ID: u.ID, Email: u.Email, EmailVerified: u.EmailVerified, CreatedAt: u.CreatedAt.UTC()}
}

type orgJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Role      string    `json:"role,omitempty"`
}

func toOrg(o tenancy.Org) orgJSON {
	return orgJSON{ID: o.ID, Name: o.Name, CreatedAt: o.CreatedAt.UTC(), Role: string(o.Role)}
}

type sessionJSON struct {
	User         userJSON `json:"user"`
	Org          *orgJSON `json:"org,omitempty"`
	AccessToken  string   `json:"access_token"`
	RefreshToken string   `json:"refresh_token"`
	TokenType    string   `json:"token_type"`
	ExpiresIn    int      `json:"expires_in"`
}

func toSession(s tenancy.Session) sessionJSON {
	return sessionJSON{User: toUser(s.User), AccessToken: s.AccessToken, RefreshToken: s.RefreshToken,
		TokenType: "Bearer", ExpiresIn: int(s.ExpiresIn / time.Second)}
}

func (a *API) signup(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Email    string `json:"email"`
		Password string `json:"password"`
		OrgName  string `json:"org_name"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if ok, wait := a.signups.Allow(ClientAddr(r), a.now()); !ok {
		a.WriteError(w, r, &problem.RateLimitedError{RetryAfter: wait})
		return
	}
	u, o, err := a.svc.Signup(r.Context(), tenancy.SignupInput{Email: in.Email, Password: in.Password, OrgName: in.OrgName}, ActorOf(r))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	s, err := a.svc.StartSession(r.Context(), u.ID)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out := toSession(s)
	org := toOrg(o)
	out.Org = &org
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusCreated, out)
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	now := a.now()
	if ok, wait := a.loginAddr.Allow(ClientAddr(r), now); !ok {
		a.WriteError(w, r, &problem.RateLimitedError{RetryAfter: wait})
		return
	}
	if ok, wait := a.loginMail.Allow(strings.ToLower(strings.TrimSpace(in.Email)), now); !ok {
		a.WriteError(w, r, &problem.RateLimitedError{RetryAfter: wait})
		return
	}
	s, err := a.svc.Login(r.Context(), in.Email, in.Password)
	if err != nil {
		if errors.Is(err, tenancy.ErrUnauthenticated) {
			err = fmt.Errorf("%w: email or password is wrong", tenancy.ErrUnauthenticated)
		}
		a.WriteError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusOK, toSession(s))
}

type refreshBody struct {
	RefreshToken string `json:"refresh_token"`
}

func (a *API) refresh(w http.ResponseWriter, r *http.Request) {
	var in refreshBody
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	s, err := a.svc.Refresh(r.Context(), in.RefreshToken)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusOK, toSession(s))
}

// maxTokenBytes bounds a client-sent token; longer is never one of ours.
const maxTokenBytes = 1024

func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	var in refreshBody
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if len(in.RefreshToken) > maxTokenBytes {
		a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "refresh_token", Message: "is not a refresh token"}}})
		return
	}
	a.writeDone(w, r, a.svc.Logout(r.Context(), in.RefreshToken))
}

func (a *API) verifyEmail(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Token string `json:"token"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	a.writeDone(w, r, a.svc.VerifyEmail(r.Context(), in.Token))
}

func (a *API) requestPasswordReset(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Email string `json:"email"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if ok, wait := a.resets.Allow(ClientAddr(r), a.now()); !ok {
		a.WriteError(w, r, &problem.RateLimitedError{RetryAfter: wait})
		return
	}
	if ok, wait := a.loginMail.Allow("reset:"+strings.ToLower(strings.TrimSpace(in.Email)), a.now()); !ok {
		a.WriteError(w, r, &problem.RateLimitedError{RetryAfter: wait})
		return
	}
	if err := a.svc.RequestPasswordReset(r.Context(), in.Email); err != nil {
		a.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (a *API) confirmPasswordReset(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Token    string `json:"token"`
		Password string `json:"password"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	a.writeDone(w, r, a.svc.ResetPassword(r.Context(), in.Token, in.Password))
}

func (a *API) me(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	u, err := a.svc.User(r.Context(), p.UserID)
	writeRead(a, w, r, u, err, toUser)
}

func (a *API) listOrgs(w http.ResponseWriter, r *http.Request) {
	page, err := ParsePage(r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	p := PrincipalFrom(r.Context())
	var orgs []tenancy.Org
	var next string
	if p.IsAPIKey() {
		// A key sees only its own org.
		if page.After == "" {
			o, err := a.svc.Org(r.Context(), p.KeyOrgID)
			if err != nil {
				a.WriteError(w, r, err)
				return
			}
			o.Role = p.KeyRole
			orgs = []tenancy.Org{o}
		}
	} else if orgs, next, err = a.svc.ListOrgs(r.Context(), p.UserID, page); err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, NewList(orgs, next, toOrg))
}

func (a *API) currentOrg(r *http.Request) (orgJSON, error) {
	p := PrincipalFrom(r.Context())
	o, err := a.svc.Org(r.Context(), p.OrgID)
	if err != nil {
		return orgJSON{}, err
	}
	o.Role = p.Role
	return toOrg(o), nil
}

func (a *API) getOrg(w http.ResponseWriter, r *http.Request) {
	o, err := a.currentOrg(r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, o)
}

func (a *API) patchOrg(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name *string `json:"name"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	cur, err := a.currentOrg(r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if err := CheckIfMatch(r, cur); err != nil {
		a.WriteError(w, r, err)
		return
	}
	p := PrincipalFrom(r.Context())
	if in.Name != nil {
		// With If-Match, the rename applies only to the version checked.
		var expect *string
		if r.Header.Get("If-Match") != "" {
			expect = &cur.Name
		}
		o, err := a.svc.RenameOrg(r.Context(), ActorOf(r), p.OrgID, *in.Name, expect)
		if err != nil {
			a.WriteError(w, r, err)
			return
		}
		o.Role = p.Role
		cur = toOrg(o)
	}
	WriteJSONWithETag(w, http.StatusOK, cur)
}

type memberJSON struct {
	UserID    string    `json:"user_id"`
	Email     string    `json:"email"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

func toMember(m tenancy.Member) memberJSON {
	return memberJSON{UserID: m.UserID, Email: m.Email, Role: string(m.Role), CreatedAt: m.CreatedAt.UTC()}
}

func (a *API) listMembers(w http.ResponseWriter, r *http.Request) {
	listPage(a, w, r, false, a.svc.ListMembers, toMember)
}

func (a *API) getMember(w http.ResponseWriter, r *http.Request) {
	m, err := a.svc.Member(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "user_id"))
	writeRead(a, w, r, m, err, toMember)
}

func (a *API) patchMember(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Role string `json:"role"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	p := PrincipalFrom(r.Context())
	uid := chi.URLParam(r, "user_id")
	cur, err := a.svc.Member(r.Context(), p.OrgID, uid)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if err := CheckIfMatch(r, toMember(cur)); err != nil {
		a.WriteError(w, r, err)
		return
	}
	var expect tenancy.Role
	if r.Header.Get("If-Match") != "" {
		expect = cur.Role
	}
	m, err := a.svc.ChangeRole(r.Context(), ActorOf(r), p.Role, p.OrgID, uid, tenancy.Role(in.Role), expect)
	writeRead(a, w, r, m, err, toMember)
}

func (a *API) deleteMember(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	a.writeDone(w, r, a.svc.RemoveMember(r.Context(), ActorOf(r), p.Role, p.OrgID, chi.URLParam(r, "user_id")))
}

type invitationJSON struct {
	ID        string    `json:"id"`
	OrgID     string    `json:"org_id"`
	Email     string    `json:"email"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (a *API) invite(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Email string `json:"email"`
		Role  string `json:"role"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	p := PrincipalFrom(r.Context())
	if ok, wait := a.invites.Allow(p.OrgID, a.now()); !ok {
		a.WriteError(w, r, &problem.RateLimitedError{RetryAfter: wait})
		return
	}
	inv, err := a.svc.Invite(r.Context(), ActorOf(r), p.Role, p.OrgID, in.Email, tenancy.Role(in.Role))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusCreated, invitationJSON{ID: inv.ID, OrgID: inv.OrgID, Email: inv.Email, Role: string(inv.Role),
		CreatedAt: inv.CreatedAt.UTC(), ExpiresAt: inv.ExpiresAt.UTC()})
}

func (a *API) acceptInvitation(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Token string `json:"token"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	o, err := a.svc.AcceptInvitation(r.Context(), ActorOf(r), in.Token)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, toOrg(o))
}

type apiKeyJSON struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	Secret     string     `json:"secret,omitempty"`
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func toAPIKey(k tenancy.APIKey) apiKeyJSON {
	sc := make([]string, len(k.Scopes))
	for i, s := range k.Scopes {
		sc[i] = string(s)
	}
	return apiKeyJSON{ID: k.ID, Name: k.Name, Prefix: k.Prefix, Scopes: sc, CreatedAt: k.CreatedAt.UTC(),
		LastUsedAt: utcPtr(k.LastUsedAt), ExpiresAt: utcPtr(k.ExpiresAt)}
}

func (a *API) createAPIKey(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name      string     `json:"name"`
		Scopes    []string   `json:"scopes"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	p := PrincipalFrom(r.Context())
	scopes := make([]tenancy.Scope, len(in.Scopes))
	for i, s := range in.Scopes {
		scopes[i] = tenancy.Scope(s)
	}
	k, secret, err := a.svc.CreateAPIKey(r.Context(), ActorOf(r), p.OrgID, tenancy.NewAPIKey{
		Name: in.Name, Scopes: scopes, ExpiresAt: in.ExpiresAt, MaxScope: p.Scope})
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out := toAPIKey(k)
	out.Secret = secret
	w.Header().Set("Location", r.URL.Path+"/"+k.ID)
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusCreated, out)
}

func (a *API) listAPIKeys(w http.ResponseWriter, r *http.Request) {
	listPage(a, w, r, true, a.svc.ListAPIKeys, toAPIKey)
}

func (a *API) getAPIKey(w http.ResponseWriter, r *http.Request) {
	k, err := a.svc.APIKey(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "key_id"))
	writeRead(a, w, r, k, err, toAPIKey)
}

func (a *API) deleteAPIKey(w http.ResponseWriter, r *http.Request) {
	a.writeDone(w, r, a.svc.RevokeAPIKey(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "key_id")))
}

type auditEventJSON struct {
	ID         string    `json:"id"`
	ActorType  string    `json:"actor_type"`
	ActorID    string    `json:"actor_id"`
	Action     string    `json:"action"`
	Target     string    `json:"target"`
	ClientAddr string    `json:"client_addr"`
	RequestID  string    `json:"request_id"`
	CreatedAt  time.Time `json:"created_at"`
}

func (a *API) listAuditEvents(w http.ResponseWriter, r *http.Request) {
	f := tenancy.AuditFilter{Action: r.URL.Query().Get("action"), ActorID: r.URL.Query().Get("actor_id")}
	listPage(a, w, r, false, func(ctx context.Context, orgID string, p tenancy.Page) ([]tenancy.AuditEvent, string, error) {
		return a.svc.ListAuditEvents(ctx, orgID, f, p)
	}, func(e tenancy.AuditEvent) auditEventJSON {
		return auditEventJSON{ID: e.ID, ActorType: e.ActorType, ActorID: e.ActorID, Action: e.Action, Target: e.Target,
			ClientAddr: e.ClientAddr, RequestID: e.RequestID, CreatedAt: e.CreatedAt.UTC()}
	})
}
