package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/golang-jwt/jwt/v5"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/internal/ratelimit"
	"github.com/aeriemq/aerie/tenancy"
)

// orgRoute is one route under /v1/orgs/{org_id} as the router serves it.
type orgRoute struct{ method, pattern string }

// orgRoutes walks the router, so every route added later is covered.
func orgRoutes(t *testing.T, e *env) []orgRoute {
	t.Helper()
	var out []orgRoute
	_ = chi.Walk(e.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if strings.HasPrefix(route, "/v1/orgs/{org_id}") {
			out = append(out, orgRoute{method, strings.TrimSuffix(route, "/")})
		}
		return nil
	})
	if len(out) < 10 {
		t.Fatalf("found only %d org routes", len(out))
	}
	return out
}

// sampleBodies are valid bodies for the org routes that take one. A new
// route with a body must add its sample here (the isolation test says so).
var sampleBodies = map[string]any{
	"PATCH /v1/orgs/{org_id}":                                                            map[string]any{"name": "renamed"},
	"PATCH /v1/orgs/{org_id}/members/{user_id}":                                          map[string]any{"role": "viewer"},
	"POST /v1/orgs/{org_id}/invitations":                                                 map[string]any{"email": "x@example.com", "role": "viewer"},
	"POST /v1/orgs/{org_id}/api-keys":                                                    map[string]any{"name": "k", "scopes": []string{"read"}},
	"PUT /v1/orgs/{org_id}/subscription":                                                 map[string]any{"plan": "developer"},
	"POST /v1/orgs/{org_id}/instances":                                                   map[string]any{"name": "intruder"},
	"PATCH /v1/orgs/{org_id}/instances/{instance_id}":                                    map[string]any{"status": "suspended"},
	"POST /v1/orgs/{org_id}/instances/{instance_id}/credentials":                         map[string]any{"username": "intruder"},
	"PATCH /v1/orgs/{org_id}/instances/{instance_id}/credentials/{credential_id}":        map[string]any{"enabled": false},
	"POST /v1/orgs/{org_id}/instances/{instance_id}/credentials/{credential_id}/rotate":  map[string]any{},
	"POST /v1/orgs/{org_id}/instances/{instance_id}/acl-rules":                           map[string]any{"effect": "deny", "action": "all", "filter": "#"},
	"PUT /v1/orgs/{org_id}/instances/{instance_id}/acl-rules":                            map[string]any{"rules": []map[string]any{{"effect": "allow", "action": "all", "filter": "#"}}},
	"PATCH /v1/orgs/{org_id}/instances/{instance_id}/acl-rules/{rule_id}":                map[string]any{"filter": "a/#"},
	"PUT /v1/orgs/{org_id}/instances/{instance_id}/quotas":                               map[string]any{"max_connections": 1},
	"POST /v1/orgs/{org_id}/instances/{instance_id}/tokens":                              map[string]any{"resources": []any{map[string]any{"filter": "#", "actions": []string{"publish"}}}, "ttl_seconds": 60},
	"POST /v1/orgs/{org_id}/instances/{instance_id}/tokens/revoke":                       map[string]any{"jti": "x"},
	"POST /v1/orgs/{org_id}/instances/{instance_id}/publish":                             map[string]any{"topic": "b/cmd", "payload": "intruder"},
	"POST /v1/orgs/{org_id}/instances/{instance_id}/topics":                              map[string]any{"name": "intruder", "filter": "b/#"},
	"PATCH /v1/orgs/{org_id}/instances/{instance_id}/topics/{topic_id}":                  map[string]any{"retention_seconds": 1},
	"PUT /v1/orgs/{org_id}/instances/{instance_id}/topic-settings":                       map[string]any{"strict_topics": true},
	"POST /v1/orgs/{org_id}/instances/{instance_id}/topics/{topic_id}/messages/ack":      map[string]any{"group": "g", "offsets": []int{1}},
	"POST /v1/orgs/{org_id}/instances/{instance_id}/rules":                               map[string]any{"name": "intruder", "filter": "b/#", "sink": map[string]any{"type": "webhook", "url": "https://example.com/hook"}},
	"PATCH /v1/orgs/{org_id}/instances/{instance_id}/rules/{rule_id}":                    map[string]any{"paused": true},
	"POST /v1/orgs/{org_id}/instances/{instance_id}/rules/{rule_id}/pause":               map[string]any{},
	"POST /v1/orgs/{org_id}/instances/{instance_id}/rules/{rule_id}/resume":              map[string]any{},
	"POST /v1/orgs/{org_id}/instances/{instance_id}/rules/{rule_id}/dead-letters/replay": map[string]any{},
}

// fill substitutes the path parameters with IDs that exist in the target org.
func fill(pattern string, ids map[string]string) string {
	for k, v := range ids {
		pattern = strings.ReplaceAll(pattern, "{"+k+"}", v)
	}
	return pattern
}

// TestOrgIsolation: a user or an API key of org A gets 404 on every org-B
// path the API has, and nothing of B changes.
func TestOrgIsolation(t *testing.T) {
	e := newEnv(t)
	a := e.signup(t, "a@example.com", "A")
	b := e.signup(t, "b@example.com", "B")
	aKey := e.createKey(t, a.AccessToken, a.Org.ID, "a-admin", "admin")
	bKey := e.createKey(t, b.AccessToken, b.Org.ID, "b-admin", "admin")
	bInst := e.createInstance(t, b.AccessToken, b.Org.ID, "b-site")
	bCred := e.createCredential(t, b.AccessToken, b.Org.ID, bInst.ID, "b-dev")
	var bRule struct{ ID string }
	e.do(t, req{method: "POST", path: "/v1/orgs/" + b.Org.ID + "/instances/" + bInst.ID + "/acl-rules", token: b.AccessToken,
		body: map[string]any{"effect": "allow", "action": "publish", "filter": "b/#"}}).expect(t, http.StatusCreated).decode(t, &bRule)
	var bTopic struct{ ID string }
	e.do(t, req{method: "POST", path: "/v1/orgs/" + b.Org.ID + "/instances/" + bInst.ID + "/topics", token: b.AccessToken,
		body: map[string]any{"name": "b-telemetry", "filter": "b/+/telemetry"}}).expect(t, http.StatusCreated).decode(t, &bTopic)
	var bTok struct{ JTI string }
	e.do(t, req{method: "POST", path: "/v1/orgs/" + b.Org.ID + "/instances/" + bInst.ID + "/tokens", token: b.AccessToken,
		body: map[string]any{"resources": []any{map[string]any{"filter": "b/#", "actions": []string{"publish"}}}, "ttl_seconds": 600}}).expect(t, http.StatusCreated).decode(t, &bTok)
	sampleBodies["POST /v1/orgs/{org_id}/instances/{instance_id}/tokens/revoke"] = map[string]any{"jti": bTok.JTI}
	bIDs := map[string]string{"org_id": b.Org.ID, "user_id": b.User.ID, "key_id": bKey.ID, "instance_id": bInst.ID,
		"credential_id": bCred.ID, "rule_id": bRule.ID, "topic_id": bTopic.ID}

	callers := []struct{ name, token string }{{"user of A", a.AccessToken}, {"api key of A", aKey.Secret}}
	for _, c := range callers {
		for _, r := range orgRoutes(t, e) {
			t.Run(c.name+"/"+r.method+" "+r.pattern, func(t *testing.T) {
				q := req{method: r.method, path: fill(r.pattern, bIDs), token: c.token}
				if r.method == "POST" || r.method == "PATCH" || r.method == "PUT" {
					body, ok := sampleBodies[r.method+" "+r.pattern]
					if !ok {
						t.Fatalf("add a sample body for %s %s to sampleBodies", r.method, r.pattern)
					}
					q.body = body
				}
				p := e.do(t, q).problem(t, http.StatusNotFound, "not-found")
				if strings.Contains(string(p.Detail), "B") && strings.Contains(p.Detail, "b@example.com") {
					t.Fatalf("404 leaks B's data: %s", p.Detail)
				}
			})
		}
	}

	t.Run("B is unchanged", func(t *testing.T) {
		var org struct{ Name string }
		e.do(t, req{method: "GET", path: "/v1/orgs/" + b.Org.ID, token: bKey.Secret}).expect(t, http.StatusOK).decode(t, &org)
		if org.Name != "B" {
			t.Fatalf("B renamed to %q", org.Name)
		}
		var members api.List[map[string]any]
		e.do(t, req{method: "GET", path: "/v1/orgs/" + b.Org.ID + "/members", token: b.AccessToken}).expect(t, http.StatusOK).decode(t, &members)
		if len(members.Data) != 1 {
			t.Fatalf("B has %d members", len(members.Data))
		}
		var keys api.List[apiKey]
		e.do(t, req{method: "GET", path: "/v1/orgs/" + b.Org.ID + "/api-keys", token: b.AccessToken}).expect(t, http.StatusOK).decode(t, &keys)
		if len(keys.Data) != 1 || keys.Data[0].ID != bKey.ID {
			t.Fatalf("B's keys: %+v", keys.Data)
		}
		var inst struct{ Name, Status string }
		e.do(t, req{method: "GET", path: "/v1/orgs/" + b.Org.ID + "/instances/" + bInst.ID, token: b.AccessToken}).expect(t, http.StatusOK).decode(t, &inst)
		if inst.Name != "b-site" || inst.Status != "running" {
			t.Fatalf("B's instance changed: %+v", inst)
		}
		var insts api.List[map[string]any]
		e.do(t, req{method: "GET", path: "/v1/orgs/" + b.Org.ID + "/instances", token: b.AccessToken}).expect(t, http.StatusOK).decode(t, &insts)
		if len(insts.Data) != 1 {
			t.Fatalf("B has %d instances", len(insts.Data))
		}
		var creds api.List[struct {
			Username string
			Enabled  bool
		}]
		e.do(t, req{method: "GET", path: "/v1/orgs/" + b.Org.ID + "/instances/" + bInst.ID + "/credentials", token: b.AccessToken}).expect(t, http.StatusOK).decode(t, &creds)
		if len(creds.Data) != 1 || creds.Data[0].Username != "b-dev" || !creds.Data[0].Enabled {
			t.Fatalf("B's credentials: %+v", creds.Data)
		}
		if _, res := e.state.CheckPassword(bInst.ID, "b-dev", []byte(bCred.Password), "c", time.Now()); res != configsync.AuthOK {
			t.Fatalf("B's device no longer authenticates on the node: %v", res)
		}
		var rules api.List[map[string]any]
		e.do(t, req{method: "GET", path: "/v1/orgs/" + b.Org.ID + "/instances/" + bInst.ID + "/acl-rules", token: b.AccessToken}).expect(t, http.StatusOK).decode(t, &rules)
		if len(rules.Data) != 2 { // the default allow-all plus b/#
			t.Fatalf("B's rules: %+v", rules.Data)
		}
		var toks api.List[struct {
			RevokedAt *time.Time `json:"revoked_at"`
		}]
		e.do(t, req{method: "GET", path: "/v1/orgs/" + b.Org.ID + "/instances/" + bInst.ID + "/tokens", token: b.AccessToken}).expect(t, http.StatusOK).decode(t, &toks)
		if len(toks.Data) != 1 || toks.Data[0].RevokedAt != nil {
			t.Fatalf("B's tokens: %+v", toks.Data)
		}
		var audit api.List[map[string]any]
		e.do(t, req{method: "GET", path: "/v1/orgs/" + b.Org.ID + "/audit-events", token: b.AccessToken}).expect(t, http.StatusOK).decode(t, &audit)
		for _, ev := range audit.Data {
			if ev["actor_id"] == a.User.ID || ev["actor_id"] == aKey.ID {
				t.Fatalf("A's call recorded in B's audit log: %v", ev)
			}
		}
	})
	t.Run("B's IDs under A's own org are 404", func(t *testing.T) {
		for _, c := range callers {
			for _, q := range []req{
				{method: "GET", path: "/v1/orgs/" + a.Org.ID + "/api-keys/" + bKey.ID},
				{method: "DELETE", path: "/v1/orgs/" + a.Org.ID + "/api-keys/" + bKey.ID},
				{method: "GET", path: "/v1/orgs/" + a.Org.ID + "/members/" + b.User.ID},
				{method: "PATCH", path: "/v1/orgs/" + a.Org.ID + "/members/" + b.User.ID, body: map[string]string{"role": "viewer"}},
				{method: "DELETE", path: "/v1/orgs/" + a.Org.ID + "/members/" + b.User.ID},
				{method: "GET", path: "/v1/orgs/" + a.Org.ID + "/instances/" + bInst.ID},
				{method: "DELETE", path: "/v1/orgs/" + a.Org.ID + "/instances/" + bInst.ID},
				{method: "GET", path: "/v1/orgs/" + a.Org.ID + "/instances/" + bInst.ID + "/credentials/" + bCred.ID},
			} {
				q.token = c.token
				e.do(t, q).problem(t, http.StatusNotFound, "not-found")
			}
		}
		e.do(t, req{method: "GET", path: "/v1/orgs/" + b.Org.ID, token: bKey.Secret}).expect(t, http.StatusOK)
	})
	t.Run("org lists show only own orgs", func(t *testing.T) {
		for _, c := range callers {
			var orgs api.List[struct{ ID string }]
			e.do(t, req{method: "GET", path: "/v1/orgs", token: c.token}).expect(t, http.StatusOK).decode(t, &orgs)
			if len(orgs.Data) != 1 || orgs.Data[0].ID != a.Org.ID || orgs.NextCursor != nil {
				t.Fatalf("%s sees orgs %+v", c.name, orgs)
			}
		}
	})
}

// TestAccessTokenRejected: alg none, a wrong key, a wrong kid, expired and
// garbage JWTs are all 401; rotated-out keys keep verifying.
func TestAccessTokenRejected(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "jwt@example.com", "J")
	valid, _, err := jwt.NewParser().ParseUnverified(s.AccessToken, &jwt.RegisteredClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := valid.Header["kid"].(string)
	if kid == "" {
		t.Fatal("access token has no kid header")
	}
	claims := jwt.RegisteredClaims{Issuer: "aerie", Subject: s.User.ID, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}
	sign := func(m jwt.SigningMethod, key any, kid string) string {
		tok := jwt.NewWithClaims(m, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		out, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	past := tenancy.NewService(e.db.Pool, nil, tenancy.WithPlans(billing.NewPlans(e.db.Pool)), tenancy.WithClock(func() time.Time { return time.Now().Add(-time.Hour) }))
	expired, err := past.IssueAccessToken(context.Background(), s.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, token string }{
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid)},
		{"wrong key", sign(jwt.SigningMethodHS256, []byte("not the server's key, 32 bytes!!"), kid)},
		{"wrong kid", sign(jwt.SigningMethodHS256, []byte("not the server's key, 32 bytes!!"), "kunknown")},
		{"no kid", sign(jwt.SigningMethodHS256, []byte("not the server's key, 32 bytes!!"), "")},
		{"expired", expired},
		{"garbage", "not.a.jwt"},
		{"tampered subject", tamper(t, s.AccessToken)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, req{method: "GET", path: "/v1/me", token: c.token})
			r.problem(t, http.StatusUnauthorized, "unauthenticated")
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("no token", func(t *testing.T) {
		e.do(t, req{method: "GET", path: "/v1/me", invalidRequest: true}).problem(t, http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("valid token accepted", func(t *testing.T) {
		e.do(t, req{method: "GET", path: "/v1/me", token: s.AccessToken}).expect(t, http.StatusOK)
	})
	t.Run("key rotation keeps old tokens valid and signs with the new kid", func(t *testing.T) {
		newKid, err := e.svc.RotateSigningKey(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		e.do(t, req{method: "GET", path: "/v1/me", token: s.AccessToken}).expect(t, http.StatusOK)
		var l session
		e.do(t, req{method: "POST", path: "/v1/auth/login", body: map[string]string{"email": "jwt@example.com", "password": password}}).
			expect(t, http.StatusOK).decode(t, &l)
		tok, _, _ := jwt.NewParser().ParseUnverified(l.AccessToken, &jwt.RegisteredClaims{})
		if tok.Header["kid"] != newKid || newKid == kid {
			t.Fatalf("new token kid %v, want %s (old %s)", tok.Header["kid"], newKid, kid)
		}
		e.do(t, req{method: "GET", path: "/v1/me", token: l.AccessToken}).expect(t, http.StatusOK)
	})
}

// tamper swaps the payload of a signed JWT for one naming another subject.
func tamper(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	payload, _ := jwt.NewParser().DecodeSegment(parts[1])
	payload = bytes.Replace(payload, []byte(`"sub":"u-`), []byte(`"sub":"u-x`), 1)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// TestAPIKeyScopesAndRevocation: each scope (consume < read < write <
// admin) is refused (403) on every org route above it, allowed at its level; a key never exceeds its creator's
// role; a revoked key is refused on the next request.
func TestAPIKeyScopesAndRevocation(t *testing.T) {
	e := newEnv(t)
	o := e.signup(t, "owner@example.com", "O")
	keys := map[string]apiKey{}
	for _, sc := range []string{"consume", "read", "write", "admin"} {
		keys[sc] = e.createKey(t, o.AccessToken, o.Org.ID, sc+"-key", sc)
		if !strings.HasPrefix(keys[sc].Secret, "aer_"+keys[sc].Prefix+"_") {
			t.Fatalf("secret %q does not have the aer_<prefix>_ shape", keys[sc].Secret)
		}
	}
	doc, _ := loadSpec(t)
	rank := map[string]int{"consume": 1, "read": 2, "write": 3, "admin": 4}
	// IDs that do not exist: an allowed call answers 404 (or succeeds
	// harmlessly), a refused one 403 before the handler runs.
	ids := map[string]string{"org_id": o.Org.ID, "user_id": "u-nobody", "key_id": "k-nothing"}
	for _, r := range orgRoutes(t, e) {
		op := doc.Paths.Find(r.pattern).GetOperation(r.method)
		need, _ := op.Extensions["x-aerie-scope"].(string)
		if rank[need] == 0 {
			t.Errorf("%s %s has no x-aerie-scope in openapi.yaml", r.method, r.pattern)
			continue
		}
		for _, sc := range []string{"consume", "read", "write", "admin"} {
			k := keys[sc]
			q := req{method: r.method, path: fill(r.pattern, ids), token: k.Secret}
			if b, ok := sampleBodies[r.method+" "+r.pattern]; ok {
				q.body = b
			}
			if rank[sc] < rank[need] {
				t.Run(sc+" refused on "+r.method+" "+r.pattern, func(t *testing.T) {
					e.do(t, q).problem(t, http.StatusForbidden, "insufficient-scope")
				})
				continue
			}
			t.Run(sc+" allowed on "+r.method+" "+r.pattern, func(t *testing.T) {
				if res := e.do(t, q); res.status == http.StatusForbidden || res.status == http.StatusUnauthorized || res.status >= 500 {
					t.Fatalf("status %d: %s", res.status, res.body)
				}
			})
		}
	}
	t.Run("each scope works at its level", func(t *testing.T) {
		e.do(t, req{method: "GET", path: "/v1/orgs/" + o.Org.ID, token: keys["read"].Secret}).expect(t, http.StatusOK)
		e.do(t, req{method: "PATCH", path: "/v1/orgs/" + o.Org.ID, token: keys["write"].Secret, body: map[string]string{"name": "O2"}}).expect(t, http.StatusOK)
		e.createKey(t, keys["admin"].Secret, o.Org.ID, "made-by-key", "read")
	})
	t.Run("last_used_at is recorded", func(t *testing.T) {
		var k apiKey
		e.do(t, req{method: "GET", path: "/v1/orgs/" + o.Org.ID + "/api-keys/" + keys["read"].ID, token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &k)
		if k.LastUsedAt == nil || k.Secret != "" {
			t.Fatalf("key %+v: want last_used_at set and no secret", k)
		}
	})
	t.Run("a key never exceeds its creator's role", func(t *testing.T) {
		// An admin member makes an admin key, then is demoted to viewer.
		adm := e.signup(t, "adm@example.com", "Adm's own")
		e.do(t, req{method: "POST", path: "/v1/orgs/" + o.Org.ID + "/invitations", token: o.AccessToken,
			body: map[string]string{"email": "adm@example.com", "role": "admin"}}).expect(t, http.StatusCreated)
		e.do(t, req{method: "POST", path: "/v1/invitations/accept", token: adm.AccessToken,
			body: map[string]string{"token": e.mailedToken(t, "adm@example.com")}}).expect(t, http.StatusOK)
		k := e.createKey(t, adm.AccessToken, o.Org.ID, "adm-key", "admin")
		e.do(t, req{method: "PATCH", path: "/v1/orgs/" + o.Org.ID + "/members/" + adm.User.ID, token: o.AccessToken,
			body: map[string]string{"role": "viewer"}}).expect(t, http.StatusOK)
		e.do(t, req{method: "GET", path: "/v1/orgs/" + o.Org.ID, token: k.Secret}).expect(t, http.StatusOK)
		e.do(t, req{method: "POST", path: "/v1/orgs/" + o.Org.ID + "/api-keys", token: k.Secret,
			body: map[string]any{"name": "x", "scopes": []string{"read"}}}).problem(t, http.StatusForbidden, "insufficient-scope")
		// A viewer cannot mint keys at all, and a write key cannot mint an admin key.
		e.do(t, req{method: "POST", path: "/v1/orgs/" + o.Org.ID + "/api-keys", token: adm.AccessToken,
			body: map[string]any{"name": "x", "scopes": []string{"read"}}}).problem(t, http.StatusForbidden, "insufficient-scope")
		// Removed from the org: the key stops working.
		e.do(t, req{method: "DELETE", path: "/v1/orgs/" + o.Org.ID + "/members/" + adm.User.ID, token: o.AccessToken}).expect(t, http.StatusNoContent)
		e.do(t, req{method: "GET", path: "/v1/orgs/" + o.Org.ID, token: k.Secret}).problem(t, http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("revoked key is refused on the next request", func(t *testing.T) {
		k := keys["read"]
		e.do(t, req{method: "GET", path: "/v1/orgs/" + o.Org.ID, token: k.Secret}).expect(t, http.StatusOK)
		e.do(t, req{method: "DELETE", path: "/v1/orgs/" + o.Org.ID + "/api-keys/" + k.ID, token: keys["admin"].Secret}).expect(t, http.StatusNoContent)
		e.do(t, req{method: "GET", path: "/v1/orgs/" + o.Org.ID, token: k.Secret}).problem(t, http.StatusUnauthorized, "unauthenticated")
		e.do(t, req{method: "DELETE", path: "/v1/orgs/" + o.Org.ID + "/api-keys/" + k.ID, token: keys["admin"].Secret}).problem(t, http.StatusNotFound, "not-found")
	})
	t.Run("wrong secret with a real prefix is refused", func(t *testing.T) {
		k := keys["admin"]
		e.do(t, req{method: "GET", path: "/v1/orgs/" + o.Org.ID, token: "aer_" + k.Prefix + "_" + strings.Repeat("a", 52)}).
			problem(t, http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("expired key is refused", func(t *testing.T) {
		var k apiKey
		e.do(t, req{method: "POST", path: "/v1/orgs/" + o.Org.ID + "/api-keys", token: o.AccessToken,
			body: map[string]any{"name": "short", "scopes": []string{"read"}, "expires_at": time.Now().Add(1500 * time.Millisecond).Format(time.RFC3339Nano)}}).
			expect(t, http.StatusCreated).decode(t, &k)
		e.do(t, req{method: "GET", path: "/v1/orgs/" + o.Org.ID, token: k.Secret}).expect(t, http.StatusOK)
		time.Sleep(1600 * time.Millisecond)
		e.do(t, req{method: "GET", path: "/v1/orgs/" + o.Org.ID, token: k.Secret}).problem(t, http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("secrets are stored only as SHA-256", func(t *testing.T) {
		var n int
		secret := keys["admin"].Secret[strings.LastIndexByte(keys["admin"].Secret, '_')+1:]
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM api_keys WHERE position($1::bytea in secret_hash) > 0`, []byte(secret)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatal("plaintext secret stored")
		}
	})
}

// TestIdempotencyKey: same key + same body replays the stored response;
// same key + another body is 422; keys are per caller; the stored response
// does not reveal the secret.
func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	o := e.signup(t, "idem@example.com", "I")
	path := "/v1/orgs/" + o.Org.ID + "/api-keys"
	body := map[string]any{"name": "ci", "scopes": []string{"write"}}
	hdr := map[string]string{"Idempotency-Key": "create-ci-key-1"}
	var first, second apiKey
	r1 := e.do(t, req{method: "POST", path: path, token: o.AccessToken, body: body, header: hdr}).expect(t, http.StatusCreated)
	r1.decode(t, &first)
	r2 := e.do(t, req{method: "POST", path: path, token: o.AccessToken, body: body, header: hdr}).expect(t, http.StatusCreated)
	r2.decode(t, &second)
	if first.ID != second.ID || first.Secret != second.Secret || r2.header.Get("Idempotent-Replayed") != "true" || r1.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("replay differs: %+v vs %+v (replayed %q)", first, second, r2.header.Get("Idempotent-Replayed"))
	}
	if r2.header.Get("Location") != r1.header.Get("Location") || r2.header.Get("Content-Type") != "application/json" {
		t.Fatalf("replayed headers %v", r2.header)
	}
	var list api.List[apiKey]
	e.do(t, req{method: "GET", path: path, token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &list)
	if len(list.Data) != 1 {
		t.Fatalf("%d keys after a replay, want 1", len(list.Data))
	}
	e.do(t, req{method: "POST", path: path, token: o.AccessToken, body: map[string]any{"name": "other", "scopes": []string{"read"}}, header: hdr}).
		problem(t, http.StatusUnprocessableEntity, "idempotency-key-reused")

	t.Run("another caller's key space is separate", func(t *testing.T) {
		k := e.createKey(t, o.AccessToken, o.Org.ID, "admin", "admin")
		// Not replayed: the key's name is taken (409), where a replay
		// would be the stored 201.
		r := e.do(t, req{method: "POST", path: path, token: k.Secret, body: body, header: hdr})
		r.problem(t, http.StatusConflict, "conflict")
		if r.header.Get("Idempotent-Replayed") != "" {
			t.Fatal("another caller got the stored response")
		}
	})
	t.Run("errors are replayed too", func(t *testing.T) {
		h := map[string]string{"Idempotency-Key": "bad-1"}
		bad := map[string]any{"name": "", "scopes": []string{"read"}}
		e.do(t, req{method: "POST", path: path, token: o.AccessToken, body: bad, header: h, invalidRequest: true}).problem(t, http.StatusBadRequest, "validation-error")
		r := e.do(t, req{method: "POST", path: path, token: o.AccessToken, body: bad, header: h, invalidRequest: true})
		var p api.Problem
		r.decode(t, &p)
		// A replay is the stored response: its body names the first request.
		if r.status != http.StatusBadRequest || r.header.Get("Content-Type") != "application/problem+json" ||
			p.Type != api.ProblemTypeBase+"validation-error" || r.header.Get("Idempotent-Replayed") != "true" ||
			p.RequestID == r.header.Get("X-Request-Id") {
			t.Fatalf("replay %d %v %+v", r.status, r.header, p)
		}
	})
	t.Run("stored responses do not reveal secrets or keys", func(t *testing.T) {
		var n int
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM idempotency_keys
			WHERE position($1::bytea in body) > 0 OR key = 'create-ci-key-1'`, []byte(first.Secret)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatal("idempotency store holds the secret or the raw key")
		}
	})
}

// TestETagIfMatch: reads carry an ETag; PATCH with a stale If-Match is 412.
func TestETagIfMatch(t *testing.T) {
	e := newEnv(t)
	o := e.signup(t, "etag@example.com", "E")
	path := "/v1/orgs/" + o.Org.ID
	r := e.do(t, req{method: "GET", path: path, token: o.AccessToken}).expect(t, http.StatusOK)
	tag := r.header.Get("ETag")
	if !strings.HasPrefix(tag, `"`) {
		t.Fatalf("ETag %q", tag)
	}
	if again := e.do(t, req{method: "GET", path: path, token: o.AccessToken}).header.Get("ETag"); again != tag {
		t.Fatalf("ETag not stable: %s vs %s", tag, again)
	}
	e.do(t, req{method: "PATCH", path: path, token: o.AccessToken, body: map[string]string{"name": "E1"}, header: map[string]string{"If-Match": `"stale"`}}).
		problem(t, http.StatusPreconditionFailed, "precondition-failed")
	r = e.do(t, req{method: "PATCH", path: path, token: o.AccessToken, body: map[string]string{"name": "E2"}, header: map[string]string{"If-Match": tag}}).expect(t, http.StatusOK)
	newTag := r.header.Get("ETag")
	if newTag == "" || newTag == tag {
		t.Fatalf("ETag after update %q (before %q)", newTag, tag)
	}
	e.do(t, req{method: "PATCH", path: path, token: o.AccessToken, body: map[string]string{"name": "E3"}, header: map[string]string{"If-Match": tag}}).
		problem(t, http.StatusPreconditionFailed, "precondition-failed")
	var org struct{ Name string }
	r = e.do(t, req{method: "GET", path: path, token: o.AccessToken}).expect(t, http.StatusOK)
	r.decode(t, &org)
	if org.Name != "E2" || r.header.Get("ETag") != newTag {
		t.Fatalf("org %+v etag %s", org, r.header.Get("ETag"))
	}
	t.Run("a created resource reads back identically", func(t *testing.T) {
		var created, read map[string]any
		e.do(t, req{method: "POST", path: path + "/api-keys", token: o.AccessToken,
			body: map[string]any{"name": "k", "scopes": []string{"read"}, "expires_at": time.Now().Add(time.Hour).Format(time.RFC3339Nano)}}).
			expect(t, http.StatusCreated).decode(t, &created)
		delete(created, "secret")
		r := e.do(t, req{method: "GET", path: path + "/api-keys/" + created["id"].(string), token: o.AccessToken}).expect(t, http.StatusOK)
		r.decode(t, &read)
		if fmt.Sprint(created) != fmt.Sprint(read) || r.header.Get("ETag") == "" {
			t.Fatalf("created %v, read back %v", created, read)
		}
	})
}

// TestPagination creates 250 keys and walks them in pages: no duplicates,
// no misses, next_cursor null at the end; bad limit/cursor are 400.
func TestPagination(t *testing.T) {
	e := newEnv(t)
	// 250 keys is more than any plan allows an org: lift the limits here.
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE plans SET limits = '{}'`); err != nil {
		t.Fatal(err)
	}
	o := e.signup(t, "page@example.com", "P")
	want := map[string]bool{}
	for i := range 250 {
		want[e.createKey(t, o.AccessToken, o.Org.ID, fmt.Sprintf("key-%03d", i), "read").ID] = true
	}
	seen := map[string]bool{}
	cursor, pages := "", 0
	for {
		path := "/v1/orgs/" + o.Org.ID + "/api-keys?limit=23"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var page api.List[apiKey]
		e.do(t, req{method: "GET", path: path, token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &page)
		pages++
		for _, k := range page.Data {
			if seen[k.ID] {
				t.Fatalf("key %s seen twice", k.ID)
			}
			seen[k.ID] = true
		}
		if page.NextCursor == nil {
			if len(page.Data) != 250%23 {
				t.Fatalf("last page has %d items", len(page.Data))
			}
			break
		}
		if len(page.Data) != 23 {
			t.Fatalf("page %d has %d items", pages, len(page.Data))
		}
		cursor = *page.NextCursor
	}
	if len(seen) != 250 || pages != 11 {
		t.Fatalf("walked %d keys in %d pages", len(seen), pages)
	}
	for id := range want {
		if !seen[id] {
			t.Fatalf("key %s missed", id)
		}
	}
	t.Run("default limit is 50", func(t *testing.T) {
		var page api.List[apiKey]
		e.do(t, req{method: "GET", path: "/v1/orgs/" + o.Org.ID + "/api-keys", token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &page)
		if len(page.Data) != 50 || page.NextCursor == nil {
			t.Fatalf("%d items, next %v", len(page.Data), page.NextCursor)
		}
	})
	for _, c := range []struct{ name, query, field string }{
		{"limit 0", "limit=0", "limit"},
		{"limit too big", "limit=201", "limit"},
		{"garbage cursor", "cursor=%21%21", "cursor"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := e.do(t, req{method: "GET", path: "/v1/orgs/" + o.Org.ID + "/api-keys?" + c.query, token: o.AccessToken, invalidRequest: c.field == "limit"}).
				problem(t, http.StatusBadRequest, "validation-error")
			if len(p.Errors) != 1 || p.Errors[0].Field != c.field {
				t.Fatalf("errors %+v", p.Errors)
			}
		})
	}
}

// TestProblemShapes: every error is application/problem+json with a stable
// type, the HTTP status, the request ID and, for bad input, field errors.
func TestProblemShapes(t *testing.T) {
	e := newEnv(t)
	o := e.signup(t, "problems@example.com", "P")
	keys := "/v1/orgs/" + o.Org.ID + "/api-keys"
	big := append([]byte(`{"name":"`), bytes.Repeat([]byte("x"), api.MaxBodyBytes)...)
	big = append(big, `","scopes":["read"]}`...)
	cases := []struct {
		name   string
		q      req
		status int
		slug   string
		field  string
	}{
		{"unknown field", req{method: "POST", path: keys, token: o.AccessToken, invalidRequest: true,
			body: map[string]any{"name": "k", "scopes": []string{"read"}, "colour": "red"}}, 400, "validation-error", "colour"},
		{"bad scope", req{method: "POST", path: keys, token: o.AccessToken, invalidRequest: true,
			body: map[string]any{"name": "k", "scopes": []string{"root"}}}, 400, "validation-error", "scopes"},
		{"wrong type", req{method: "POST", path: keys, token: o.AccessToken, invalidRequest: true,
			body: map[string]any{"name": 7, "scopes": []string{"read"}}}, 400, "validation-error", "name"},
		{"malformed json", req{method: "POST", path: keys, token: o.AccessToken, invalidRequest: true, raw: []byte(`{"name":`)}, 400, "malformed-request", ""},
		{"two values", req{method: "POST", path: keys, token: o.AccessToken, invalidRequest: true, raw: []byte(`{"name":"a","scopes":["read"]} {}`)}, 400, "malformed-request", ""},
		{"body over 1 MiB", req{method: "POST", path: keys, token: o.AccessToken, invalidRequest: true, raw: big}, 413, "body-too-large", ""},
		{"body over 1 MiB with idempotency key", req{method: "POST", path: keys, token: o.AccessToken, invalidRequest: true, raw: big,
			header: map[string]string{"Idempotency-Key": "big"}}, 413, "body-too-large", ""},
		{"not json", req{method: "POST", path: keys, token: o.AccessToken, invalidRequest: true, raw: []byte(`name=k`),
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, "unsupported-media-type", ""},
		{"no credentials", req{method: "GET", path: keys, invalidRequest: true}, 401, "unauthenticated", ""},
		{"unknown org", req{method: "GET", path: "/v1/orgs/o-nope", token: o.AccessToken}, 404, "not-found", ""},
		{"unknown key", req{method: "GET", path: keys + "/k-nope", token: o.AccessToken}, 404, "not-found", ""},
		{"unknown route", req{method: "GET", path: "/v1/nope", token: o.AccessToken, noRoute: true}, 404, "not-found", ""},
		{"method not allowed", req{method: "PUT", path: "/v1/me", token: o.AccessToken, noRoute: true}, 405, "method-not-allowed", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := e.do(t, c.q).problem(t, c.status, c.slug)
			if c.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != c.field || p.Errors[0].Message == "") {
				t.Fatalf("errors %+v, want field %s", p.Errors, c.field)
			}
			if p.Instance != strings.SplitN(c.q.path, "?", 2)[0] {
				t.Fatalf("instance %q", p.Instance)
			}
		})
	}
	t.Run("client request id is echoed", func(t *testing.T) {
		r := e.do(t, req{method: "GET", path: "/v1/me", token: o.AccessToken, header: map[string]string{"X-Request-Id": "trace-123"}})
		if r.header.Get("X-Request-Id") != "trace-123" {
			t.Fatalf("X-Request-Id %q", r.header.Get("X-Request-Id"))
		}
	})
}

// TestLoginThrottle: a brute-force loop on one email is throttled (429 +
// Retry-After) and a different email from the same client still logs in.
func TestLoginThrottle(t *testing.T) {
	e := newEnv(t, ratelimit.LoginLimits{PerEmailBurst: 5, PerEmailEvery: time.Hour, PerAddrBurst: 40, PerAddrEvery: time.Hour})
	e.signup(t, "victim@example.com", "V")
	e.signup(t, "other@example.com", "W")
	var unauthorized, limited int
	for i := range 20 {
		r := e.do(t, req{method: "POST", path: "/v1/auth/login", body: map[string]string{"email": "victim@example.com", "password": fmt.Sprintf("guess number %d", i)}})
		switch r.status {
		case http.StatusUnauthorized:
			unauthorized++
		case http.StatusTooManyRequests:
			limited++
			r.problem(t, http.StatusTooManyRequests, "rate-limited")
			if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
				t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
			}
		default:
			t.Fatalf("attempt %d: status %d", i, r.status)
		}
	}
	if unauthorized != 5 || limited != 15 {
		t.Fatalf("%d wrong-password answers and %d throttled, want 5 and 15", unauthorized, limited)
	}
	// Even the right password is throttled for the attacked email...
	e.do(t, req{method: "POST", path: "/v1/auth/login", body: map[string]string{"email": "VICTIM@example.com", "password": password}}).
		problem(t, http.StatusTooManyRequests, "rate-limited")
	// ...but another email from the same client is not locked out.
	e.do(t, req{method: "POST", path: "/v1/auth/login", body: map[string]string{"email": "other@example.com", "password": password}}).expect(t, http.StatusOK)

	t.Run("per client address", func(t *testing.T) {
		e := newEnv(t, ratelimit.LoginLimits{PerEmailBurst: 100, PerEmailEvery: time.Hour, PerAddrBurst: 3, PerAddrEvery: time.Hour})
		for i := range 3 {
			e.do(t, req{method: "POST", path: "/v1/auth/login", body: map[string]string{"email": fmt.Sprintf("u%d@example.com", i), "password": password}}).
				problem(t, http.StatusUnauthorized, "unauthenticated")
		}
		e.do(t, req{method: "POST", path: "/v1/auth/login", body: map[string]string{"email": "fresh@example.com", "password": password}}).
			problem(t, http.StatusTooManyRequests, "rate-limited")
	})
}
