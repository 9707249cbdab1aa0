/*
Package api serves Aerie's REST API under /v1 (contract: openapi.yaml at the
repository root) on chi, the operator API (/v1/admin), the data-plane nodes'
API (/internal/v1) and the /healthz and /readyz endpoints: routing,
authentication (access JWTs, API keys, the operator token), scopes,
problem+json errors, pagination, ETags, idempotent POSTs, rate limits and
HTTP metrics, over the tenancy and billing services.

# Adding an org-scoped resource

Register routes in (*API).orgRoutes (or instanceRoutes, for what belongs to
one instance): the "/orgs/{org_id}" group already runs Authenticate (Bearer
access JWT or API key), Idempotency (POST) and OrgScope (404 for any org the
caller cannot see), so a handler only adds its scope and calls the domain
service with the org from the Principal:

	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/instances", a.listInstances)
	r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/instances", a.createInstance)

	func (a *API) createInstance(w http.ResponseWriter, r *http.Request) {
		var in createInstanceBody
		if err := DecodeJSON(w, r, &in); err != nil { // 415/413/400, unknown fields refused
			a.WriteError(w, r, err)
			return
		}
		p := PrincipalFrom(r.Context()) // p.OrgID, p.Role, p.Scope, p.UserID, p.APIKeyID
		inst, err := a.svc.CreateInstance(r.Context(), ActorOf(r), p.OrgID, ...)
		if err != nil {
			a.WriteError(w, r, err) // one table maps errors to problem+json
			return
		}
		WriteJSON(w, http.StatusCreated, toInstance(inst))
	}

Then add the operation to openapi.yaml with `x-aerie-scope`, and a sample
body to sampleBodies in conventions_test.go when it takes one: the isolation
test (every org route answers 404 to other orgs) and the scope test (every
route refuses scopes below its x-aerie-scope) walk the router, so they cover
the new route automatically, and every test response is validated against
the spec.

# Conventions and helpers

  - Errors: return domain errors (tenancy.ErrNotFound, ErrConflict, ErrForbidden,
    *tenancy.ValidationError, …) or the HTTP layer's (problem.ErrMalformed, …)
    and call (*API).WriteError. The mapping to HTTP status and problem `type`
    (ProblemTypeBase + slug) lives in one table shared with the console,
    internal/problem; add a row for a new domain error there.
  - Bodies: DecodeJSON (strict, MaxBodyBytes = 1 MiB); WriteJSON.
  - Lists: ParsePage(r) → tenancy.Page{After, Limit}; the store returns items
    and the key after the last one; respond with NewList(items, next, conv),
    whose next_cursor is null on the last page (NextCursor encodes it).
    listPage (handlers.go) does all of it for an org's or instance's list;
    writeRead and writeDone answer a read and a 204.
  - ETags: WriteJSONWithETag on every read and on update responses;
    CheckIfMatch(r, currentRepresentation) before applying a PATCH/PUT (412).
  - Idempotency-Key on POST is automatic (Idempotency middleware over
    internal/idempotency's store, 24 h, encrypted with a key derived from the
    client's Idempotency-Key so stored one-time secrets do not leak).
  - Auth: Authenticate, OrgScope, RequireScope(tenancy.Scope), RequireUser;
    PrincipalFrom(ctx) for the caller; ActorOf(r) for the audit actor.
  - Audit: domain services record an audit event in the mutation's own
    transaction (tenancy.Service.audit); code outside tenancy can use
    tenancy.Service.RecordAudit.
  - Request IDs: RequestID middleware (X-Request-Id in and out,
    middleware.GetReqID(ctx)); AccessLog logs one line per /v1 request.
*/
package api
