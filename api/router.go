// Package api serves Aerie's REST API (/v1) and the health endpoints on chi.
package api

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/dataplane/nodeapi"
	"github.com/aeriemq/aerie/internal/ratelimit"
	"github.com/aeriemq/aerie/tenancy"
)

// Deps are what the API needs from the rest of the process. With Tenancy
// and DB nil only the health endpoints are served.
type Deps struct {
	Log     *slog.Logger
	Ready   []ReadyCheck
	Tenancy *tenancy.Service
	Billing *billing.Service
	DB      *pgxpool.Pool // idempotency store
	// Feed streams config to data-plane nodes (/internal/v1/nodes/…); nil
	// serves no node API.
	Feed *tenancy.Feed
	// Meter ingests the nodes' usage reports; may be nil.
	Meter *billing.Meter
	// AdminToken authenticates the operator API (/v1/admin); empty
	// disables it.
	AdminToken string
	// LoginLimits throttles POST /v1/auth/login; zero means DefaultLoginLimits.
	LoginLimits LoginLimits
	// AbuseLimits throttle sign-ups and invitations; zero means
	// DefaultAbuseLimits.
	AbuseLimits AbuseLimits
	// Metrics receives the HTTP request metrics (route template, method,
	// code, duration) of everything this router serves; nil counts nothing.
	Metrics prometheus.Registerer
	// NodeAPI reaches the node serving an instance (consumer groups read
	// the node's store); nil answers those routes with 503.
	NodeAPI nodeapi.Caller
	// Nodes reads live client state from the data plane; nil answers 503.
	Nodes NodeInspector
}

// LoginLimits are token buckets for login attempts: Burst attempts at once,
// then one per Every, separately per email and per client address.
type LoginLimits struct {
	PerEmailBurst int
	PerEmailEvery time.Duration
	PerAddrBurst  int
	PerAddrEvery  time.Duration
}

// DefaultLoginLimits: 5 attempts per email then one every 30 s; 30 per
// client address then one every 2 s.
var DefaultLoginLimits = LoginLimits{PerEmailBurst: 5, PerEmailEvery: 30 * time.Second, PerAddrBurst: 30, PerAddrEvery: 2 * time.Second}

// AbuseLimits are token buckets against mass sign-ups and invitation spam:
// Burst at once, then one per Every.
type AbuseLimits struct {
	SignupsPerAddrBurst int
	SignupsPerAddrEvery time.Duration
	InvitesPerOrgBurst  int
	InvitesPerOrgEvery  time.Duration
	ResetsPerAddrBurst  int
	ResetsPerAddrEvery  time.Duration
}

// DefaultAbuseLimits: 5 sign-ups per client address, then one every 12
// minutes (5 an hour); 20 invitations per org, then one every 3 minutes;
// 10 password-reset requests per client address, then one a minute (each
// email also has its login bucket).
var DefaultAbuseLimits = AbuseLimits{SignupsPerAddrBurst: 5, SignupsPerAddrEvery: 12 * time.Minute,
	InvitesPerOrgBurst: 20, InvitesPerOrgEvery: 3 * time.Minute, ResetsPerAddrBurst: 10, ResetsPerAddrEvery: time.Minute}

// API holds the handlers' dependencies; its methods are the /v1 handlers
// and the middleware later handlers reuse.
type API struct {
	log        *slog.Logger
	svc        *tenancy.Service
	billing    *billing.Service
	feed       *tenancy.Feed
	meter      *billing.Meter
	adminToken string
	idem       *IdempotencyStore
	loginMail  *ratelimit.Keyed
	loginAddr  *ratelimit.Keyed
	signups    *ratelimit.Keyed // per client address
	invites    *ratelimit.Keyed // per org
	resets     *ratelimit.Keyed // per client address
	now        func() time.Time
	nodeAPI    nodeapi.Caller
	nodes      NodeInspector
}

// NewRouter builds the HTTP handler for the control plane: health endpoints
// and, when Tenancy is set, the /v1 API.
func NewRouter(d Deps) chi.Router {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	r := chi.NewRouter()
	r.Use(RequestID)
	if d.Metrics != nil {
		r.Use(newHTTPMetrics(d.Metrics).middleware)
	}
	r.Use(middleware.Recoverer)
	a := &API{log: d.Log, svc: d.Tenancy, billing: d.Billing, feed: d.Feed, meter: d.Meter, adminToken: d.AdminToken, now: time.Now, nodeAPI: d.NodeAPI, nodes: d.Nodes}
	r.Use(RejectBadInput(a.WriteError))
	r.Get("/healthz", Healthz)
	r.Get("/readyz", Readyz(d.Ready))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { a.WriteError(w, r, ErrRouteNotFound) })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) { a.WriteError(w, r, ErrMethodNotAllowed) })
	if d.Tenancy == nil {
		return r
	}
	if d.DB != nil {
		a.idem = NewIdempotencyStore(d.DB)
	}
	lim := d.LoginLimits
	if lim == (LoginLimits{}) {
		lim = DefaultLoginLimits
	}
	a.loginMail = ratelimit.New(lim.PerEmailEvery, lim.PerEmailBurst)
	a.loginAddr = ratelimit.New(lim.PerAddrEvery, lim.PerAddrBurst)
	ab := d.AbuseLimits
	if ab == (AbuseLimits{}) {
		ab = DefaultAbuseLimits
	}
	a.signups = ratelimit.New(ab.SignupsPerAddrEvery, ab.SignupsPerAddrBurst)
	a.invites = ratelimit.New(ab.InvitesPerOrgEvery, ab.InvitesPerOrgBurst)
	a.resets = ratelimit.New(ab.ResetsPerAddrEvery, ab.ResetsPerAddrBurst)
	r.Route("/v1", func(r chi.Router) {
		r.Use(AccessLog(d.Log))
		r.Use(NotModified)
		a.Routes(r)
		a.AdminRoutes(r)
	})
	if d.Feed != nil {
		r.Route("/internal/v1", a.NodeRoutes)
	}
	return r
}

// Routes registers every /v1 route on r. A new org-scoped resource goes in
// the /orgs/{org_id} group with RequireScope on each route (see doc.go).
func (a *API) Routes(r chi.Router) {
	// Public.
	r.Group(func(r chi.Router) {
		r.Use(a.Idempotency)
		r.Post("/signup", a.signup)
		r.Post("/auth/login", a.login)
		r.Post("/auth/refresh", a.refresh)
		r.Post("/auth/logout", a.logout)
		r.Post("/auth/verify-email", a.verifyEmail)
		r.Post("/auth/password-reset", a.requestPasswordReset)
		r.Post("/auth/password-reset/confirm", a.confirmPasswordReset)
		r.Get("/plans", a.listPlans)
	})
	// Authenticated.
	r.Group(func(r chi.Router) {
		r.Use(a.Authenticate, a.Idempotency, a.ReadYourWrites)
		r.Get("/me", a.me)
		r.Get("/orgs", a.listOrgs)
		r.With(a.RequireUser).Post("/invitations/accept", a.acceptInvitation)
		r.Route("/orgs/{org_id}", func(r chi.Router) {
			r.Use(a.OrgScope)
			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/", a.getOrg)
			r.With(a.RequireScope(tenancy.ScopeWrite)).Patch("/", a.patchOrg)

			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/members", a.listMembers)
			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/members/{user_id}", a.getMember)
			r.With(a.RequireScope(tenancy.ScopeAdmin)).Patch("/members/{user_id}", a.patchMember)
			r.With(a.RequireScope(tenancy.ScopeAdmin)).Delete("/members/{user_id}", a.deleteMember)
			r.With(a.RequireScope(tenancy.ScopeAdmin)).Post("/invitations", a.invite)

			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/api-keys", a.listAPIKeys)
			r.With(a.RequireScope(tenancy.ScopeAdmin)).Post("/api-keys", a.createAPIKey)
			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/api-keys/{key_id}", a.getAPIKey)
			r.With(a.RequireScope(tenancy.ScopeAdmin)).Delete("/api-keys/{key_id}", a.deleteAPIKey)

			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/audit-events", a.listAuditEvents)

			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/instances", a.listInstances)
			r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/instances", a.createInstance)
			r.Route("/instances/{instance_id}", func(r chi.Router) {
				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/", a.getInstance)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Patch("/", a.patchInstance)
				r.With(a.RequireScope(tenancy.ScopeAdmin)).Delete("/", a.deleteInstance)

				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/credentials", a.listCredentials)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/credentials", a.createCredentials)
				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/credentials/{credential_id}", a.getCredential)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Patch("/credentials/{credential_id}", a.patchCredential)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/credentials/{credential_id}/rotate", a.rotateCredential)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Delete("/credentials/{credential_id}", a.deleteCredential)

				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/acl-rules", a.listACLRules)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/acl-rules", a.createACLRule)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Put("/acl-rules", a.putACLRules)
				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/acl-rules/{rule_id}", a.getACLRule)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Patch("/acl-rules/{rule_id}", a.patchACLRule)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Delete("/acl-rules/{rule_id}", a.deleteACLRule)

				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/topics", a.listTopics)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/topics", a.createTopic)
				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/topics/{topic_id}", a.getTopic)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Patch("/topics/{topic_id}", a.patchTopic)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Delete("/topics/{topic_id}", a.deleteTopic)
				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/topics/{topic_id}/messages", a.pollTopic)
				r.With(a.RequireScope(tenancy.ScopeRead)).Post("/topics/{topic_id}/messages/ack", a.ackTopic)
				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/topics/{topic_id}/storage", a.topicStorage)
				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/topic-settings", a.getTopicSettings)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Put("/topic-settings", a.putTopicSettings)

				a.ruleRoutes(r)

				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/metrics", a.getInstanceMetrics)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/publish", a.publish)
				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/quotas", a.getQuotas)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Put("/quotas", a.putQuotas)

				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/tokens", a.listDeviceTokens)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/tokens", a.issueDeviceToken)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Post("/tokens/revoke", a.revokeDeviceToken)

				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/clients", a.listClients)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Delete("/clients/{client_id}", a.disconnectClient)
				r.With(a.RequireScope(tenancy.ScopeRead)).Get("/sessions", a.listSessions)
				r.With(a.RequireScope(tenancy.ScopeWrite)).Delete("/sessions/{client_id}", a.discardSession)
			})

			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/subscription", a.getSubscription)
			r.With(a.RequireScope(tenancy.ScopeAdmin)).Put("/subscription", a.putSubscription)
			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/usage", a.getUsage)
			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/invoices", a.listInvoices)
			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/invoices/upcoming", a.upcomingInvoice)
			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/invoices/{invoice_id}", a.getInvoice)
			r.With(a.RequireScope(tenancy.ScopeRead)).Get("/invoices/{invoice_id}/print", a.printInvoice)
		})
	})
}
