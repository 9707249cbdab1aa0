package console

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/internal/problem"
	"github.com/aeriemq/aerie/internal/ratelimit"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// Deps are what the console needs from the rest of the process: the same
// services the API calls.
type Deps struct {
	Tenancy *tenancy.Service
	// Billing serves the plan, usage and invoice pages; nil hides them.
	Billing *billing.Service
	// Meter feeds the metrics charts (instance dashboards); may be nil.
	Meter *billing.Meter
	Log   *slog.Logger
	// Secure marks every cookie Secure (set it when the public URL is
	// https). Cookies of a request that came over TLS (or through a proxy
	// saying X-Forwarded-Proto: https) are Secure either way.
	Secure bool
	// CSRFKey signs form tokens (≥ 32 bytes, the same in every process
	// behind one address); nil picks a random key for this process.
	CSRFKey []byte
	// LoginLimits throttles logins and password-reset mails; zero means
	// ratelimit.DefaultLoginLimits (the API's rule).
	LoginLimits ratelimit.LoginLimits
	// AbuseLimits throttle sign-ups per client address; zero means
	// ratelimit.DefaultAbuseLimits (the API's rule).
	AbuseLimits ratelimit.AbuseLimits
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Sync waits until the data-plane nodes have applied config revisions
	// (nodelink.Feed in a control plane); nil answers without waiting.
	Sync Syncer
	// Nodes reads live clients from the data plane (clients page, live
	// connection counts); nil hides them.
	Nodes tenancy.NodeInspector
	// NodeAPI reaches the node serving an instance for its topics' storage
	// and consumer groups (as the API does); nil shows them as unknown.
	NodeAPI nodelink.Caller
}

// Syncer waits for config changes to be applied on the data plane.
type Syncer interface {
	WaitApplied(ctx context.Context, want map[string]int64) error
}

// syncWait bounds how long a console form waits for the node to apply the
// change before answering anyway.
const syncWait = 5 * time.Second

// Console serves the web console.
type Console struct {
	svc       *tenancy.Service
	bill      *billing.Service
	meter     *billing.Meter
	log       *slog.Logger
	secure    bool
	csrf      *CSRF
	loginMail *ratelimit.Keyed
	loginAddr *ratelimit.Keyed
	signups   *ratelimit.Keyed // per client address
	refresher *refresher
	now       func() time.Time
	sync      Syncer
	nodes     tenancy.NodeInspector
	nodeAPI   nodelink.Caller
	rules     nodelink.Nodes
}

// New returns the console's handler: a chi router meant to be mounted at /
// next to the API (/v1, /healthz, /readyz stay with the API router).
func New(d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	key := d.CSRFKey
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	lim, ab := d.LoginLimits.OrDefault(), d.AbuseLimits.OrDefault()
	c := &Console{
		svc: d.Tenancy, bill: d.Billing, meter: d.Meter, log: d.Log, secure: d.Secure,
		csrf:      NewCSRF(key, d.Secure),
		loginMail: ratelimit.New(lim.PerEmailEvery, lim.PerEmailBurst),
		loginAddr: ratelimit.New(lim.PerAddrEvery, lim.PerAddrBurst),
		signups:   ratelimit.New(ab.SignupsPerAddrEvery, ab.SignupsPerAddrBurst),
		refresher: newRefresher(d.Tenancy),
		now:       d.Now,
		sync:      d.Sync,
		nodes:     d.Nodes,
		nodeAPI:   d.NodeAPI,
		rules:     nodelink.Nodes{Caller: d.NodeAPI},
	}
	if d.Tenancy != nil {
		c.rules.Route = d.Tenancy
	}
	return c.routes()
}

func (c *Console) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer, secureCookiesOverTLS, securityHeaders, c.csrf.Middleware, c.session, c.readYourWrites)
	r.Handle("/static/*", Static())
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, http.StatusNotFound, "This page does not exist.")
	})

	r.Get("/", c.home)
	r.Get("/signup", c.signupForm)
	r.Post("/signup", c.signup)
	r.Get("/login", c.loginForm)
	r.Post("/login", c.login)
	r.Post("/logout", c.logout)
	r.Get("/verify-email", c.verifyForm)
	r.Post("/verify-email", c.verifyEmail)
	r.Get("/reset-password", c.resetForm)
	r.Post("/reset-password", c.requestReset)
	r.Post("/reset-password/confirm", c.confirmReset)

	r.Group(func(r chi.Router) {
		r.Use(c.requireUser)
		r.Get("/switch-org", c.switchOrg)
		r.Get("/invitations/accept", c.acceptForm)
		r.Post("/invitations/accept", c.acceptInvitation)
		r.Route("/orgs/{org}", func(r chi.Router) {
			r.Use(c.orgScope)
			r.Get("/", c.overview)
			r.Get("/metrics", c.orgMetrics)
			r.Get("/checklist", c.checklistPart)
			r.Get("/settings", c.settings)
			r.Post("/settings", c.renameOrg)
			r.Get("/members", c.members)
			r.Post("/members/{user}/role", c.changeRole)
			r.Post("/members/{user}/remove", c.removeMember)
			r.Post("/invitations", c.invite)
			r.Get("/api-keys", c.apiKeys)
			r.Post("/api-keys", c.createAPIKey)
			r.Post("/api-keys/{key}/revoke", c.revokeAPIKey)
			r.Get("/audit", c.audit)
			r.Get("/billing", c.billingPage)
			r.Post("/billing/plan", c.changePlan)
			r.Post("/billing/spend-limit", c.setSpendLimit)
			r.Get("/invoices/{invoice}", c.invoice)
			r.Get("/instances", c.instances)
			r.Post("/instances", c.createInstance)
			r.Route("/instances/{inst}", c.instanceRoutes)
		})
	})
	return r
}

// instanceRoutes are the pages and actions of one instance.
func (c *Console) instanceRoutes(r chi.Router) {
	r.Get("/", c.instance)
	r.Get("/metrics", c.instanceMetrics)
	r.Post("/status", c.setInstanceStatus)
	r.Post("/protection", c.setDeletionProtection)
	r.Post("/delete", c.deleteInstance)
	r.Get("/credentials", c.credentials)
	r.Post("/credentials", c.createCredential)
	r.Post("/credentials/bulk", c.bulkCredentials)
	r.Post("/credentials/{cred}/enabled", c.setCredentialEnabled)
	r.Post("/credentials/{cred}/rotate", c.rotateCredential)
	r.Post("/credentials/{cred}/delete", c.deleteCredential)
	r.Get("/acl", c.aclRules)
	r.Post("/acl", c.createACLRule)
	r.Post("/acl/{rule}/delete", c.deleteACLRule)
	r.Get("/quotas", c.quotas)
	r.Post("/quotas", c.setQuotas)
	r.Get("/clients", c.clientsPage)
	r.Get("/status", c.instanceStatus)
	r.Get("/webclient", c.webClient)
	r.Post("/webclient/token", c.webClientToken)
	r.Post("/clients/disconnect", c.disconnectClient)
	r.Post("/sessions/discard", c.discardSession)
	r.Get("/topics", c.topics)
	r.Post("/topics", c.createTopic)
	r.Post("/topics/strict", c.setStrictTopics)
	r.Get("/topics/{topic}", c.topicPage)
	r.Post("/topics/{topic}", c.updateTopic)
	r.Post("/topics/{topic}/delete", c.deleteTopic)
	c.ruleRoutes(r)
}

// securityHeaders: no framing, no sniffing, scripts and styles only from
// the console itself (the console works offline: nothing from a CDN).
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// Page is what every page's layout shows: who is signed in, the org being
// looked at (with the caller's role in it), the CSRF token for forms and a
// flash message.
type Page struct {
	Title   string
	Section string // nav entry to mark current
	User    *tenancy.User
	Orgs    []tenancy.Org
	Org     *tenancy.Org // nil outside /orgs/{org}
	CSRF    string
	Flash   string
	Error   string // page-level error (form errors sit next to their fields)
	Billing bool   // billing pages are available
}

// CanWrite reports whether the caller's role may make write calls in Org.
func (p Page) CanWrite() bool {
	return p.Org != nil && p.Org.Role.MaxScope().Rank() >= tenancy.ScopeWrite.Rank()
}

// CanAdmin reports whether the caller's role may make admin calls in Org.
func (p Page) CanAdmin() bool {
	return p.Org != nil && p.Org.Role.MaxScope().Rank() >= tenancy.ScopeAdmin.Rank()
}

// OrgPath is the console path of a page of the current org.
func (p Page) OrgPath(rest string) string {
	if p.Org == nil {
		return "/"
	}
	return "/orgs/" + p.Org.ID + rest
}

// Form holds submitted values and the error of each invalid field.
type Form struct {
	Values map[string]string
	Errors map[string]string
}

// Get returns a submitted value.
func (f Form) Get(k string) string { return f.Values[k] }

// Err returns the error shown next to field k ("" when none).
func (f Form) Err(k string) string { return f.Errors[k] }

func formOf(r *http.Request, keys ...string) Form {
	f := Form{Values: map[string]string{}, Errors: map[string]string{}}
	for _, k := range keys {
		f.Values[k] = strings.TrimSpace(r.PostFormValue(k))
	}
	return f
}

// fieldErrors moves a service ValidationError onto the form's fields
// (renamed through alias, e.g. "name" → "org_name"); it reports whether err
// was one.
func (f *Form) fieldErrors(err error, alias map[string]string) bool {
	var ve *tenancy.ValidationError
	if !errors.As(err, &ve) {
		return false
	}
	for _, fe := range ve.Fields {
		k := fe.Field
		if a, ok := alias[k]; ok {
			k = a
		}
		if f.Errors[k] == "" {
			f.Errors[k] = fe.Message
		}
	}
	return true
}

type ctxKey int

const (
	userKey ctxKey = iota
	orgKey
)

func userFrom(ctx context.Context) *tenancy.User {
	u, _ := ctx.Value(userKey).(*tenancy.User)
	return u
}

func orgFrom(ctx context.Context) *tenancy.Org {
	o, _ := ctx.Value(orgKey).(*tenancy.Org)
	return o
}

// page builds the layout data for r (and sets the CSRF cookie if needed).
func (c *Console) page(w http.ResponseWriter, r *http.Request, title, section string) Page {
	p := Page{Title: title, Section: section, User: userFrom(r.Context()), Org: orgFrom(r.Context()),
		CSRF: c.csrf.Token(w, r), Flash: takeFlash(w, r, c.secure), Billing: c.bill != nil}
	if p.User != nil {
		orgs, _, err := c.svc.ListOrgs(r.Context(), p.User.ID, tenancy.Page{Limit: 200})
		if err != nil {
			c.log.WarnContext(r.Context(), "console: list orgs", "error", err)
		}
		p.Orgs = orgs
	}
	return p
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, comp templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := comp.Render(r.Context(), w); err != nil {
		c.log.ErrorContext(r.Context(), "console: render", "path", r.URL.Path, "error", err)
	}
}

func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	p := c.page(w, r, http.StatusText(status), "")
	p.Error = msg
	c.render(w, r, status, ErrorPage(p, status))
}

// fail shows err as the one error table (internal/problem) says: its
// status (403, 404, 409, …) with a readable message, anything unknown as
// 500 (logged, details hidden).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	kind, _ := problem.For(err)
	switch {
	case kind == problem.Degraded:
		c.log.WarnContext(r.Context(), "console: database unreachable", "path", r.URL.Path, "error", err)
		w.Header().Set("Retry-After", strconv.Itoa(problem.DegradedRetryAfter))
	case kind.Status >= 500:
		c.log.ErrorContext(r.Context(), "console: request failed", "path", r.URL.Path, "error", err)
	}
	c.errorPage(w, r, kind.Status, problem.Message(err))
}

// actor is the audit actor of a console request.
func actor(r *http.Request) tenancy.Actor {
	a := tenancy.Actor{ClientAddr: clientAddr(r), RequestID: middleware.GetReqID(r.Context())}
	if u := userFrom(r.Context()); u != nil {
		a.UserID = u.ID
	}
	return a
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// seeOther redirects after a successful form post.
func seeOther(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// orgScope resolves {org} for the signed-in user: members see it (with
// their role), everyone else gets 404, as in the API.
func (c *Console) orgScope(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := userFrom(r.Context())
		orgID := chi.URLParam(r, "org")
		role, err := c.svc.Authorize(r.Context(), orgID, u.ID, tenancy.ScopeRead)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		o, err := c.svc.Org(r.Context(), orgID)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		o.Role = role
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), orgKey, &o)))
	})
}

// allow checks, on the server and right before the service call, that the
// caller may act with scope need in the current org (the API's rule, through
// tenancy.Service.Authorize). On refusal it writes the error page (403) and
// returns false.
func (c *Console) allow(w http.ResponseWriter, r *http.Request, need tenancy.Scope) (tenancy.Role, bool) {
	role, err := c.svc.Authorize(r.Context(), orgFrom(r.Context()).ID, userFrom(r.Context()).ID, need)
	if err != nil {
		c.fail(w, r, err)
		return "", false
	}
	return role, true
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	u := userFrom(r.Context())
	if u == nil {
		seeOther(w, r, "/login")
		return
	}
	orgs, _, err := c.svc.ListOrgs(r.Context(), u.ID, tenancy.Page{Limit: 1})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if len(orgs) == 0 {
		p := c.page(w, r, "No organisation", "")
		c.render(w, r, http.StatusOK, NoOrgPage(p))
		return
	}
	seeOther(w, r, "/orgs/"+orgs[0].ID+"/")
}

func (c *Console) switchOrg(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("org")
	if _, err := c.svc.Authorize(r.Context(), id, userFrom(r.Context()).ID, tenancy.ScopeRead); err != nil {
		c.fail(w, r, err)
		return
	}
	seeOther(w, r, "/orgs/"+id+"/")
}

// money formats cents of currency.
func money(cents int64, currency string) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, cents/100, cents%100, strings.ToUpper(currency))
}

func when(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

func whenPtr(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return when(*t)
}

func passwordHint(more string) string {
	return fmt.Sprintf("At least %d characters.%s", tenancy.MinPasswordLength, more)
}

var (
	roles  = []tenancy.Role{tenancy.RoleViewer, tenancy.RoleAdmin, tenancy.RoleOwner}
	scopes = []tenancy.Scope{tenancy.ScopeConsume, tenancy.ScopeRead, tenancy.ScopeWrite, tenancy.ScopeAdmin}
)

func roleLabel(r tenancy.Role) string {
	switch r {
	case tenancy.RoleViewer:
		return "viewer: sees everything, changes nothing"
	case tenancy.RoleAdmin:
		return "admin: manages everything but owners"
	case tenancy.RoleOwner:
		return "owner: everything"
	}
	return string(r)
}

func scopeLabel(s tenancy.Scope) string {
	switch s {
	case tenancy.ScopeConsume:
		return "consume: read topics' messages as consumer groups, nothing else"
	case tenancy.ScopeRead:
		return "read: list and get (and consume)"
	case tenancy.ScopeWrite:
		return "write: also create, change and delete resources"
	case tenancy.ScopeAdmin:
		return "admin: also members and API keys"
	}
	return string(s)
}

func urlq(s string) string { return url.QueryEscape(s) }

// expectName is the org name the rename form was based on (optimistic
// concurrency: a rename meanwhile is reported, not overwritten).
func expectName(p Page, f Form) string {
	if e := f.Get("expect"); e != "" {
		return e
	}
	return p.Org.Name
}

func bytesLabel(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

func paidNote(inv billing.Invoice) string {
	if inv.PaidAt == nil {
		return ""
	}
	return ", paid " + when(*inv.PaidAt)
}

func currencyUpper(c string) string { return strings.ToUpper(c) }

// withNext adds ?next= to path when next is set.
func withNext(path, next string) string {
	if next == "" {
		return path
	}
	return path + "?next=" + url.QueryEscape(next)
}

// readYourWrites holds the answer to a form that changed config until the
// instance's node has applied the change (at most syncWait), so that a
// credential the console shows works at once and one disabled, rotated or
// deleted there is refused at once.
func (c *Console) readYourWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || c.sync == nil {
			next.ServeHTTP(w, r)
			return
		}
		ctx, revs := tenancy.RecordRevisions(r.Context())
		next.ServeHTTP(&syncWriter{ResponseWriter: w, c: c, r: r, revs: revs}, r.WithContext(ctx))
	})
}

// syncWriter waits for the recorded revisions when the answer starts.
type syncWriter struct {
	http.ResponseWriter
	c     *Console
	r     *http.Request
	revs  func() tenancy.Revisions
	wrote bool
}

func (sw *syncWriter) WriteHeader(code int) {
	if !sw.wrote {
		sw.wrote = true
		if want := sw.revs(); len(want) > 0 && code < 400 {
			ctx, cancel := context.WithTimeout(sw.r.Context(), syncWait)
			if err := sw.c.sync.WaitApplied(ctx, want); err != nil && sw.r.Context().Err() == nil {
				sw.c.log.Warn("console: config change not yet applied by its node", "revision", want.Max(), "error", err)
			}
			cancel()
		}
	}
	sw.ResponseWriter.WriteHeader(code)
}

func (sw *syncWriter) Write(b []byte) (int, error) {
	if !sw.wrote {
		sw.WriteHeader(http.StatusOK)
	}
	return sw.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (sw *syncWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }
