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
	"github.com/aeriemq/aerie/internal/idempotency"
	"github.com/aeriemq/aerie/internal/problem"
	"github.com/aeriemq/aerie/internal/ratelimit"
	"github.com/aeriemq/aerie/nodelink"
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
	// serves no node link.
	Feed *nodelink.Feed
	// Meter ingests the nodes' usage reports; may be nil.
	Meter *billing.Meter
	// AdminToken authenticates the operator API (/v1/admin); empty
	// disables it.
	AdminToken string
	// LoginLimits throttles POST /v1/auth/login; zero means
	// ratelimit.DefaultLoginLimits.
	LoginLimits ratelimit.LoginLimits
	// AbuseLimits throttle sign-ups and invitations; zero means
	// ratelimit.DefaultAbuseLimits.
	AbuseLimits ratelimit.AbuseLimits
	// Metrics receives the HTTP request metrics (route template, method,
	// code, duration) of everything this router serves; nil counts nothing.
	Metrics prometheus.Registerer
	// NodeAPI reaches the node serving an instance (HTTP publish, consumer
	// groups, live clients and sessions); nil answers those routes with 503.
	NodeAPI nodelink.Caller
	// Nodes reads live client state from the data plane; nil means through
	// NodeAPI.
	Nodes tenancy.NodeInspector
}

// API holds the handlers' dependencies; its methods are the /v1 handlers
// and the middleware later handlers reuse.
type API struct {
	log        *slog.Logger
	svc        *tenancy.Service
	billing    *billing.Service
	feed       *nodelink.Feed
	meter      *billing.Meter
	adminToken string
	idem       *idempotency.Store
	loginMail  *ratelimit.Keyed
	loginAddr  *ratelimit.Keyed
	signups    *ratelimit.Keyed // per client address
	invites    *ratelimit.Keyed // per org
	resets     *ratelimit.Keyed // per client address
	now        func() time.Time
	node       nodelink.Nodes
	nodes      tenancy.NodeInspector
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
	a := &API{log: d.Log, svc: d.Tenancy, billing: d.Billing, feed: d.Feed, meter: d.Meter, adminToken: d.AdminToken, now: time.Now, nodes: d.Nodes}
	if d.NodeAPI != nil {
		a.node = nodelink.Nodes{Caller: d.NodeAPI}
		if d.Tenancy != nil {
			a.node.Route = d.Tenancy
		}
		if a.nodes == nil {
			a.nodes = NewNodeInspector(d.NodeAPI, d.Tenancy)
		}
	}
	r.Use(RejectBadInput(a.WriteError))
	r.Get("/healthz", Healthz)
	r.Get("/readyz", Readyz(d.Ready))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { a.WriteError(w, r, problem.ErrRouteNotFound) })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) { a.WriteError(w, r, problem.ErrMethodNotAllowed) })
	if d.Tenancy == nil {
		return r
	}
	if d.DB != nil {
		a.idem = idempotency.NewStore(d.DB)
	}
	lim := d.LoginLimits.OrDefault()
	a.loginMail = ratelimit.New(lim.PerEmailEvery, lim.PerEmailBurst)
	a.loginAddr = ratelimit.New(lim.PerAddrEvery, lim.PerAddrBurst)
	ab := d.AbuseLimits.OrDefault()
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
// orgRoutes (or instanceRoutes) with RequireScope on each route (see doc.go).
func (a *API) Routes(r chi.Router) {
	r.Group(a.publicRoutes)
	// Authenticated.
	r.Group(func(r chi.Router) {
		r.Use(a.Authenticate, a.Idempotency, a.ReadYourWrites)
		r.Get("/me", a.me)
		r.Get("/orgs", a.listOrgs)
		r.With(a.RequireUser).Post("/invitations/accept", a.acceptInvitation)
		r.Route("/orgs/{org_id}", a.orgRoutes)
	})
}

// publicRoutes are the routes that need no credentials.
func (a *API) publicRoutes(r chi.Router) {
	r.Use(a.Idempotency)
	r.Post("/signup", a.signup)
	r.Post("/auth/login", a.login)
	r.Post("/auth/refresh", a.refresh)
	r.Post("/auth/logout", a.logout)
	r.Post("/auth/verify-email", a.verifyEmail)
	r.Post("/auth/password-reset", a.requestPasswordReset)
	r.Post("/auth/password-reset/confirm", a.confirmPasswordReset)
	r.Get("/plans", a.listPlans)
}

// orgRoutes are the routes under /orgs/{org_id}: OrgScope answers 404 for
// an org the caller cannot see.
func (a *API) orgRoutes(r chi.Router) {
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
	r.Route("/instances/{instance_id}", a.instanceRoutes)

	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/subscription", a.getSubscription)
	r.With(a.RequireScope(tenancy.ScopeAdmin)).Put("/subscription", a.putSubscription)
	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/usage", a.getUsage)
	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/invoices", a.listInvoices)
	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/invoices/upcoming", a.upcomingInvoice)
	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/invoices/{invoice_id}", a.getInvoice)
	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/invoices/{invoice_id}/print", a.printInvoice)
}

// instanceRoutes are the routes of one instance, under
// /orgs/{org_id}/instances/{instance_id}.
func (a *API) instanceRoutes(r chi.Router) {
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
	r.With(a.RequireScope(tenancy.ScopeConsume)).Get("/topics/{topic_id}/messages", a.pollTopic)
	r.With(a.RequireScope(tenancy.ScopeConsume)).Post("/topics/{topic_id}/messages/ack", a.ackTopic)
	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/topics/{topic_id}/storage", a.topicStorage)
	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/topics/{topic_id}/groups", a.topicGroups)
	r.With(a.RequireScope(tenancy.ScopeRead)).Get("/topic-settings", a.getTopicSettings)
	r.With(a.RequireScope(tenancy.ScopeWrite)).Put("/topic-settings", a.putTopicSettings)

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

	a.ruleRoutes(r)
}
