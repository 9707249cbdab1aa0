// Package api serves Aerie's REST API (/v1) and the health endpoints on chi.
package api

import (
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// Deps are what the API needs from the rest of the process.
type Deps struct {
	Log   *slog.Logger
	Ready []ReadyCheck
}

// NewRouter builds the HTTP handler for the control plane: health endpoints
// now, /v1 as the identity and instance services land.
func NewRouter(d Deps) chi.Router {
	r := chi.NewRouter()
	r.Use(middleware.RequestID)
	r.Use(middleware.Recoverer)
	r.Get("/healthz", Healthz)
	r.Get("/readyz", Readyz(d.Ready))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	return r
}
