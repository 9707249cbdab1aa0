package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/internal/ratelimit"
)

// TestSignupsPerAddressLimited: with the default limits, the 6th sign-up
// from one client address within the window is 429 with Retry-After.
func TestSignupsPerAddressLimited(t *testing.T) {
	e := newEnvWith(t, func(d *api.Deps) { d.AbuseLimits = ratelimit.AbuseLimits{} }) // the defaults
	for i := 1; i <= 5; i++ {
		e.signup(t, fmt.Sprintf("bulk%d@example.com", i), "Bulk")
	}
	r := e.do(t, req{method: "POST", path: "/v1/signup", body: map[string]string{"email": "bulk6@example.com", "password": password, "org_name": "Bulk"}})
	p := r.problem(t, http.StatusTooManyRequests, "rate-limited")
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 60 {
		t.Fatalf("Retry-After %q, want minutes", r.header.Get("Retry-After"))
	}
	_ = p
}

// TestPlanLimits: an org at its plan's instance, credential or API-key count
// gets 409 limit-reached naming the limit; unverified orgs have stricter
// limits until an owner verifies; GET /v1/plans shows the limits.
func TestPlanLimits(t *testing.T) {
	e := newEnv(t)
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE plans SET limits = '{"max_instances":2,"max_credentials_per_instance":3,
		"max_api_keys":2,"max_acl_rules_per_instance":3,"unverified":{"max_instances":1,"max_credentials_per_instance":2}}' WHERE id = 'free'`); err != nil {
		t.Fatal(err)
	}
	var plans struct {
		Data []struct {
			ID     string
			Limits struct {
				MaxInstances int `json:"max_instances"`
				Unverified   *struct {
					MaxInstances int `json:"max_instances"`
				}
			}
		}
	}
	e.do(t, req{method: "GET", path: "/v1/plans"}).expect(t, 200).decode(t, &plans)
	if len(plans.Data) == 0 || plans.Data[0].ID != "free" || plans.Data[0].Limits.MaxInstances != 2 || plans.Data[0].Limits.Unverified == nil ||
		plans.Data[0].Limits.Unverified.MaxInstances != 1 {
		t.Fatalf("GET /v1/plans limits: %+v", plans.Data)
	}
	for _, p := range plans.Data[1:] {
		if p.Limits.MaxInstances == 0 {
			t.Errorf("plan %s has no instance limit", p.ID)
		}
	}

	s := e.signup(t, "limits@example.com", "Limits")
	org := s.Org.ID
	inst := e.createInstance(t, s.AccessToken, org, "one")
	limited := func(t *testing.T, r *resp, what string) {
		t.Helper()
		p := r.problem(t, http.StatusConflict, "limit-reached")
		if !strings.Contains(p.Detail, what) {
			t.Fatalf("problem does not name %q: %s", what, p.Detail)
		}
	}
	r := e.do(t, req{method: "POST", path: "/v1/orgs/" + org + "/instances", token: s.AccessToken, body: map[string]any{"name": "two"}})
	limited(t, r, "at most 1 instances until an owner verifies")
	bulk := func(n int, prefix string) *resp {
		list := make([]map[string]any, n)
		for i := range list {
			list[i] = map[string]any{"username": fmt.Sprintf("%s-%d", prefix, i)}
		}
		return e.do(t, req{method: "POST", path: "/v1/orgs/" + org + "/instances/" + inst.ID + "/credentials", token: s.AccessToken,
			body: map[string]any{"credentials": list}})
	}
	limited(t, bulk(3, "u"), "at most 2 credentials per instance")

	// Verifying the owner's address lifts the unverified limits.
	e.do(t, req{method: "POST", path: "/v1/auth/verify-email", body: map[string]string{"token": e.mailedToken(t, "limits@example.com")}}).expect(t, http.StatusNoContent)
	e.createInstance(t, s.AccessToken, org, "two")
	limited(t, e.do(t, req{method: "POST", path: "/v1/orgs/" + org + "/instances", token: s.AccessToken, body: map[string]any{"name": "three"}}),
		"the free plan allows at most 2 instances (2 held)")
	bulk(3, "v").expect(t, http.StatusCreated)
	limited(t, bulk(1, "w"), "at most 3 credentials per instance")
	e.createKey(t, s.AccessToken, org, "k1", "read")
	e.createKey(t, s.AccessToken, org, "k2", "read")
	limited(t, e.do(t, req{method: "POST", path: "/v1/orgs/" + org + "/api-keys", token: s.AccessToken, body: map[string]any{"name": "k3", "scopes": []string{"read"}}}),
		"at most 2 API keys")
	// The instance's default rule counts: two more reach 3.
	for i := 0; i < 2; i++ {
		e.do(t, req{method: "POST", path: "/v1/orgs/" + org + "/instances/" + inst.ID + "/acl-rules", token: s.AccessToken,
			body: map[string]any{"effect": "deny", "action": "publish", "filter": fmt.Sprintf("x/%d", i)}}).expect(t, http.StatusCreated)
	}
	limited(t, e.do(t, req{method: "POST", path: "/v1/orgs/" + org + "/instances/" + inst.ID + "/acl-rules", token: s.AccessToken,
		body: map[string]any{"effect": "deny", "action": "publish", "filter": "x/9"}}), "at most 3 ACL rules per instance")
}
