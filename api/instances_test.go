package api_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/tenancy"
)

// waitNode polls the harness node's config until cond holds.
func (e *env) waitNode(t testing.TB, what string, cond func(*configsync.State) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond(e.state) {
		if time.Now().After(deadline) {
			t.Fatalf("node never saw: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func nodeAuth(inst, user, pw string) func(*configsync.State) configsync.AuthResult {
	return func(s *configsync.State) configsync.AuthResult {
		_, res := s.CheckPassword(inst, user, []byte(pw), user+"-1", time.Now())
		return res
	}
}

// fieldErrors returns the problem's field names.
func fieldErrors(p api.Problem) string {
	var f []string
	for _, e := range p.Errors {
		f = append(f, e.Field)
	}
	return strings.Join(f, ",")
}

// TestInstances covers the instance life cycle through the API and what
// the data-plane node sees of it.
func TestInstances(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "inst@example.com", "Inst")
	base := "/v1/orgs/" + s.Org.ID + "/instances"

	var inst instance
	t.Run("create places the instance on the node and it turns running", func(t *testing.T) {
		inst = e.createInstance(t, s.AccessToken, s.Org.ID, "factory")
		if !strings.HasPrefix(inst.ID, "i-") || len(inst.ID) != 12 || strings.ToLower(inst.ID) != inst.ID {
			t.Fatalf("instance id %q, want i- and 10 lower-case base32 characters", inst.ID)
		}
		if inst.NodeID != e.nodeID || inst.Plan != "free" || inst.UsernameFormat != "<username>@"+inst.ID {
			t.Fatalf("instance %+v", inst)
		}
		if u := inst.Endpoints["mqtt"]; u == nil || *u != "mqtt://localhost:1883" || inst.Endpoints["mqtts"] != nil {
			t.Fatalf("endpoints %v", inst.Endpoints)
		}
		// The API says running once the node acknowledged the instance; the
		// status change itself reaches the node right after.
		got, ok := e.state.Instance(inst.ID)
		for deadline := time.Now().Add(5 * time.Second); (!ok || got.Status != "running") && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
			got, ok = e.state.Instance(inst.ID)
		}
		if !ok || got.Status != "running" || got.OrgID != s.Org.ID {
			t.Fatalf("node has %+v %v", got, ok)
		}
		if acl := e.state.ACL(inst.ID); len(acl) != 1 || acl[0].Effect != "allow" || acl[0].Filter != "#" || acl[0].Action != "all" {
			t.Fatalf("default ACL on the node: %+v", acl)
		}
	})
	t.Run("names are unique per org", func(t *testing.T) {
		p := e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: map[string]any{"name": "factory"}}).problem(t, 409, "conflict")
		if fieldErrors(p) != "name" {
			t.Fatalf("errors %+v", p.Errors)
		}
		other := e.signup(t, "other@example.com", "Other")
		e.createInstance(t, other.AccessToken, other.Org.ID, "factory")
	})
	t.Run("bad input is refused", func(t *testing.T) {
		e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: map[string]any{"name": ""}, invalidRequest: true}).problem(t, 400, "validation-error")
		if p := e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: map[string]any{"name": "x", "colour": "red"}, invalidRequest: true}).problem(t, 400, "validation-error"); fieldErrors(p) != "colour" {
			t.Fatalf("unknown field: %+v", p.Errors)
		}
		if p := e.do(t, req{method: "POST", path: base, token: s.AccessToken, raw: []byte(`{"name": 5}`), invalidRequest: true}).problem(t, 400, "validation-error"); fieldErrors(p) != "name" {
			t.Fatalf("wrong type: %+v", p.Errors)
		}
		e.do(t, req{method: "POST", path: base, token: s.AccessToken, raw: []byte(`{"name": "x"`), invalidRequest: true}).problem(t, 400, "malformed-request")
		e.do(t, req{method: "PATCH", path: base + "/" + inst.ID, token: s.AccessToken, body: map[string]any{"status": "deleting"}, invalidRequest: true}).problem(t, 400, "validation-error")
	})
	t.Run("patch honours If-Match", func(t *testing.T) {
		r := e.do(t, req{method: "GET", path: base + "/" + inst.ID, token: s.AccessToken}).expect(t, 200)
		etag := r.header.Get("ETag")
		e.do(t, req{method: "PATCH", path: base + "/" + inst.ID, token: s.AccessToken, body: map[string]any{"name": "plant"},
			header: map[string]string{"If-Match": etag}}).expect(t, 200)
		e.do(t, req{method: "PATCH", path: base + "/" + inst.ID, token: s.AccessToken, body: map[string]any{"name": "mill"},
			header: map[string]string{"If-Match": etag}}).problem(t, 412, "precondition-failed")
		var got instance
		e.do(t, req{method: "GET", path: base + "/" + inst.ID, token: s.AccessToken}).expect(t, 200).decode(t, &got)
		if got.Name != "plant" {
			t.Fatalf("name %q", got.Name)
		}
	})
	t.Run("patch without If-Match applies to the current version", func(t *testing.T) {
		// Writers that did not ask for a precondition are never refused
		// with 412, however their reads and writes interleave (the node
		// marking an instance running raced a PATCH this way).
		const n = 16
		codes := make(chan int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := e.do(t, req{method: "PATCH", path: base + "/" + inst.ID, token: s.AccessToken,
					body: map[string]any{"allow_anonymous": i%2 == 0, "deletion_protection": i%2 == 1}})
				codes <- r.status
			}()
		}
		wg.Wait()
		close(codes)
		for c := range codes {
			if c != 200 {
				t.Fatalf("concurrent PATCH without If-Match answered %d, want 200", c)
			}
		}
		e.do(t, req{method: "PATCH", path: base + "/" + inst.ID, token: s.AccessToken,
			body: map[string]any{"allow_anonymous": false, "deletion_protection": false}}).expect(t, 200)
	})
	t.Run("suspend and resume reach the node", func(t *testing.T) {
		c := e.createCredential(t, s.AccessToken, s.Org.ID, inst.ID, "dev")
		auth := nodeAuth(inst.ID, "dev", c.Password)
		e.waitNode(t, "credential", func(st *configsync.State) bool { return auth(st) == configsync.AuthOK })
		e.do(t, req{method: "PATCH", path: base + "/" + inst.ID, token: s.AccessToken, body: map[string]any{"status": "suspended"}}).expect(t, 200)
		e.waitNode(t, "suspension", func(st *configsync.State) bool { return auth(st) == configsync.AuthInstanceUnavailable })
		e.do(t, req{method: "PATCH", path: base + "/" + inst.ID, token: s.AccessToken, body: map[string]any{"status": "running"}}).expect(t, 200)
		e.waitNode(t, "resumption", func(st *configsync.State) bool { return auth(st) == configsync.AuthOK })
	})
	t.Run("deletion protection, then delete removes it from the node", func(t *testing.T) {
		e.do(t, req{method: "PATCH", path: base + "/" + inst.ID, token: s.AccessToken, body: map[string]any{"deletion_protection": true}}).expect(t, 200)
		e.do(t, req{method: "DELETE", path: base + "/" + inst.ID, token: s.AccessToken}).problem(t, 409, "deletion-protected")
		e.do(t, req{method: "PATCH", path: base + "/" + inst.ID, token: s.AccessToken, body: map[string]any{"deletion_protection": false}}).expect(t, 200)
		e.do(t, req{method: "DELETE", path: base + "/" + inst.ID, token: s.AccessToken}).expect(t, 204)
		e.do(t, req{method: "GET", path: base + "/" + inst.ID, token: s.AccessToken}).problem(t, 404, "not-found")
		e.waitNode(t, "deletion", func(st *configsync.State) bool { _, ok := st.Instance(inst.ID); return !ok })
	})
	t.Run("viewer keys cannot create", func(t *testing.T) {
		k := e.createKey(t, s.AccessToken, s.Org.ID, "ro", "read")
		e.do(t, req{method: "POST", path: base, token: k.Secret, body: map[string]any{"name": "nope"}}).problem(t, 403, "insufficient-scope")
		var list api.List[instance]
		e.do(t, req{method: "GET", path: base, token: k.Secret}).expect(t, 200).decode(t, &list)
		if len(list.Data) != 0 {
			t.Fatalf("list after delete: %+v", list.Data)
		}
	})
}

// TestCredentials covers device credentials: shown once, hashed, bulk,
// unique per instance, rotate/disable/delete reaching the node.
func TestCredentials(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "cred@example.com", "Cred")
	inst := e.createInstance(t, s.AccessToken, s.Org.ID, "site")
	other := e.createInstance(t, s.AccessToken, s.Org.ID, "site-2")
	base := "/v1/orgs/" + s.Org.ID + "/instances/" + inst.ID + "/credentials"

	var c credential
	t.Run("create shows a strong password once and stores only its hash", func(t *testing.T) {
		r := e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: map[string]any{"username": "sensor-1", "client_id_pattern": "${username}-*"}}).expect(t, 201)
		r.decode(t, &c)
		if r.header.Get("Cache-Control") != "no-store" || c.MQTTUsername != "sensor-1@"+inst.ID || !c.Enabled {
			t.Fatalf("create answer %s", r.body)
		}
		raw, err := base64.RawStdEncoding.DecodeString(c.Password)
		bits := len(c.Password) * 5 // base32
		if err == nil {
			bits = len(raw) * 8
		}
		if bits < 128 {
			t.Fatalf("password %q carries %d bits", c.Password, bits)
		}
		var stored []byte
		if err := e.db.Pool.QueryRow(t.Context(), `SELECT secret_sha256 FROM device_credentials WHERE id = $1`, c.ID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if len(stored) != 32 || strings.Contains(string(stored), c.Password) {
			t.Fatalf("stored secret %x", stored)
		}
		got := e.do(t, req{method: "GET", path: base + "/" + c.ID, token: s.AccessToken}).expect(t, 200)
		list := e.do(t, req{method: "GET", path: base, token: s.AccessToken}).expect(t, 200)
		if strings.Contains(string(got.body), c.Password) || strings.Contains(string(list.body), c.Password) || strings.Contains(string(list.body), `"password"`) {
			t.Fatal("password shown again")
		}
		e.waitNode(t, "credential", func(st *configsync.State) bool {
			return nodeAuth(inst.ID, "sensor-1", c.Password)(st) == configsync.AuthOK
		})
		if _, res := e.state.CheckPassword(inst.ID, "sensor-1", []byte(c.Password), "intruder", time.Now()); res != configsync.AuthClientIDRefused {
			t.Fatalf("client id outside the pattern: %v", res)
		}
	})
	t.Run("usernames are unique within an instance, not globally", func(t *testing.T) {
		p := e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: map[string]any{"username": "sensor-1"}}).problem(t, 409, "conflict")
		if fieldErrors(p) != "username" {
			t.Fatalf("errors %+v", p.Errors)
		}
		e.createCredential(t, s.AccessToken, s.Org.ID, other.ID, "sensor-1")
	})
	t.Run("bulk creates 1,000 at once and refuses 1,001", func(t *testing.T) {
		list := make([]map[string]any, 1000)
		for i := range list {
			list[i] = map[string]any{"username": fmt.Sprintf("bulk-%04d", i)}
		}
		var out struct{ Data []credential }
		e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: map[string]any{"credentials": list}}).expect(t, 201).decode(t, &out)
		if len(out.Data) != 1000 {
			t.Fatalf("bulk created %d", len(out.Data))
		}
		pws := map[string]bool{}
		for i, c := range out.Data {
			if c.Username != fmt.Sprintf("bulk-%04d", i) || c.Password == "" || pws[c.Password] {
				t.Fatalf("bulk[%d] = %+v", i, c)
			}
			pws[c.Password] = true
		}
		last := out.Data[999]
		e.waitNode(t, "bulk credentials", func(st *configsync.State) bool {
			return nodeAuth(inst.ID, last.Username, last.Password)(st) == configsync.AuthOK
		})

		over := append(list, map[string]any{"username": "one-too-many"})
		for i := range over {
			over[i] = map[string]any{"username": fmt.Sprintf("over-%04d", i)}
		}
		e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: map[string]any{"credentials": over}, invalidRequest: true}).problem(t, 400, "validation-error")
		dup := []map[string]any{{"username": "new-1"}, {"username": "sensor-1"}}
		p := e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: map[string]any{"credentials": dup}}).problem(t, 409, "conflict")
		if fieldErrors(p) != "credentials[1].username" {
			t.Fatalf("errors %+v", p.Errors)
		}
		var n int
		if err := e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM device_credentials WHERE instance_id = $1 AND (username LIKE 'over-%' OR username = 'new-1')`, inst.ID).Scan(&n); err != nil || n != 0 {
			t.Fatalf("refused bulk calls left %d credentials (%v)", n, err)
		}
	})
	t.Run("disable, enable, rotate and delete reach the node", func(t *testing.T) {
		auth := nodeAuth(inst.ID, "sensor-1", c.Password)
		e.do(t, req{method: "PATCH", path: base + "/" + c.ID, token: s.AccessToken, body: map[string]any{"enabled": false}}).expect(t, 200)
		e.waitNode(t, "disable", func(st *configsync.State) bool { return auth(st) == configsync.AuthDisabled })
		e.do(t, req{method: "PATCH", path: base + "/" + c.ID, token: s.AccessToken, body: map[string]any{"enabled": true}}).expect(t, 200)
		e.waitNode(t, "enable", func(st *configsync.State) bool { return auth(st) == configsync.AuthOK })

		var rotated credential
		e.do(t, req{method: "POST", path: base + "/" + c.ID + "/rotate", token: s.AccessToken}).expect(t, 200).decode(t, &rotated)
		if rotated.Password == "" || rotated.Password == c.Password || rotated.ID != c.ID {
			t.Fatalf("rotate %+v", rotated)
		}
		e.waitNode(t, "rotation", func(st *configsync.State) bool {
			return auth(st) == configsync.AuthBadCredentials && nodeAuth(inst.ID, "sensor-1", rotated.Password)(st) == configsync.AuthOK
		})
		e.do(t, req{method: "DELETE", path: base + "/" + c.ID, token: s.AccessToken}).expect(t, 204)
		e.do(t, req{method: "GET", path: base + "/" + c.ID, token: s.AccessToken}).problem(t, 404, "not-found")
		e.waitNode(t, "deletion", func(st *configsync.State) bool {
			return nodeAuth(inst.ID, "sensor-1", rotated.Password)(st) == configsync.AuthBadCredentials
		})
	})
	t.Run("expiry must be ahead; once passed the node refuses", func(t *testing.T) {
		var ex credential
		p := e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: map[string]any{"username": "old", "expires_at": time.Now().Add(-time.Minute).UTC()}}).problem(t, 400, "validation-error")
		if fieldErrors(p) != "expires_at" {
			t.Fatalf("errors %+v", p.Errors)
		}
		e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: map[string]any{"username": "soon", "expires_at": time.Now().Add(2 * time.Second).UTC()}}).expect(t, 201).decode(t, &ex)
		e.waitNode(t, "credential", func(st *configsync.State) bool {
			return nodeAuth(inst.ID, "soon", ex.Password)(st) == configsync.AuthOK
		})
		e.waitNode(t, "expiry", func(st *configsync.State) bool {
			return nodeAuth(inst.ID, "soon", ex.Password)(st) == configsync.AuthExpired
		})
	})
	t.Run("a credential of another instance is 404 here", func(t *testing.T) {
		oc := e.createCredential(t, s.AccessToken, s.Org.ID, other.ID, "x")
		e.do(t, req{method: "GET", path: base + "/" + oc.ID, token: s.AccessToken}).problem(t, 404, "not-found")
		e.do(t, req{method: "DELETE", path: base + "/" + oc.ID, token: s.AccessToken}).problem(t, 404, "not-found")
	})
}

// TestACLAndQuotas: rules are validated and pushed; quotas default to the
// plan, cannot exceed it and reach the node.
func TestACLAndQuotas(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "acl@example.com", "ACL")
	inst := e.createInstance(t, s.AccessToken, s.Org.ID, "site")
	c := e.createCredential(t, s.AccessToken, s.Org.ID, inst.ID, "dev")
	base := "/v1/orgs/" + s.Org.ID + "/instances/" + inst.ID

	t.Run("rules", func(t *testing.T) {
		var rule struct {
			ID           string
			CredentialID *string `json:"credential_id"`
		}
		e.do(t, req{method: "POST", path: base + "/acl-rules", token: s.AccessToken,
			body: map[string]any{"effect": "deny", "action": "publish", "filter": "devices/${username}/cmd", "credential_id": c.ID}}).expect(t, 201).decode(t, &rule)
		if rule.CredentialID == nil || *rule.CredentialID != c.ID {
			t.Fatalf("rule %+v", rule)
		}
		e.waitNode(t, "rule", func(st *configsync.State) bool { return len(st.ACL(inst.ID)) == 2 })
		for _, bad := range []map[string]any{
			{"effect": "maybe", "action": "all", "filter": "#"},
			{"effect": "allow", "action": "read", "filter": "#"},
			{"effect": "allow", "action": "all", "filter": "a/#/b"},
		} {
			e.do(t, req{method: "POST", path: base + "/acl-rules", token: s.AccessToken, body: bad, invalidRequest: true}).problem(t, 400, "validation-error")
		}
		p := e.do(t, req{method: "POST", path: base + "/acl-rules", token: s.AccessToken,
			body: map[string]any{"effect": "allow", "action": "all", "filter": "#", "credential_id": "c-nope"}}).problem(t, 400, "validation-error")
		if fieldErrors(p) != "credential_id" {
			t.Fatalf("errors %+v", p.Errors)
		}
		e.do(t, req{method: "DELETE", path: base + "/acl-rules/" + rule.ID, token: s.AccessToken}).expect(t, 204)
		e.waitNode(t, "rule deletion", func(st *configsync.State) bool { return len(st.ACL(inst.ID)) == 1 })
	})
	t.Run("quotas", func(t *testing.T) {
		var plans struct {
			Data []struct {
				ID     string
				Quotas config.Quotas
			}
		}
		e.do(t, req{method: "GET", path: "/v1/plans"}).expect(t, 200).decode(t, &plans)
		var free config.Quotas
		for _, p := range plans.Data {
			if p.ID == "free" {
				free = p.Quotas
			}
		}
		var q config.Quotas
		r := e.do(t, req{method: "GET", path: base + "/quotas", token: s.AccessToken}).expect(t, 200)
		r.decode(t, &q)
		if q != free || q.MaxConnections == 0 {
			t.Fatalf("quotas %+v, plan grants %+v", q, free)
		}
		p := e.do(t, req{method: "PUT", path: base + "/quotas", token: s.AccessToken, body: map[string]any{"max_connections": free.MaxConnections + 1}}).problem(t, 400, "validation-error")
		if fieldErrors(p) != "max_connections" {
			t.Fatalf("errors %+v", p.Errors)
		}
		var set config.Quotas
		e.do(t, req{method: "PUT", path: base + "/quotas", token: s.AccessToken, body: map[string]any{"max_connections": 3, "max_payload_bytes": 1024},
			header: map[string]string{"If-Match": r.header.Get("ETag")}}).expect(t, 200).decode(t, &set)
		want := free
		want.MaxConnections, want.MaxPayloadBytes = 3, 1024
		if set != want {
			t.Fatalf("set %+v, want %+v", set, want)
		}
		e.waitNode(t, "quotas", func(st *configsync.State) bool { in, _ := st.Instance(inst.ID); return in.Quotas == want })
		e.do(t, req{method: "PUT", path: base + "/quotas", token: s.AccessToken, body: map[string]any{"max_connections": 4},
			header: map[string]string{"If-Match": r.header.Get("ETag")}}).problem(t, 412, "precondition-failed")
	})
}

// TestDeviceTokens: tokens are EdDSA JWTs the node can verify offline with
// the pushed key, bounded in TTL and scope, and revocable.
func TestDeviceTokens(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "tok@example.com", "Tok")
	inst := e.createInstance(t, s.AccessToken, s.Org.ID, "site")
	base := "/v1/orgs/" + s.Org.ID + "/instances/" + inst.ID + "/tokens"
	res := []any{map[string]any{"filter": "a/#", "actions": []string{"publish", "subscribe"}}}

	var tok struct {
		JTI, Token string
		Username   string    `json:"mqtt_username"`
		ExpiresAt  time.Time `json:"expires_at"`
	}
	e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: map[string]any{"client_id": "meter-7", "resources": res, "ttl_seconds": 300}}).expect(t, 201).decode(t, &tok)
	if tok.Username != tenancy.DeviceTokenUsername+"@"+inst.ID || time.Until(tok.ExpiresAt) > 301*time.Second || time.Until(tok.ExpiresAt) < 250*time.Second {
		t.Fatalf("token %+v", tok)
	}
	t.Run("the node verifies it offline with the pushed key", func(t *testing.T) {
		claims := jwt.MapClaims{}
		parsed, err := jwt.ParseWithClaims(tok.Token, claims, func(tk *jwt.Token) (any, error) {
			kid, _ := tk.Header["kid"].(string)
			var key config.TokenKey
			var ok bool
			deadline := time.Now().Add(5 * time.Second)
			for key, ok = e.state.TokenKey(inst.ID, kid); !ok && time.Now().Before(deadline); key, ok = e.state.TokenKey(inst.ID, kid) {
				time.Sleep(5 * time.Millisecond)
			}
			if !ok {
				return nil, fmt.Errorf("node has no key %q", kid)
			}
			return ed25519.PublicKey(key.PublicKey), nil
		}, jwt.WithValidMethods([]string{"EdDSA"}))
		if err != nil || !parsed.Valid {
			t.Fatalf("verify with the node's key: %v", err)
		}
		var dc config.DeviceTokenClaims
		raw, _ := json.Marshal(claims)
		if err := json.Unmarshal(raw, &dc); err != nil {
			t.Fatal(err)
		}
		if dc.ID != tok.JTI || dc.ClientID != "meter-7" || dc.Audience != inst.ID || len(dc.Resources) != 1 || dc.Resources[0].Filter != "a/#" {
			t.Fatalf("claims %+v", claims)
		}
	})
	t.Run("ttl and scope bounds", func(t *testing.T) {
		for _, body := range []map[string]any{
			{"resources": res, "ttl_seconds": 59},
			{"resources": res, "ttl_seconds": 30*24*3600 + 1},
			{"resources": []any{}, "ttl_seconds": 60},
			{"resources": []any{map[string]any{"filter": "a/#/b", "actions": []string{"publish"}}}, "ttl_seconds": 60},
			{"resources": []any{map[string]any{"filter": "a", "actions": []string{"delete"}}}, "ttl_seconds": 60},
		} {
			e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: body, invalidRequest: true}).problem(t, 400, "validation-error")
		}
	})
	t.Run("revoke reaches the node; the token is listed without its secret", func(t *testing.T) {
		var revoked struct {
			RevokedAt *time.Time `json:"revoked_at"`
		}
		e.do(t, req{method: "POST", path: base + "/revoke", token: s.AccessToken, body: map[string]any{"jti": tok.JTI}}).expect(t, 200).decode(t, &revoked)
		if revoked.RevokedAt == nil {
			t.Fatal("not revoked")
		}
		e.waitNode(t, "revocation", func(st *configsync.State) bool { return st.TokenRevoked(inst.ID, tok.JTI) })
		e.do(t, req{method: "POST", path: base + "/revoke", token: s.AccessToken, body: map[string]any{"jti": "nope"}}).problem(t, 404, "not-found")
		list := e.do(t, req{method: "GET", path: base, token: s.AccessToken}).expect(t, 200)
		if strings.Contains(string(list.body), tok.Token) || !strings.Contains(string(list.body), tok.JTI) {
			t.Fatalf("list %s", list.body)
		}
	})
}

// TestAdminNodes: the operator API needs the operator token, shows nodes
// with their applied revision, and issues tokens shown once.
func TestAdminNodes(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "op@example.com", "Op")
	e.createInstance(t, s.AccessToken, s.Org.ID, "site")
	for _, tok := range []string{"", "wrong", s.AccessToken} {
		e.do(t, req{method: "GET", path: "/v1/admin/nodes", token: tok}).problem(t, 401, "unauthenticated")
	}
	var list struct {
		Data []struct {
			ID, Name        string
			Instances       int
			AppliedRevision int64 `json:"applied_revision"`
		}
		ConfigRevision int64 `json:"config_revision"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.do(t, req{method: "GET", path: "/v1/admin/nodes", token: operatorToken}).expect(t, 200).decode(t, &list)
		if len(list.Data) == 1 && list.Data[0].AppliedRevision == list.ConfigRevision || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(list.Data) != 1 || list.Data[0].ID != e.nodeID || list.Data[0].Instances != 1 || list.ConfigRevision == 0 || list.Data[0].AppliedRevision != list.ConfigRevision {
		t.Fatalf("nodes %+v", list)
	}
	var n struct{ ID, Token string }
	e.do(t, req{method: "POST", path: "/v1/admin/nodes", token: operatorToken, body: map[string]any{"name": "edge-9"}}).expect(t, 201).decode(t, &n)
	if !strings.HasPrefix(n.Token, "aen_"+n.ID+"_") {
		t.Fatalf("node token %q", n.Token)
	}
	watch := func(tok string) int {
		rq, _ := http.NewRequest("GET", e.srv.URL+"/internal/v1/nodes/"+n.ID+"/ack", strings.NewReader(`{"revision":0}`))
		rq.Method = "POST"
		rq.Header.Set("Authorization", "Bearer "+tok)
		rq.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := watch(n.Token); code != 204 {
		t.Fatalf("node ack with its token: %d", code)
	}
	if code := watch(n.Token + "x"); code != 401 {
		t.Fatalf("node ack with a wrong token: %d", code)
	}
	e.do(t, req{method: "DELETE", path: "/v1/admin/nodes/" + n.ID, token: operatorToken}).expect(t, 204)
	if code := watch(n.Token); code != 401 {
		t.Fatalf("revoked node ack: %d", code)
	}
}

// TestInstanceMetrics: the metrics API answers what the node's usage
// reports said, a replayed report counts once, and other orgs get 404.
func TestInstanceMetrics(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "met@example.com", "Met")
	inst := e.createInstance(t, s.AccessToken, s.Org.ID, "site")
	other := e.createInstance(t, s.AccessToken, s.Org.ID, "other")
	now := time.Now().UTC().Truncate(10 * time.Second)
	rep := func(seq int64, at time.Time, in, out int64) billing.UsageReport {
		return billing.UsageReport{NodeID: e.nodeID, Seq: seq, From: at.Add(-10 * time.Second), To: at, Instances: []billing.InstanceUsage{
			{InstanceID: inst.ID, MessagesIn: in, MessagesOut: out, BytesIn: in * 100, Connections: 3, Drops: map[string]int64{"quota": 2}},
			{InstanceID: other.ID, MessagesIn: 1000},
		}}
	}
	for _, r := range []billing.UsageReport{rep(1, now.Add(-30*time.Second), 10, 20), rep(2, now.Add(-20*time.Second), 5, 7), rep(2, now.Add(-20*time.Second), 5, 7)} {
		if _, err := e.meter.Ingest(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	base := "/v1/orgs/" + s.Org.ID + "/instances/" + inst.ID + "/metrics"
	var m struct {
		StepSeconds int64 `json:"step_seconds"`
		Points      []struct {
			MessagesIn  int64 `json:"messages_in"`
			MessagesOut int64 `json:"messages_out"`
			BytesIn     int64 `json:"bytes_in"`
			Connections int64
			Drops       map[string]int64
		}
	}
	q := "?step=10s&from=" + now.Add(-2*time.Minute).Format(time.RFC3339) + "&to=" + now.Add(time.Minute).Format(time.RFC3339)
	e.do(t, req{method: "GET", path: base + q, token: s.AccessToken}).expect(t, 200).decode(t, &m)
	var in, out, bytes, drops int64
	for _, p := range m.Points {
		in, out, bytes, drops = in+p.MessagesIn, out+p.MessagesOut, bytes+p.BytesIn, drops+p.Drops["quota"]
	}
	if m.StepSeconds != 10 || len(m.Points) < 12 || in != 15 || out != 27 || bytes != 1500 || drops != 4 {
		t.Fatalf("metrics: step %d, %d points, in %d out %d bytes %d drops %d; want in 15 out 27 bytes 1500 drops 4", m.StepSeconds, len(m.Points), in, out, bytes, drops)
	}
	e.do(t, req{method: "GET", path: base + "?step=7s", token: s.AccessToken}).problem(t, 400, "invalid-request")
	if p := e.do(t, req{method: "GET", path: base + "?from=yesterday", token: s.AccessToken, invalidRequest: true}).problem(t, 400, "validation-error"); fieldErrors(p) != "from" {
		t.Fatalf("errors %+v", p.Errors)
	}
	stranger := e.signup(t, "stranger@example.com", "S")
	e.do(t, req{method: "GET", path: "/v1/orgs/" + stranger.Org.ID + "/instances/" + inst.ID + "/metrics", token: stranger.AccessToken}).problem(t, 404, "not-found")
}

// TestAdminMarkInvoicePaid: the operator records a manual payment; only
// the operator token may, and an invoice is paid once.
func TestAdminMarkInvoicePaid(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "payer@example.com", "Payer")
	bill := billing.NewService(e.db.Pool, nil, e.svc, nil)
	now := time.Now().UTC()
	prev := billing.PeriodOf(billing.PeriodOf(now).Start.Add(-time.Second))
	inv, err := bill.Finalize(t.Context(), s.Org.ID, prev, now)
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/admin/orgs/" + s.Org.ID + "/invoices/" + inv.ID + "/paid"
	e.do(t, req{method: "POST", path: path, token: s.AccessToken}).problem(t, 401, "unauthenticated")
	var paid struct {
		Status string
		PaidAt *time.Time `json:"paid_at"`
	}
	e.do(t, req{method: "POST", path: path, token: operatorToken}).expect(t, 200).decode(t, &paid)
	if paid.Status != "paid" || paid.PaidAt == nil {
		t.Fatalf("%+v", paid)
	}
	e.do(t, req{method: "POST", path: path, token: operatorToken}).problem(t, 400, "invalid-request")
	e.do(t, req{method: "POST", path: "/v1/admin/orgs/" + s.Org.ID + "/invoices/inv-nope/paid", token: operatorToken}).problem(t, 404, "not-found")
	var got struct{ Status string }
	e.do(t, req{method: "GET", path: "/v1/orgs/" + s.Org.ID + "/invoices/" + inv.ID, token: s.AccessToken}).expect(t, 200).decode(t, &got)
	if got.Status != "paid" {
		t.Fatalf("customer sees %q", got.Status)
	}
}

// TestDeletionProtectionDefault: a new instance is protected on a paid
// plan (DELETE answers 409 deletion-protected until it is turned off) and
// unprotected on Free; an explicit value wins.
func TestDeletionProtectionDefault(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "protect@example.com", "Protect")
	base := "/v1/orgs/" + s.Org.ID + "/instances"
	type protected struct {
		ID                 string
		DeletionProtection bool `json:"deletion_protection"`
	}
	create := func(name string, body map[string]any) protected {
		t.Helper()
		body["name"] = name
		var p protected
		e.do(t, req{method: "POST", path: base, token: s.AccessToken, body: body}).expect(t, 201).decode(t, &p)
		return p
	}
	free := create("free-one", map[string]any{})
	if free.DeletionProtection {
		t.Fatal("a Free instance is protected by default")
	}
	e.do(t, req{method: "PUT", path: "/v1/orgs/" + s.Org.ID + "/subscription", token: s.AccessToken, body: map[string]any{"plan": "pro"}}).expect(t, 200)
	paid := create("paid-one", map[string]any{})
	if !paid.DeletionProtection {
		t.Fatal("a paid-plan instance is not protected by default")
	}
	e.do(t, req{method: "DELETE", path: base + "/" + paid.ID, token: s.AccessToken}).problem(t, 409, "deletion-protected")
	e.do(t, req{method: "GET", path: base + "/" + paid.ID, token: s.AccessToken}).expect(t, 200)
	off := create("paid-off", map[string]any{"deletion_protection": false})
	if off.DeletionProtection {
		t.Fatal("an explicit deletion_protection false was ignored")
	}
	e.do(t, req{method: "PATCH", path: base + "/" + paid.ID, token: s.AccessToken, body: map[string]any{"deletion_protection": false}}).expect(t, 200)
	e.do(t, req{method: "DELETE", path: base + "/" + paid.ID, token: s.AccessToken}).expect(t, 204)
}
