package api

// Shapes shared by many handlers: a page of a list, a read, a change
// answered 204.

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/tenancy"
)

// lister reads one page of an org's list.
type lister[T any] func(ctx context.Context, orgID string, p tenancy.Page) ([]T, string, error)

// listPage answers one page of an org-scoped list: the page from the
// query (and ?name= when named), the items from list for the caller's org,
// each converted by conv, with an ETag.
func listPage[T, J any](a *API, w http.ResponseWriter, r *http.Request, named bool, list lister[T], conv func(T) J) {
	page, err := ParsePage(r)
	if err == nil && named {
		page.Name, err = nameFilter(r)
	}
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	items, next, err := list(r.Context(), PrincipalFrom(r.Context()).OrgID, page)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, NewList(items, next, conv))
}

// inInstance narrows an instance's list to a lister of the route's
// instance.
func inInstance[T any](r *http.Request, list func(ctx context.Context, orgID, instanceID string, p tenancy.Page) ([]T, string, error)) lister[T] {
	id := chi.URLParam(r, "instance_id")
	return func(ctx context.Context, orgID string, p tenancy.Page) ([]T, string, error) {
		return list(ctx, orgID, id, p)
	}
}

// writeRead answers a read: v converted by conv, with an ETag, or err.
func writeRead[T, J any](a *API, w http.ResponseWriter, r *http.Request, v T, err error, conv func(T) J) {
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, conv(v))
}

// writeDone answers a change with no body: 204, or err.
func (a *API) writeDone(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
