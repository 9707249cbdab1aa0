package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/configsync"
)

// TestNameFiltersAndConflicts: lists filter by ?name=, and a taken name is
// 409 for instances, credentials and API keys.
func TestNameFiltersAndConflicts(t *testing.T) {
	e := newEnv(t)
	o := e.signup(t, "names@example.com", "N")
	base := "/v1/orgs/" + o.Org.ID
	in := e.createInstance(t, o.AccessToken, o.Org.ID, "alpha")
	e.createInstance(t, o.AccessToken, o.Org.ID, "beta")
	e.do(t, req{method: "POST", path: base + "/instances", token: o.AccessToken, body: map[string]any{"name": "alpha"}}).
		problem(t, http.StatusConflict, "conflict")
	var list struct {
		Data []struct{ ID, Name string }
	}
	e.do(t, req{method: "GET", path: base + "/instances?name=alpha", token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &list)
	if len(list.Data) != 1 || list.Data[0].ID != in.ID {
		t.Fatalf("?name=alpha: %+v", list.Data)
	}
	e.do(t, req{method: "GET", path: base + "/instances?name=gamma", token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &list)
	if len(list.Data) != 0 {
		t.Fatalf("?name=gamma: %+v", list.Data)
	}
	e.do(t, req{method: "GET", path: base + "/instances", token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &list)
	if len(list.Data) != 2 || list.Data[0].Name != "alpha" || list.Data[1].Name != "beta" {
		t.Fatalf("instances not oldest first: %+v", list.Data)
	}

	ipath := base + "/instances/" + in.ID
	c := e.createCredential(t, o.AccessToken, o.Org.ID, in.ID, "dev-1")
	e.createCredential(t, o.AccessToken, o.Org.ID, in.ID, "dev-2")
	e.do(t, req{method: "POST", path: ipath + "/credentials", token: o.AccessToken, body: map[string]any{"username": "dev-1"}}).
		problem(t, http.StatusConflict, "conflict")
	e.do(t, req{method: "POST", path: ipath + "/credentials", token: o.AccessToken,
		body: map[string]any{"credentials": []map[string]any{{"username": "dev-3"}, {"username": "dev-2"}}}}).problem(t, http.StatusConflict, "conflict")
	var creds struct {
		Data []struct{ ID, Username string }
	}
	e.do(t, req{method: "GET", path: ipath + "/credentials?name=dev-1", token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &creds)
	if len(creds.Data) != 1 || creds.Data[0].ID != c.ID {
		t.Fatalf("?name=dev-1: %+v", creds.Data)
	}
	e.do(t, req{method: "GET", path: ipath + "/credentials", token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &creds)
	if len(creds.Data) != 2 {
		t.Fatalf("a failed bulk create left credentials: %+v", creds.Data)
	}

	k := e.createKey(t, o.AccessToken, o.Org.ID, "ci", "read")
	e.do(t, req{method: "POST", path: base + "/api-keys", token: o.AccessToken, body: map[string]any{"name": "ci", "scopes": []string{"read"}}}).
		problem(t, http.StatusConflict, "conflict")
	var keys struct {
		Data []struct{ ID string }
	}
	e.do(t, req{method: "GET", path: base + "/api-keys?name=ci", token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &keys)
	if len(keys.Data) != 1 || keys.Data[0].ID != k.ID {
		t.Fatalf("?name=ci: %+v", keys.Data)
	}
	// A revoked key's name is free again.
	e.do(t, req{method: "DELETE", path: base + "/api-keys/" + k.ID, token: o.AccessToken}).expect(t, http.StatusNoContent)
	e.createKey(t, o.AccessToken, o.Org.ID, "ci", "read")
}

// waitAuth polls the harness node until CheckPassword gives want.
func waitAuth(t *testing.T, st *configsync.State, inst, user, pw string, want configsync.AuthResult) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, got := st.CheckPassword(inst, user, []byte(pw), "c1", time.Now())
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node: %s/%s auth %v, want %v", inst, user, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSuppliedCredentialPassword: a caller-supplied password is stored as
// bcrypt, never echoed, and checked by the node; a generated one still
// works the old way.
func TestSuppliedCredentialPassword(t *testing.T) {
	e := newEnv(t)
	o := e.signup(t, "vault@example.com", "V")
	in := e.createInstance(t, o.AccessToken, o.Org.ID, "v")
	ipath := "/v1/orgs/" + o.Org.ID + "/instances/" + in.ID
	const pw = "from-the-vault-0001"
	var c struct {
		ID, Password   string
		PasswordSource string `json:"password_source"`
	}
	e.do(t, req{method: "POST", path: ipath + "/credentials", token: o.AccessToken, body: map[string]any{"username": "dev", "password": pw}}).
		expect(t, http.StatusCreated).decode(t, &c)
	if c.Password != "" || c.PasswordSource != "supplied" {
		t.Fatalf("supplied password echoed or mislabelled: %+v", c)
	}
	var hash string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT password_hash FROM device_credentials WHERE id = $1`, c.ID).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if len(hash) < 60 || hash[:4] != "$2a$" || hash[4:6] != "10" {
		t.Fatalf("stored hash %.7s… is not bcrypt cost 10", hash)
	}
	waitAuth(t, e.state, in.ID, "dev", pw, configsync.AuthOK)
	waitAuth(t, e.state, in.ID, "dev", pw+"x", configsync.AuthBadCredentials)

	e.do(t, req{method: "POST", path: ipath + "/credentials", token: o.AccessToken, body: map[string]any{"username": "short", "password": "too-short"}, invalidRequest: true}).
		problem(t, http.StatusBadRequest, "validation-error")

	// Rotate to another supplied password, then to a generated one.
	const pw2 = "from-the-vault-0002"
	e.do(t, req{method: "POST", path: ipath + "/credentials/" + c.ID + "/rotate", token: o.AccessToken, body: map[string]any{"password": pw2}}).
		expect(t, http.StatusOK).decode(t, &c)
	if c.Password != "" || c.PasswordSource != "supplied" {
		t.Fatalf("rotate to supplied: %+v", c)
	}
	waitAuth(t, e.state, in.ID, "dev", pw2, configsync.AuthOK)
	waitAuth(t, e.state, in.ID, "dev", pw, configsync.AuthBadCredentials)
	e.do(t, req{method: "POST", path: ipath + "/credentials/" + c.ID + "/rotate", token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &c)
	if c.Password == "" || c.PasswordSource != "generated" {
		t.Fatalf("rotate to generated: %+v", c)
	}
	waitAuth(t, e.state, in.ID, "dev", c.Password, configsync.AuthOK)
	waitAuth(t, e.state, in.ID, "dev", pw2, configsync.AuthBadCredentials)
}

type ruleJSON struct {
	ID           string  `json:"id"`
	Effect       string  `json:"effect"`
	Action       string  `json:"action"`
	Filter       string  `json:"filter"`
	CredentialID *string `json:"credential_id"`
	Position     int     `json:"position"`
}

// TestACLRuleOrderAndReplace: rules have positions; GET/PATCH one rule;
// PUT replaces the whole list in one config revision, validated whole.
func TestACLRuleOrderAndReplace(t *testing.T) {
	e := newEnv(t)
	o := e.signup(t, "acl@example.com", "A")
	in := e.createInstance(t, o.AccessToken, o.Org.ID, "a")
	rpath := "/v1/orgs/" + o.Org.ID + "/instances/" + in.ID + "/acl-rules"
	list := func() []ruleJSON {
		var l struct{ Data []ruleJSON }
		e.do(t, req{method: "GET", path: rpath, token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &l)
		return l.Data
	}
	filters := func(rs []ruleJSON) string {
		s := ""
		for i, r := range rs {
			if r.Position != i {
				t.Fatalf("rule %d has position %d: %+v", i, r.Position, rs)
			}
			s += r.Filter + " "
		}
		return s
	}
	var r1, r2 ruleJSON
	e.do(t, req{method: "POST", path: rpath, token: o.AccessToken, body: map[string]any{"effect": "allow", "action": "publish", "filter": "a/#"}}).
		expect(t, http.StatusCreated).decode(t, &r1)
	e.do(t, req{method: "POST", path: rpath, token: o.AccessToken, body: map[string]any{"effect": "deny", "action": "all", "filter": "b/#", "position": 0}}).
		expect(t, http.StatusCreated).decode(t, &r2)
	if got := filters(list()); got != "b/# # a/# " {
		t.Fatalf("order after insert at 0: %s", got)
	}
	// GET one rule, 304 with its ETag, PATCH it (move to the end).
	g := e.do(t, req{method: "GET", path: rpath + "/" + r2.ID, token: o.AccessToken}).expect(t, http.StatusOK)
	tag := g.header.Get("ETag")
	if nm := e.do(t, req{method: "GET", path: rpath + "/" + r2.ID, token: o.AccessToken, header: map[string]string{"If-None-Match": tag}}); nm.status != http.StatusNotModified || len(nm.body) != 0 {
		t.Fatalf("If-None-Match: %d %q", nm.status, nm.body)
	}
	e.do(t, req{method: "PATCH", path: rpath + "/" + r2.ID, token: o.AccessToken, body: map[string]any{"position": 2, "filter": "c/#"},
		header: map[string]string{"If-Match": tag}}).expect(t, http.StatusOK)
	e.do(t, req{method: "PATCH", path: rpath + "/" + r2.ID, token: o.AccessToken, body: map[string]any{"filter": "d/#"},
		header: map[string]string{"If-Match": tag}}).problem(t, http.StatusPreconditionFailed, "precondition-failed")
	if got := filters(list()); got != "# a/# c/# " {
		t.Fatalf("order after move: %s", got)
	}
	if nm := e.do(t, req{method: "GET", path: rpath + "/" + r2.ID, token: o.AccessToken, header: map[string]string{"If-None-Match": tag}}); nm.status != http.StatusOK {
		t.Fatalf("stale If-None-Match: %d", nm.status)
	}

	// PUT: an invalid rule anywhere changes nothing.
	ctx := context.Background()
	before, _, err := e.svc.ConfigRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := e.do(t, req{method: "PUT", path: rpath, token: o.AccessToken, body: map[string]any{"rules": []map[string]any{
		{"effect": "allow", "action": "all", "filter": "x/#"}, {"effect": "allow", "action": "all", "filter": "bad/#/x"}}}}).
		problem(t, http.StatusBadRequest, "validation-error")
	if len(p.Errors) != 1 || p.Errors[0].Field != "rules[1].filter" {
		t.Fatalf("errors %+v", p.Errors)
	}
	if got := filters(list()); got != "# a/# c/# " {
		t.Fatalf("a refused PUT changed the rules: %s", got)
	}
	var put struct{ Data []ruleJSON }
	e.do(t, req{method: "PUT", path: rpath, token: o.AccessToken, body: map[string]any{"rules": []map[string]any{
		{"effect": "allow", "action": "publish", "filter": "a/#"}, {"effect": "deny", "action": "subscribe", "filter": "z/${username}"},
		{"effect": "allow", "action": "all", "filter": "#"}}}}).expect(t, http.StatusOK).decode(t, &put)
	after, _, err := e.svc.ConfigRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after != before+1 {
		t.Fatalf("PUT took revisions %d..%d, want exactly one", before, after)
	}
	if got := filters(list()); got != "a/# z/${username} # " || put.Data[0].ID != r1.ID {
		t.Fatalf("after PUT: %s (a/# kept its id: %v)", got, put.Data[0].ID == r1.ID)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		acl := e.state.ACL(in.ID)
		s := ""
		for _, r := range acl {
			s += r.Filter + " "
		}
		if s == "a/# z/${username} # " {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node rules: %s", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Deleting renumbers.
	e.do(t, req{method: "DELETE", path: rpath + "/" + put.Data[0].ID, token: o.AccessToken}).expect(t, http.StatusNoContent)
	if got := filters(list()); got != "z/${username} # " {
		t.Fatalf("after delete: %s", got)
	}
	_ = fmt.Sprint()
}
