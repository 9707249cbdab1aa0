package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/aeriemq/aerie/internal/problem"
	"github.com/aeriemq/aerie/tenancy"
)

// Principal is who calls: a user (access JWT) or an API key (acting for the
// user who created it, never above that user's role). Inside an org route
// (after OrgScope) OrgID, Role and Scope describe the caller in that org.
type Principal struct {
	UserID   string
	APIKeyID string        // set for API keys
	KeyOrgID string        // the API key's org
	KeyScope tenancy.Scope // the API key's effective scope
	KeyRole  tenancy.Role  // the key creator's role in KeyOrgID

	OrgID string
	Role  tenancy.Role
	Scope tenancy.Scope
}

// IsAPIKey reports whether the caller authenticated with an API key.
func (p *Principal) IsAPIKey() bool { return p.APIKeyID != "" }

type principalKey struct{}

// PrincipalFrom returns the authenticated caller (nil outside Authenticate).
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// ClientAddr is the request's client address (the TCP peer; proxies are not
// trusted).
func ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ActorOf is the audit actor of a request.
func ActorOf(r *http.Request) tenancy.Actor {
	a := tenancy.Actor{ClientAddr: ClientAddr(r), RequestID: middleware.GetReqID(r.Context())}
	if p := PrincipalFrom(r.Context()); p != nil {
		a.UserID, a.APIKeyID = p.UserID, p.APIKeyID
	}
	return a
}

// Authenticate requires `Authorization: Bearer <access JWT | API key>` and
// puts the Principal in the context; otherwise 401.
func (a *API) Authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			a.WriteError(w, r, fmt.Errorf("%w: send Authorization: Bearer <token>", tenancy.ErrUnauthenticated))
			return
		}
		p := &Principal{}
		if tenancy.LooksLikeAPIKey(token) {
			ka, err := a.svc.AuthenticateAPIKey(r.Context(), token)
			if err != nil {
				a.WriteError(w, r, err)
				return
			}
			p.UserID, p.APIKeyID, p.KeyOrgID = ka.Key.CreatedBy, ka.Key.ID, ka.Key.OrgID
			p.KeyScope, p.KeyRole = ka.EffectiveScope(), ka.CreatorRole
		} else {
			uid, err := a.svc.VerifyAccessToken(r.Context(), token)
			if err != nil {
				a.WriteError(w, r, err)
				return
			}
			p.UserID = uid
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// OrgScope resolves {org_id} for the caller: a member's role (JWT) or the
// key's org (API key). Any org the caller cannot see is 404, exactly like an
// org that does not exist.
func (a *API) OrgScope(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		orgID := chi.URLParam(r, "org_id")
		if p == nil {
			a.WriteError(w, r, tenancy.ErrUnauthenticated)
			return
		}
		scoped := *p
		scoped.OrgID = orgID
		if p.IsAPIKey() {
			if p.KeyOrgID != orgID {
				a.WriteError(w, r, fmt.Errorf("%w: org %s", tenancy.ErrNotFound, orgID))
				return
			}
			scoped.Role, scoped.Scope = p.KeyRole, p.KeyScope
		} else {
			role, err := a.svc.MemberRole(r.Context(), orgID, p.UserID)
			if err != nil {
				if errors.Is(err, tenancy.ErrNotFound) {
					err = fmt.Errorf("%w: org %s", tenancy.ErrNotFound, orgID)
				}
				a.WriteError(w, r, err)
				return
			}
			scoped.Role, scoped.Scope = role, role.MaxScope()
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, &scoped)))
	})
}

// RequireScope refuses (403) callers whose scope in the org is below s
// (consume < read < write < admin). Use it on every org route, after OrgScope.
func (a *API) RequireScope(s tenancy.Scope) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := PrincipalFrom(r.Context())
			if p == nil || p.Scope.Rank() < s.Rank() {
				a.WriteError(w, r, fmt.Errorf("%w: this call needs scope %q", problem.ErrInsufficientScope, s))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// RequireUser refuses API keys (403): for calls only a signed-in person may
// make (accepting an invitation).
func (a *API) RequireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := PrincipalFrom(r.Context()); p == nil || p.IsAPIKey() {
			a.WriteError(w, r, fmt.Errorf("%w: sign in as a user; API keys cannot make this call", tenancy.ErrForbidden))
			return
		}
		next.ServeHTTP(w, r)
	})
}
