package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/internal/mailer"
	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/internal/ratelimit"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var (
	specOnce   sync.Once
	specDoc    *openapi3.T
	specRouter routers.Router
	specErr    error
)

// loadSpec loads and validates openapi.yaml once per test process.
func loadSpec(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	specOnce.Do(func() {
		// Printable views (text/html) are validated as opaque strings.
		openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.FileBodyDecoder)
		loader := openapi3.NewLoader()
		specDoc, specErr = loader.LoadFromFile("../openapi.yaml")
		if specErr != nil {
			return
		}
		if specErr = specDoc.Validate(context.Background()); specErr != nil {
			return
		}
		specRouter, specErr = legacy.NewRouter(specDoc)
	})
	if specErr != nil {
		t.Fatalf("openapi.yaml: %v", specErr)
	}
	return specDoc, specRouter
}

// env is one API server over a fresh database.
type env struct {
	t      *testing.T
	srv    *httptest.Server
	svc    *tenancy.Service
	outbox *mailer.Outbox
	db     *pgtest.DB
	router chi.Router
	meter  *billing.Meter
	state  *configsync.State // the config of the harness's one data-plane node
	nodeID string
	// published records what the harness node was asked to publish (HTTP
	// publish); the node answers OK. The MQTT side is tested end to end in
	// cmd/aerie.
	published *publishLog
}

type publishLog struct {
	mu   sync.Mutex
	msgs []nodelink.Publish
}

// serve answers the node link's publish requests (OK) on srv.
func (l *publishLog) serve(srv *nodelink.Server) {
	srv.Handle(nodelink.OpPublish, func(_ context.Context, inst string, body json.RawMessage) (any, error) {
		var p nodelink.Publish
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, nodelink.Errorf(http.StatusBadRequest, "bad publish")
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.msgs = append(l.msgs, p)
		return nodelink.PublishResult{ID: p.ID}, nil
	})
}

func (l *publishLog) all() []nodelink.Publish {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]nodelink.Publish(nil), l.msgs...)
}

// operatorToken is the harness's admin token for /v1/admin.
const operatorToken = "operator-token-for-tests-0123456789"

var testPasswords = tenancy.PasswordParams{Memory: 1024, Iterations: 1, Parallelism: 1}

func newEnv(t *testing.T, limits ...ratelimit.LoginLimits) *env {
	t.Helper()
	return newEnvWith(t, func(d *api.Deps) {
		if len(limits) > 0 {
			d.LoginLimits = limits[0]
		}
	})
}

// newEnvWith is newEnv with the API's dependencies adjusted by opt (after
// the harness's generous rate limits are set).
func newEnvWith(t *testing.T, opt func(*api.Deps)) *env {
	t.Helper()
	loadSpec(t)
	db := pgtest.New(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	out := mailer.NewOutbox()
	svc := tenancy.NewService(db.Pool, log, tenancy.WithMailer(out), tenancy.WithPasswordParams(testPasswords), tenancy.WithPlans(billing.NewPlans(db.Pool)))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	feed := nodelink.NewFeed(svc, log)
	go feed.Run(ctx)
	// The node's end of the request path, in process as in `aerie serve`.
	pubs := &publishLog{}
	nodeSrv := nodelink.NewServer()
	pubs.serve(nodeSrv)
	local := &nodelink.Local{Server: nodeSrv}
	d := api.Deps{NodeAPI: local, Log: log, Tenancy: svc, DB: db.Pool, Billing: billing.NewService(db.Pool, nil, svc, log), Meter: billing.NewMeter(db.Pool, svc, log), Feed: feed, AdminToken: operatorToken}
	d.LoginLimits = ratelimit.LoginLimits{PerEmailBurst: 1000, PerEmailEvery: 1, PerAddrBurst: 1000, PerAddrEvery: 1}
	d.AbuseLimits = ratelimit.AbuseLimits{SignupsPerAddrBurst: 1000, SignupsPerAddrEvery: 1, InvitesPerOrgBurst: 1000, InvitesPerOrgEvery: 1,
		ResetsPerAddrBurst: 1000, ResetsPerAddrEvery: 1}
	opt(&d)
	r := api.NewRouter(d)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	// One live data-plane node following the config in process, as in
	// `aerie serve`, so instances get placed and turn running.
	node, _, err := svc.EnsureNode(ctx, "test-node", map[string]string{"mqtt": "mqtt://localhost:1883", "ws": "ws://localhost:8083/mqtt"})
	if err != nil {
		t.Fatal(err)
	}
	local.NodeID = node.ID
	state := configsync.NewState()
	client, err := configsync.NewClient(configsync.Options{Source: nodelink.LocalSource{Hub: api.NewHub(d), NodeID: node.ID}, State: state,
		Dir: t.TempDir(), Log: log, Endpoints: node.Endpoints})
	if err != nil {
		t.Fatal(err)
	}
	// Stop the client and wait for its last snapshot write before its
	// directory is removed (cleanups run last-registered first).
	done := make(chan struct{})
	go func() { client.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &env{t: t, srv: srv, svc: svc, outbox: out, db: db, router: r, state: state, nodeID: node.ID, meter: d.Meter, published: pubs}
}

// req describes one call.
type req struct {
	method, path, token string
	body                any               // marshalled to JSON unless raw is set
	raw                 []byte            // sent as is
	header              map[string]string // extra headers
	invalidRequest      bool              // the request deliberately breaks the spec: skip its validation
	noRoute             bool              // the path is deliberately not in the spec
}

// resp is a response, read whole.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r *resp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// problem decodes a problem+json body and checks its shape and status.
func (r *resp) problem(t testing.TB, status int, slug string) api.Problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	var p api.Problem
	r.decode(t, &p)
	if p.Status != status || p.Type != api.ProblemTypeBase+slug || p.Title == "" {
		t.Fatalf("problem %+v, want status %d type %s", p, status, slug)
	}
	if p.RequestID == "" || p.RequestID != r.header.Get("X-Request-Id") {
		t.Fatalf("problem request_id %q, header %q", p.RequestID, r.header.Get("X-Request-Id"))
	}
	return p
}

// do sends a request through the real server, validating the request and
// the response against openapi.yaml.
func (e *env) do(t testing.TB, q req) *resp {
	t.Helper()
	var body []byte
	switch {
	case q.raw != nil:
		body = q.raw
	case q.body != nil:
		var err error
		if body, err = json.Marshal(q.body); err != nil {
			t.Fatal(err)
		}
	}
	build := func(base string) *http.Request {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		r, err := http.NewRequest(q.method, base+q.path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			r.Header.Set("Content-Type", "application/json")
		}
		if q.token != "" {
			r.Header.Set("Authorization", "Bearer "+q.token)
		}
		for k, v := range q.header {
			r.Header.Set(k, v)
		}
		return r
	}
	_, router := loadSpec(t)
	ctx := context.Background()
	var in *openapi3filter.RequestValidationInput
	if !q.noRoute {
		vr := build("http://localhost:8080")
		route, params, err := router.FindRoute(vr)
		if err != nil {
			t.Fatalf("%s %s is not in openapi.yaml: %v", q.method, q.path, err)
		}
		in = &openapi3filter.RequestValidationInput{Request: vr, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if !q.invalidRequest {
			if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
				t.Fatalf("request %s %s breaks openapi.yaml: %v", q.method, q.path, err)
			}
		}
	}
	res, err := e.srv.Client().Do(build(e.srv.URL))
	if err != nil {
		t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	defer res.Body.Close()
	rb, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.Header.Get("X-Request-Id") == "" {
		t.Fatalf("%s %s: response has no X-Request-Id", q.method, q.path)
	}
	if in != nil {
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
			Body: io.NopCloser(bytes.NewReader(rb)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
		if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
			t.Fatalf("response to %s %s (%d %s) breaks openapi.yaml: %v", q.method, q.path, res.StatusCode, rb, err)
		}
	}
	return &resp{status: res.StatusCode, header: res.Header, body: rb}
}

// expect fails unless the response has the status.
func (r *resp) expect(t testing.TB, status int) *resp {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// session is the JSON of sign-up/login/refresh.
type session struct {
	User struct {
		ID            string `json:"id"`
		Email         string `json:"email"`
		EmailVerified bool   `json:"email_verified"`
	} `json:"user"`
	Org *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		Role string `json:"role"`
	} `json:"org"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
}

const password = "correct horse battery"

// signup creates a user with an org and returns its session.
func (e *env) signup(t testing.TB, email, org string) session {
	t.Helper()
	var s session
	e.do(t, req{method: "POST", path: "/v1/signup", body: map[string]string{"email": email, "password": password, "org_name": org}}).
		expect(t, http.StatusCreated).decode(t, &s)
	return s
}

type apiKey struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Prefix     string   `json:"prefix"`
	Scopes     []string `json:"scopes"`
	Secret     string   `json:"secret"`
	LastUsedAt *string  `json:"last_used_at"`
}

// createKey creates an API key in org with scopes.
func (e *env) createKey(t testing.TB, token, org, name string, scopes ...string) apiKey {
	t.Helper()
	var k apiKey
	e.do(t, req{method: "POST", path: "/v1/orgs/" + org + "/api-keys", token: token, body: map[string]any{"name": name, "scopes": scopes}}).
		expect(t, http.StatusCreated).decode(t, &k)
	return k
}

// mailedToken extracts token=… from the newest mail to addr.
func (e *env) mailedToken(t testing.TB, addr string) string {
	t.Helper()
	m, ok := e.outbox.Last(addr)
	if !ok {
		t.Fatalf("no mail to %s", addr)
	}
	_, after, ok := strings.Cut(m.Body, "token=")
	if !ok {
		t.Fatalf("mail to %s has no token: %q", addr, m.Body)
	}
	return strings.TrimSpace(after)
}

// instance is an instance as the API answers it.
type instance struct {
	ID, Name, Plan, Status string
	NodeID                 string `json:"node_id"`
	Endpoints              map[string]*string
	UsernameFormat         string `json:"username_format"`
}

// credential is a device credential as the API answers it.
type credential struct {
	ID, Username, Password string
	MQTTUsername           string `json:"mqtt_username"`
	Enabled                bool
}

// createInstance creates an instance and waits until the node runs it.
func (e *env) createInstance(t testing.TB, token, org, name string) instance {
	t.Helper()
	var in instance
	e.do(t, req{method: "POST", path: "/v1/orgs/" + org + "/instances", token: token, body: map[string]any{"name": name}}).
		expect(t, http.StatusCreated).decode(t, &in)
	deadline := time.Now().Add(10 * time.Second)
	for in.Status != "running" {
		if time.Now().After(deadline) {
			t.Fatalf("instance %s still %s", in.ID, in.Status)
		}
		time.Sleep(10 * time.Millisecond)
		e.do(t, req{method: "GET", path: "/v1/orgs/" + org + "/instances/" + in.ID, token: token}).expect(t, http.StatusOK).decode(t, &in)
	}
	return in
}

// createCredential creates one device credential.
func (e *env) createCredential(t testing.TB, token, org, inst, username string) credential {
	t.Helper()
	var c credential
	e.do(t, req{method: "POST", path: "/v1/orgs/" + org + "/instances/" + inst + "/credentials", token: token,
		body: map[string]any{"username": username}}).expect(t, http.StatusCreated).decode(t, &c)
	return c
}
