package sdk_test

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
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/internal/mailer"
	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/internal/ratelimit"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/sdk"
	"github.com/aeriemq/aerie/tenancy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// recorder notes the operationId of every request the SDK sends.
type recorder struct {
	next  http.RoundTripper
	match func(*http.Request) string
	mu    sync.Mutex
	seen  map[string]bool
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if op := r.match(req); op != "" {
		r.mu.Lock()
		r.seen[op] = true
		r.mu.Unlock()
	}
	return r.next.RoundTrip(req)
}

// serve starts the API (real Postgres, one in-process data-plane node)
// and returns its URL and a recorder of the operations called.
func serve(t *testing.T) (string, *recorder) {
	base, rec, _ := serveWithMail(t)
	return base, rec
}

const operatorToken = "operator-token-for-sdk-tests"

// serveWithMail is serve that also returns the mail outbox.
func serveWithMail(t *testing.T) (string, *recorder, *mailer.Outbox) {
	t.Helper()
	db := pgtest.New(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	outbox := mailer.NewOutbox()
	svc := tenancy.NewService(db.Pool, log, tenancy.WithMailer(outbox),
		tenancy.WithPasswordParams(tenancy.PasswordParams{Memory: 1024, Iterations: 1, Parallelism: 1}), tenancy.WithPlans(billing.NewPlans(db.Pool)))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	feed := nodelink.NewFeed(svc, log)
	go feed.Run(ctx)
	// The node answers HTTP publishes OK, in process as in `aerie serve`.
	nodeSrv := nodelink.NewServer()
	nodeSrv.Handle(nodelink.OpPublish, func(_ context.Context, _ string, body json.RawMessage) (any, error) {
		var p nodelink.Publish
		err := json.Unmarshal(body, &p)
		return nodelink.PublishResult{ID: p.ID}, err
	})
	local := &nodelink.Local{Server: nodeSrv}
	deps := api.Deps{NodeAPI: local, Log: log, Tenancy: svc, DB: db.Pool, Billing: billing.NewService(db.Pool, nil, svc, log), Meter: billing.NewMeter(db.Pool, svc, log), Feed: feed, AdminToken: operatorToken,
		LoginLimits: ratelimit.LoginLimits{PerEmailBurst: 1000, PerEmailEvery: 1, PerAddrBurst: 1000, PerAddrEvery: 1}}
	srv := httptest.NewServer(api.NewRouter(deps))
	t.Cleanup(srv.Close)
	node, _, err := svc.EnsureNode(ctx, "sdk-node", map[string]string{"mqtt": "mqtt://localhost:1883"})
	if err != nil {
		t.Fatal(err)
	}
	local.NodeID = node.ID
	client, err := configsync.NewClient(configsync.Options{Source: nodelink.LocalSource{Hub: api.NewHub(deps), NodeID: node.ID}, State: configsync.NewState(),
		Dir: t.TempDir(), Log: log, Endpoints: node.Endpoints})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { client.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	doc, err := openapi3.NewLoader().LoadFromFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{next: http.DefaultTransport, seen: map[string]bool{}, match: func(r *http.Request) string {
		u := *r.URL
		u.Host, u.Scheme = "localhost:8080", "http"
		rr := r.Clone(context.Background())
		rr.URL, rr.Host = &u, u.Host
		route, _, err := router.FindRoute(rr)
		if err != nil {
			return ""
		}
		return route.Operation.OperationID
	}}
	return srv.URL, rec, outbox
}

func must(t *testing.T, resp interface{ StatusCode() int }, err error) {
	t.Helper()
	if err := sdk.Check(resp, err); err != nil {
		t.Fatal(err)
	}
}

// TestSDKAgainstTheAPI calls the main operations through the SDK against
// the real API, with the hand-written layer: login and API-key auth,
// problem errors, ETag/If-Match/If-None-Match, pagination.
func sdkMainOperations(t *testing.T, seen map[string]bool) {
	base, rec := serve(t)
	ctx := context.Background()
	hc := &http.Client{Transport: rec, Timeout: 30 * time.Second}
	anon, err := sdk.NewClientWithResponses(base, sdk.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	su, err := anon.SignupWithResponse(ctx, nil, sdk.SignupJSONRequestBody{Email: "sdk@example.com", Password: "correct horse battery", OrgName: "SDK"})
	must(t, su, err)
	org := su.JSON201.Org.Id

	// Login auth.
	c, err := sdk.New(ctx, sdk.Options{BaseURL: base, Email: "sdk@example.com", Password: "correct horse battery", HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	me, err := c.GetMeWithResponse(ctx)
	must(t, me, err)
	if me.JSON200.Email != "sdk@example.com" {
		t.Fatalf("me %+v", me.JSON200)
	}
	if _, err := sdk.New(ctx, sdk.Options{BaseURL: base, Email: "sdk@example.com", Password: "wrong password!", HTTPClient: hc}); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	orgs, err := c.ListOrgsWithResponse(ctx, nil)
	must(t, orgs, err)
	o, err := c.GetOrgWithResponse(ctx, org)
	must(t, o, err)
	plans, err := c.ListPlansWithResponse(ctx)
	must(t, plans, err)
	mem, err := c.ListMembersWithResponse(ctx, org, nil)
	must(t, mem, err)

	// API-key auth.
	k, err := c.CreateAPIKeyWithResponse(ctx, org, nil, sdk.CreateAPIKeyJSONRequestBody{Name: "ci", Scopes: []sdk.Scope{sdk.ScopeAdmin}})
	must(t, k, err)
	kc, err := sdk.New(ctx, sdk.Options{BaseURL: base, APIKey: k.JSON201.Secret, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	dup, err := kc.CreateAPIKeyWithResponse(ctx, org, nil, sdk.CreateAPIKeyJSONRequestBody{Name: "ci", Scopes: []sdk.Scope{sdk.ScopeRead}})
	if err := sdk.Check(dup, err); !sdk.IsConflict(err) {
		t.Fatalf("duplicate key name: %v", err)
	}
	name := "ci"
	keys, err := kc.ListAPIKeysWithResponse(ctx, org, &sdk.ListAPIKeysParams{Name: &name})
	must(t, keys, err)
	gk, err := kc.GetAPIKeyWithResponse(ctx, org, k.JSON201.Id)
	must(t, gk, err)

	// Instances, problem errors, ETags.
	in, err := kc.CreateInstanceWithResponse(ctx, org, nil, sdk.CreateInstanceJSONRequestBody{Name: "home"})
	must(t, in, err)
	iid := in.JSON201.Id
	again, err := kc.CreateInstanceWithResponse(ctx, org, nil, sdk.CreateInstanceJSONRequestBody{Name: "home"})
	err = sdk.Check(again, err)
	var perr *sdk.Error
	if !sdk.IsConflict(err) || !errorsAs(err, &perr) || perr.Type != "https://aerie.dev/problems/conflict" || perr.RequestID == "" {
		t.Fatalf("duplicate instance: %#v", err)
	}
	g, err := kc.GetInstanceWithResponse(ctx, org, "i-nope")
	if err := sdk.Check(g, err); !sdk.IsNotFound(err) {
		t.Fatalf("missing instance: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		g, err = kc.GetInstanceWithResponse(ctx, org, iid)
		must(t, g, err)
		if g.JSON200.Status == sdk.InstanceStatusRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance still %s", g.JSON200.Status)
		}
	}
	tag := sdk.ETag(g)
	stale := `"stale"`
	anonTrue := true
	up, err := kc.UpdateInstanceWithResponse(ctx, org, iid, &sdk.UpdateInstanceParams{IfMatch: &stale}, sdk.UpdateInstanceJSONRequestBody{AllowAnonymous: &anonTrue})
	if err := sdk.Check(up, err); !sdk.IsPreconditionFailed(err) {
		t.Fatalf("stale If-Match: %v", err)
	}
	up, err = kc.UpdateInstanceWithResponse(ctx, org, iid, nil, sdk.UpdateInstanceJSONRequestBody{DeletionProtection: new(false)}, sdk.WithIfMatch(tag))
	must(t, up, err)
	list, err := kc.ListInstancesWithResponse(ctx, org, nil)
	must(t, list, err)
	nm, err := kc.ListInstancesWithResponse(ctx, org, nil, sdk.WithIfNoneMatch(sdk.ETag(list)))
	if err := sdk.Check(nm, err); err != nil || nm.StatusCode() != http.StatusNotModified || len(nm.Body) != 0 {
		t.Fatalf("If-None-Match: %v %d", err, nm.StatusCode())
	}

	// Credentials: bulk, pagination, get/patch/rotate.
	var bulk bytes.Buffer
	bulk.WriteString(`{"credentials":[`)
	for i := 0; i < 250; i++ {
		if i > 0 {
			bulk.WriteByte(',')
		}
		bulk.WriteString(`{"username":"d-` + string(rune('a'+i/26%26)) + string(rune('a'+i%26)) + `-` + itoa(i) + `"}`)
	}
	bulk.WriteString(`]}`)
	cr, err := kc.CreateCredentialsWithBodyWithResponse(ctx, org, iid, nil, "application/json", &bulk)
	must(t, cr, err)
	all, err := sdk.Collect(ctx, kc.CredentialsPages(org, iid))
	if err != nil || len(all) != 250 {
		t.Fatalf("paged credentials: %d %v", len(all), err)
	}
	cid := all[0].Id
	gc, err := kc.GetCredentialWithResponse(ctx, org, iid, cid)
	must(t, gc, err)
	off := false
	uc, err := kc.UpdateCredentialWithResponse(ctx, org, iid, cid, nil, sdk.UpdateCredentialJSONRequestBody{Enabled: &off}, sdk.WithIfMatch(sdk.ETag(gc)))
	must(t, uc, err)
	rot, err := kc.RotateCredentialWithResponse(ctx, org, iid, cid, nil, sdk.RotateCredentialJSONRequestBody{})
	must(t, rot, err)
	if rot.JSON200.Password == nil || len(*rot.JSON200.Password) < 22 {
		t.Fatalf("rotate: %+v", rot.JSON200)
	}
	pw := "vault-password-123"
	rot, err = kc.RotateCredentialWithResponse(ctx, org, iid, cid, nil, sdk.RotateCredentialJSONRequestBody{Password: &pw})
	must(t, rot, err)
	if rot.JSON200.Password != nil || rot.JSON200.PasswordSource != "supplied" {
		t.Fatalf("rotate to supplied: %+v", rot.JSON200)
	}

	// ACL rules.
	ar, err := kc.CreateACLRuleWithResponse(ctx, org, iid, nil, sdk.CreateACLRuleJSONRequestBody{Effect: "deny", Action: "all", Filter: "secret/#", Position: new(0)})
	must(t, ar, err)
	ga, err := kc.GetACLRuleWithResponse(ctx, org, iid, ar.JSON201.Id, nil)
	must(t, ga, err)
	if ga.JSON200.Position != 0 {
		t.Fatalf("rule position %d", ga.JSON200.Position)
	}
	nf := "secret/+"
	ua, err := kc.UpdateACLRuleWithResponse(ctx, org, iid, ar.JSON201.Id, nil, sdk.UpdateACLRuleJSONRequestBody{Filter: &nf, Position: new(1)}, sdk.WithIfMatch(sdk.ETag(ga)))
	must(t, ua, err)
	rp, err := kc.ReplaceACLRulesWithBodyWithResponse(ctx, org, iid, nil, "application/json",
		strings.NewReader(`{"rules":[{"effect":"allow","action":"all","filter":"#"},{"effect":"deny","action":"publish","filter":"x/#"}]}`))
	must(t, rp, err)
	rules, err := sdk.Collect(ctx, kc.ACLRulesPages(org, iid))
	if err != nil || len(rules) != 2 || rules[1].Filter != "x/#" {
		t.Fatalf("rules %+v %v", rules, err)
	}
	da, err := kc.DeleteACLRuleWithResponse(ctx, org, iid, rules[1].Id, nil)
	must(t, da, err)
	// Topics: provisioned, then read by a consumer group. This harness runs
	// no data-plane node, so the routes that read the node (its store, its
	// live clients and sessions) answer 503 (cmd/aerie's e2e tests and the
	// console's browser tests read real ones).
	ct, err := kc.CreateTopicWithResponse(ctx, org, iid, nil, sdk.CreateTopicJSONRequestBody{Name: "telemetry", Filter: "fleet/+/telemetry"})
	must(t, ct, err)
	tid := ct.JSON201.Id
	lt, err := kc.ListTopicsWithResponse(ctx, org, iid, nil)
	must(t, lt, err)
	if len(lt.JSON200.Data) != 1 || lt.JSON200.Data[0].Filter != "fleet/+/telemetry" {
		t.Fatalf("topics %+v", lt.JSON200.Data)
	}
	gt, err := kc.GetTopicWithResponse(ctx, org, iid, tid)
	must(t, gt, err)
	maxQoS := 1
	ut, err := kc.UpdateTopicWithResponse(ctx, org, iid, tid, nil, sdk.UpdateTopicJSONRequestBody{MaxQos: &maxQoS})
	must(t, ut, err)
	if ut.JSON200.MaxQos != 1 {
		t.Fatalf("topic max_qos %d", ut.JSON200.MaxQos)
	}
	pts, err := kc.PutTopicSettingsWithResponse(ctx, org, iid, nil, sdk.PutTopicSettingsJSONRequestBody{StrictTopics: true})
	must(t, pts, err)
	gts, err := kc.GetTopicSettingsWithResponse(ctx, org, iid)
	must(t, gts, err)
	if !gts.JSON200.StrictTopics {
		t.Fatal("strict_topics not kept")
	}
	group := "app"
	for name, call := range map[string]func() (interface{ StatusCode() int }, error){
		"getTopicStorage": func() (interface{ StatusCode() int }, error) {
			return kc.GetTopicStorageWithResponse(ctx, org, iid, tid)
		},
		"pollTopicMessages": func() (interface{ StatusCode() int }, error) {
			return kc.PollTopicMessagesWithResponse(ctx, org, iid, tid, &sdk.PollTopicMessagesParams{Group: &group})
		},
		"listTopicGroups": func() (interface{ StatusCode() int }, error) {
			return kc.ListTopicGroupsWithResponse(ctx, org, iid, tid)
		},
		"listClients": func() (interface{ StatusCode() int }, error) { return kc.ListClientsWithResponse(ctx, org, iid, nil) },
		"disconnectClient": func() (interface{ StatusCode() int }, error) {
			return kc.DisconnectClientWithResponse(ctx, org, iid, "dev-1")
		},
		"listSessions": func() (interface{ StatusCode() int }, error) { return kc.ListSessionsWithResponse(ctx, org, iid, nil) },
		"discardSession": func() (interface{ StatusCode() int }, error) {
			return kc.DiscardSessionWithResponse(ctx, org, iid, "dev-1")
		},
		"ackTopicMessages": func() (interface{ StatusCode() int }, error) {
			return kc.AckTopicMessagesWithResponse(ctx, org, iid, tid, sdk.AckTopicMessagesJSONRequestBody{Group: group, Offsets: []int{1}})
		},
	} {
		r, err := call()
		if err != nil || r.StatusCode() != http.StatusServiceUnavailable {
			t.Fatalf("%s without a node: %v %v, want 503", name, r, err)
		}
	}
	dt, err := kc.DeleteTopicWithResponse(ctx, org, iid, tid, nil)
	must(t, dt, err)
	sdkRuleOperations(ctx, t, kc, org, iid)

	tok, err := kc.IssueDeviceTokenWithResponse(ctx, org, iid, nil, sdk.IssueDeviceTokenJSONRequestBody{TtlSeconds: 600,
		Resources: []sdk.TokenResource{{Filter: "a/#", Actions: []sdk.TokenResourceActions{"publish"}}}})
	must(t, tok, err)
	toks, err := kc.ListDeviceTokensWithResponse(ctx, org, iid, nil)
	must(t, toks, err)
	if len(toks.JSON200.Data) != 1 {
		t.Fatalf("device tokens %+v", toks.JSON200.Data)
	}
	rt, err := kc.RevokeDeviceTokenWithResponse(ctx, org, iid, nil, sdk.RevokeDeviceTokenJSONRequestBody{Jti: toks.JSON200.Data[0].Jti})
	must(t, rt, err)
	met, err := kc.GetInstanceMetricsWithResponse(ctx, org, iid, nil)
	must(t, met, err)
	sub, err := kc.GetSubscriptionWithResponse(ctx, org)
	must(t, sub, err)
	ps, err := kc.PutSubscriptionWithResponse(ctx, org, nil, sdk.PutSubscriptionJSONRequestBody{Plan: "developer"})
	must(t, ps, err)
	use, err := kc.GetUsageWithResponse(ctx, org, nil)
	must(t, use, err)
	inv, err := kc.ListInvoicesWithResponse(ctx, org)
	must(t, inv, err)
	upc, err := kc.UpcomingInvoiceWithResponse(ctx, org)
	must(t, upc, err)
	newName := "SDK 2"
	uo, err := kc.UpdateOrgWithResponse(ctx, org, nil, sdk.UpdateOrgJSONRequestBody{Name: &newName})
	must(t, uo, err)
	gm, err := kc.GetMemberWithResponse(ctx, org, me.JSON200.Id)
	must(t, gm, err)
	ref, err := anon.RefreshWithResponse(ctx, nil, sdk.RefreshJSONRequestBody{RefreshToken: c.Session().RefreshToken})
	must(t, ref, err)
	q, err := kc.GetQuotasWithResponse(ctx, org, iid)
	must(t, q, err)
	sq, err := kc.SetQuotasWithResponse(ctx, org, iid, nil, sdk.SetQuotasJSONRequestBody{MaxConnections: new(10)})
	must(t, sq, err)
	au, err := kc.ListAuditEventsWithResponse(ctx, org, nil)
	must(t, au, err)
	dc, err := kc.DeleteCredentialWithResponse(ctx, org, iid, cid, nil)
	must(t, dc, err)
	di, err := kc.DeleteInstanceWithResponse(ctx, org, iid, nil)
	must(t, di, err)
	rk, err := c.RevokeAPIKeyWithResponse(ctx, org, k.JSON201.Id)
	must(t, rk, err)
	lo, err := c.LogoutWithResponse(ctx, nil, sdk.LogoutJSONRequestBody{RefreshToken: ref.JSON200.RefreshToken})
	must(t, lo, err)

	main := []string{"signup", "login", "getMe", "listOrgs", "getOrg", "listPlans", "listMembers", "createAPIKey", "listAPIKeys", "getAPIKey",
		"revokeAPIKey", "createInstance", "getInstance", "updateInstance", "listInstances", "deleteInstance", "createCredentials",
		"listCredentials", "getCredential", "updateCredential", "rotateCredential", "deleteCredential", "createACLRule", "getACLRule",
		"updateACLRule", "replaceACLRules", "listACLRules", "deleteACLRule", "getQuotas", "setQuotas", "listAuditEvents", "logout",
		"issueDeviceToken", "listDeviceTokens", "revokeDeviceToken", "getInstanceMetrics", "getSubscription", "getUsage", "listInvoices",
		"upcomingInvoice", "updateOrg", "getMember", "refresh", "putSubscription"}
	for _, op := range main {
		if !rec.seen[op] {
			t.Errorf("operation %s was not called through the SDK", op)
		}
	}
	for op := range rec.seen {
		seen[op] = true
	}
}

func errorsAs(err error, target **sdk.Error) bool {
	e, ok := err.(*sdk.Error)
	if ok {
		*target = e
	}
	return ok
}

func itoa(i int) string {
	const d = "0123456789"
	if i < 10 {
		return d[i : i+1]
	}
	return itoa(i/10) + d[i%10:i%10+1]
}

// TestRetriesReuseTheIdempotencyKey: a 503 is retried with the same
// Idempotency-Key and body.
func TestRetriesReuseTheIdempotencyKey(t *testing.T) {
	var mu sync.Mutex
	var keys, bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		keys, bodies = append(keys, r.Header.Get("Idempotency-Key")), append(bodies, string(b))
		n := len(keys)
		mu.Unlock()
		if n < 3 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"type":"https://aerie.dev/problems/unavailable","title":"Unavailable","status":503}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"i-1","name":"x"}`))
	}))
	defer srv.Close()
	c, err := sdk.New(context.Background(), sdk.Options{BaseURL: srv.URL, APIKey: "aer_x_y", RetryBase: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.CreateInstanceWithResponse(context.Background(), "o-1", nil, sdk.CreateInstanceJSONRequestBody{Name: "x"})
	if err := sdk.Check(r, err); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] || bodies[0] != bodies[2] || bodies[0] == "" {
		t.Fatalf("attempts %d keys %q bodies %q", len(keys), keys, bodies)
	}
	// Without retries the 503 surfaces as an *sdk.Error.
	keys = nil
	c, _ = sdk.New(context.Background(), sdk.Options{BaseURL: srv.URL, APIKey: "aer_x_y", MaxRetries: -1})
	r, err = c.CreateInstanceWithResponse(context.Background(), "o-1", nil, sdk.CreateInstanceJSONRequestBody{Name: "x"})
	if err := sdk.Check(r, err); err == nil || !strings.Contains(err.Error(), "503") || len(keys) != 1 {
		t.Fatalf("no-retry: %v (%d attempts)", err, len(keys))
	}
}

// mailedToken is the token=… of the newest mail to addr.
func mailedToken(t *testing.T, o *mailer.Outbox, addr string) string {
	t.Helper()
	m, ok := o.Last(addr)
	if !ok {
		t.Fatalf("no mail to %s", addr)
	}
	_, after, ok := strings.Cut(m.Body, "token=")
	if !ok {
		t.Fatalf("mail to %s has no token", addr)
	}
	return strings.Fields(after)[0]
}

// TestSDKAccountMembersAndOperator calls the account, membership, publish
// and operator operations through the SDK.
func sdkAccountAndOperatorOperations(t *testing.T, seen map[string]bool) {
	base, rec, outbox := serveWithMail(t)
	ctx := context.Background()
	hc := &http.Client{Transport: rec, Timeout: 30 * time.Second}
	anon, err := sdk.NewClientWithResponses(base, sdk.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	const pw = "correct horse battery"
	su, err := anon.SignupWithResponse(ctx, nil, sdk.SignupJSONRequestBody{Email: "owner@example.com", Password: pw, OrgName: "O"})
	must(t, su, err)
	org := su.JSON201.Org.Id
	ve, err := anon.VerifyEmailWithResponse(ctx, nil, sdk.VerifyEmailJSONRequestBody{Token: mailedToken(t, outbox, "owner@example.com")})
	must(t, ve, err)
	rr, err := anon.RequestPasswordResetWithResponse(ctx, nil, sdk.RequestPasswordResetJSONRequestBody{Email: "owner@example.com"})
	must(t, rr, err)
	cr, err := anon.ConfirmPasswordResetWithResponse(ctx, nil, sdk.ConfirmPasswordResetJSONRequestBody{Token: mailedToken(t, outbox, "owner@example.com"), Password: pw + "!"})
	must(t, cr, err)
	owner, err := sdk.New(ctx, sdk.Options{BaseURL: base, Email: "owner@example.com", Password: pw + "!", HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}

	// Members: invite, accept, change role, remove.
	su2, err := anon.SignupWithResponse(ctx, nil, sdk.SignupJSONRequestBody{Email: "second@example.com", Password: pw, OrgName: "S"})
	must(t, su2, err)
	inv, err := owner.InviteMemberWithResponse(ctx, org, nil, sdk.InviteMemberJSONRequestBody{Email: "second@example.com", Role: sdk.RoleViewer})
	must(t, inv, err)
	second, err := sdk.New(ctx, sdk.Options{BaseURL: base, Email: "second@example.com", Password: pw, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := second.AcceptInvitationWithResponse(ctx, nil, sdk.AcceptInvitationJSONRequestBody{Token: mailedToken(t, outbox, "second@example.com")})
	must(t, ac, err)
	um, err := owner.UpdateMemberWithResponse(ctx, org, su2.JSON201.User.Id, nil, sdk.UpdateMemberJSONRequestBody{Role: sdk.RoleAdmin})
	must(t, um, err)
	rm, err := owner.RemoveMemberWithResponse(ctx, org, su2.JSON201.User.Id)
	must(t, rm, err)

	// HTTP publish into a running instance.
	in, err := owner.CreateInstanceWithResponse(ctx, org, nil, sdk.CreateInstanceJSONRequestBody{Name: "p"})
	must(t, in, err)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		g, err := owner.GetInstanceWithResponse(ctx, org, in.JSON201.Id)
		must(t, g, err)
		if g.JSON200.Status == sdk.InstanceStatusRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("instance not running")
		}
	}
	pub, err := owner.PublishMessageWithResponse(ctx, org, in.JSON201.Id, nil, sdk.PublishMessageJSONRequestBody{Topic: "a/b", Payload: "hi"})
	must(t, pub, err)

	// Operator API with the admin token.
	op, err := sdk.New(ctx, sdk.Options{BaseURL: base, APIKey: operatorToken, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	cn, err := op.CreateNodeWithResponse(ctx, sdk.CreateNodeJSONRequestBody{Name: "edge-9"})
	must(t, cn, err)
	ln, err := op.ListNodesWithResponse(ctx)
	must(t, ln, err)
	var nodeID string
	for _, n := range ln.JSON200.Data {
		if n.Name == "edge-9" {
			nodeID = n.Id
		}
	}
	rn, err := op.RevokeNodeWithResponse(ctx, nodeID)
	must(t, rn, err)

	// Invoices exist once a period closes: a missing one is a 404 problem.
	gi, err := owner.GetInvoiceWithResponse(ctx, org, "inv-none")
	if err := sdk.Check(gi, err); !sdk.IsNotFound(err) {
		t.Fatalf("get invoice: %v", err)
	}
	pi, err := owner.PrintInvoiceWithResponse(ctx, org, "inv-none")
	if err := sdk.Check(pi, err); !sdk.IsNotFound(err) {
		t.Fatalf("print invoice: %v", err)
	}
	mp, err := op.MarkInvoicePaidWithResponse(ctx, org, "inv-none")
	if err := sdk.Check(mp, err); !sdk.IsNotFound(err) {
		t.Fatalf("mark invoice paid: %v", err)
	}

	for _, o := range []string{"verifyEmail", "requestPasswordReset", "confirmPasswordReset", "inviteMember", "acceptInvitation", "updateMember",
		"removeMember", "publishMessage", "createNode", "listNodes", "revokeNode", "getInvoice", "printInvoice", "markInvoicePaid"} {
		if !rec.seen[o] {
			t.Errorf("operation %s was not called through the SDK", o)
		}
	}
	for op := range rec.seen {
		seen[op] = true
	}
}

// TestEveryOperationCalledThroughTheSDK calls every operation of
// openapi.yaml through the SDK against the real API (Postgres, config
// feed, one in-process node): the main ones with their real effects and
// checks, the invoice ones (which need a closed billing period) on a
// missing invoice, answered with a 404 problem.
func TestEveryOperationCalledThroughTheSDK(t *testing.T) {
	seen := map[string]bool{}
	t.Run("orgs, keys, instances, credentials, ACL rules, tokens, billing", func(t *testing.T) { sdkMainOperations(t, seen) })
	t.Run("account, members, publish, operator, invoices", func(t *testing.T) { sdkAccountAndOperatorOperations(t, seen) })
	doc, err := openapi3.NewLoader().LoadFromFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			n++
			if !seen[op.OperationID] {
				t.Errorf("operation %s was not called through the SDK", op.OperationID)
			}
		}
	}
	t.Logf("%d of %d operations called through the SDK", len(seen), n)
}

// sdkRuleOperations drives the forwarding rules through the SDK; the
// routes that read the node answer 503 here (no node in this harness).
func sdkRuleOperations(ctx context.Context, t *testing.T, kc *sdk.API, org, iid string) {
	t.Helper()
	url := "https://example.com/hook"
	typ := sdk.RuleSinkInputTypeWebhook
	cr, err := kc.CreateRuleWithResponse(ctx, org, iid, nil, sdk.CreateRuleJSONRequestBody{Name: "hook", Filter: "fleet/+/telemetry",
		Sink: sdk.RuleSinkInput{Type: &typ, Url: &url}})
	must(t, cr, err)
	if cr.JSON201.Secret == nil || !strings.HasPrefix(*cr.JSON201.Secret, cr.JSON201.SecretPrefix) || cr.JSON201.Sink.Mode != sdk.RuleSinkModeStructured {
		t.Fatalf("created rule %+v", cr.JSON201)
	}
	rid := cr.JSON201.Id
	lr, err := kc.ListRulesWithResponse(ctx, org, iid, nil)
	must(t, lr, err)
	if len(lr.JSON200.Data) != 1 || lr.JSON200.Data[0].Secret != nil {
		t.Fatalf("rules %+v", lr.JSON200.Data)
	}
	gr, err := kc.GetRuleWithResponse(ctx, org, iid, rid)
	must(t, gr, err)
	mode := sdk.RuleSinkInputModeBinary
	ur, err := kc.UpdateRuleWithResponse(ctx, org, iid, rid, nil, sdk.UpdateRuleJSONRequestBody{Sink: &sdk.RuleSinkInput{Mode: &mode}})
	must(t, ur, err)
	if ur.JSON200.Sink.Mode != sdk.RuleSinkModeBinary || ur.JSON200.Sink.Url != url {
		t.Fatalf("updated rule %+v", ur.JSON200.Sink)
	}
	pr, err := kc.PauseRuleWithResponse(ctx, org, iid, rid, nil)
	must(t, pr, err)
	rr, err := kc.ResumeRuleWithResponse(ctx, org, iid, rid, nil)
	must(t, rr, err)
	if !pr.JSON200.Paused || rr.JSON200.Paused {
		t.Fatalf("pause/resume: %v %v", pr.JSON200.Paused, rr.JSON200.Paused)
	}
	for name, call := range map[string]func() (interface{ StatusCode() int }, error){
		"getRuleStatus": func() (interface{ StatusCode() int }, error) { return kc.GetRuleStatusWithResponse(ctx, org, iid, rid) },
		"listDeadLetters": func() (interface{ StatusCode() int }, error) {
			return kc.ListDeadLettersWithResponse(ctx, org, iid, rid, nil)
		},
		"replayDeadLetters": func() (interface{ StatusCode() int }, error) {
			return kc.ReplayDeadLettersWithResponse(ctx, org, iid, rid)
		},
		"purgeDeadLetters": func() (interface{ StatusCode() int }, error) {
			return kc.PurgeDeadLettersWithResponse(ctx, org, iid, rid)
		},
	} {
		r, err := call()
		if err != nil || r.StatusCode() != http.StatusServiceUnavailable {
			t.Fatalf("%s without a node: %v %v, want 503", name, r, err)
		}
	}
	dr, err := kc.DeleteRuleWithResponse(ctx, org, iid, rid, nil)
	must(t, dr, err)
}
