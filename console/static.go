// Package console is Aerie's web console: templ pages served at / by the same
// HTTP server as the API, calling the same services (never a second code
// path with its own rules): sign-up, login and password reset, orgs and
// members, instances with their credentials, ACL rules, quotas, live
// clients, dashboards and a browser MQTT client, plans, usage and invoices.
// It keeps its own session cookie and CSRF tokens, shows errors through the
// shared table (internal/problem) and embeds its static assets.
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var staticFiles embed.FS

// Static serves the embedded stylesheet and script under /static/.
func Static() http.Handler {
	sub, _ := fs.Sub(staticFiles, "static")
	fsrv := http.StripPrefix("/static/", http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fsrv.ServeHTTP(w, r)
	})
}
