package api_test

import (
	"net/http"
	"testing"

	"github.com/aeriemq/aerie/api"
)

type member struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
	Role   string `json:"role"`
}

// TestMembersAndInvitations: invite by email token, accept, change roles
// within the caller's own role, and the org always keeps one owner.
func TestMembersAndInvitations(t *testing.T) {
	e := newEnv(t)
	o := e.signup(t, "boss@example.com", "Org")
	v := e.signup(t, "val@example.com", "Val's")
	base := "/v1/orgs/" + o.Org.ID
	inviteAs := func(t *testing.T, token, email, role string) *resp {
		return e.do(t, req{method: "POST", path: base + "/invitations", token: token, body: map[string]string{"email": email, "role": role}})
	}

	t.Run("invite and accept", func(t *testing.T) {
		var inv struct{ Email, Role, OrgID string }
		inviteAs(t, o.AccessToken, "VAL@example.com", "viewer").expect(t, http.StatusCreated).decode(t, &inv)
		if inv.Email != "val@example.com" || inv.Role != "viewer" {
			t.Fatalf("invitation %+v", inv)
		}
		tok := e.mailedToken(t, "val@example.com")
		// Someone else cannot use Val's invitation.
		e.do(t, req{method: "POST", path: "/v1/invitations/accept", token: o.AccessToken, body: map[string]string{"token": tok}}).
			problem(t, http.StatusNotFound, "not-found")
		var org struct{ ID, Role string }
		e.do(t, req{method: "POST", path: "/v1/invitations/accept", token: v.AccessToken, body: map[string]string{"token": tok}}).
			expect(t, http.StatusOK).decode(t, &org)
		if org.ID != o.Org.ID || org.Role != "viewer" {
			t.Fatalf("accepted into %+v", org)
		}
		e.do(t, req{method: "POST", path: "/v1/invitations/accept", token: v.AccessToken, body: map[string]string{"token": tok}}).
			problem(t, http.StatusNotFound, "not-found")
		var ms api.List[member]
		e.do(t, req{method: "GET", path: base + "/members", token: v.AccessToken}).expect(t, http.StatusOK).decode(t, &ms)
		if len(ms.Data) != 2 || ms.NextCursor != nil {
			t.Fatalf("members %+v", ms)
		}
		inviteAs(t, o.AccessToken, "val@example.com", "admin").problem(t, http.StatusConflict, "conflict")
	})
	t.Run("viewer cannot manage members", func(t *testing.T) {
		inviteAs(t, v.AccessToken, "x@example.com", "viewer").problem(t, http.StatusForbidden, "insufficient-scope")
		e.do(t, req{method: "DELETE", path: base + "/members/" + o.User.ID, token: v.AccessToken}).problem(t, http.StatusForbidden, "insufficient-scope")
	})
	t.Run("admin cannot grant owner", func(t *testing.T) {
		e.do(t, req{method: "PATCH", path: base + "/members/" + v.User.ID, token: o.AccessToken, body: map[string]string{"role": "admin"}}).expect(t, http.StatusOK)
		e.do(t, req{method: "PATCH", path: base + "/members/" + v.User.ID, token: v.AccessToken, body: map[string]string{"role": "owner"}}).
			problem(t, http.StatusForbidden, "forbidden")
		inviteAs(t, v.AccessToken, "y@example.com", "owner").problem(t, http.StatusForbidden, "forbidden")
		e.do(t, req{method: "DELETE", path: base + "/members/" + o.User.ID, token: v.AccessToken}).problem(t, http.StatusForbidden, "forbidden")
		inviteAs(t, v.AccessToken, "y@example.com", "viewer").expect(t, http.StatusCreated)
	})
	t.Run("the last owner stays", func(t *testing.T) {
		e.do(t, req{method: "PATCH", path: base + "/members/" + o.User.ID, token: o.AccessToken, body: map[string]string{"role": "admin"}}).
			problem(t, http.StatusConflict, "last-owner")
		e.do(t, req{method: "DELETE", path: base + "/members/" + o.User.ID, token: o.AccessToken}).problem(t, http.StatusConflict, "last-owner")
		// With a second owner the first may step down.
		e.do(t, req{method: "PATCH", path: base + "/members/" + v.User.ID, token: o.AccessToken, body: map[string]string{"role": "owner"}}).expect(t, http.StatusOK)
		e.do(t, req{method: "DELETE", path: base + "/members/" + o.User.ID, token: o.AccessToken}).expect(t, http.StatusNoContent)
		e.do(t, req{method: "GET", path: base, token: o.AccessToken}).problem(t, http.StatusNotFound, "not-found")
		var m member
		e.do(t, req{method: "GET", path: base + "/members/" + v.User.ID, token: v.AccessToken}).expect(t, http.StatusOK).decode(t, &m)
		if m.Role != "owner" {
			t.Fatalf("member %+v", m)
		}
		e.do(t, req{method: "DELETE", path: base + "/members/" + v.User.ID, token: v.AccessToken}).problem(t, http.StatusConflict, "last-owner")
	})
	t.Run("member If-Match", func(t *testing.T) {
		r := e.do(t, req{method: "GET", path: base + "/members/" + v.User.ID, token: v.AccessToken}).expect(t, http.StatusOK)
		e.do(t, req{method: "PATCH", path: base + "/members/" + v.User.ID, token: v.AccessToken, body: map[string]string{"role": "owner"},
			header: map[string]string{"If-Match": `"old"`}}).problem(t, http.StatusPreconditionFailed, "precondition-failed")
		e.do(t, req{method: "PATCH", path: base + "/members/" + v.User.ID, token: v.AccessToken, body: map[string]string{"role": "owner"},
			header: map[string]string{"If-Match": r.header.Get("ETag")}}).expect(t, http.StatusOK)
	})
}

type auditEvent struct {
	ID         string `json:"id"`
	ActorType  string `json:"actor_type"`
	ActorID    string `json:"actor_id"`
	Action     string `json:"action"`
	Target     string `json:"target"`
	ClientAddr string `json:"client_addr"`
	RequestID  string `json:"request_id"`
}

// TestAuditLog: mutating calls record actor, action, target, client address
// and request ID; the log filters by action and actor and paginates.
func TestAuditLog(t *testing.T) {
	e := newEnv(t)
	o := e.signup(t, "audit@example.com", "Au")
	base := "/v1/orgs/" + o.Org.ID
	r := e.do(t, req{method: "POST", path: base + "/api-keys", token: o.AccessToken, body: map[string]any{"name": "k", "scopes": []string{"admin"}}}).
		expect(t, http.StatusCreated)
	var k apiKey
	r.decode(t, &k)
	createReq := r.header.Get("X-Request-Id")
	r = e.do(t, req{method: "PATCH", path: base, token: k.Secret, body: map[string]string{"name": "Au2"}}).expect(t, http.StatusOK)
	patchReq := r.header.Get("X-Request-Id")
	e.do(t, req{method: "GET", path: base, token: k.Secret}).expect(t, http.StatusOK) // reads are not audited

	var all api.List[auditEvent]
	e.do(t, req{method: "GET", path: base + "/audit-events", token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &all)
	want := []auditEvent{
		{ActorType: "api_key", ActorID: k.ID, Action: "org.update", Target: o.Org.ID, ClientAddr: "127.0.0.1", RequestID: patchReq},
		{ActorType: "user", ActorID: o.User.ID, Action: "api_key.create", Target: k.ID, ClientAddr: "127.0.0.1", RequestID: createReq},
		{ActorType: "user", ActorID: o.User.ID, Action: "org.create", Target: o.Org.ID, ClientAddr: "127.0.0.1"},
	}
	if len(all.Data) != len(want) {
		t.Fatalf("events %+v", all.Data)
	}
	for i, w := range want {
		got := all.Data[i]
		w.ID = got.ID
		if w.RequestID == "" {
			w.RequestID = got.RequestID
		}
		if got != w || got.RequestID == "" {
			t.Errorf("event %d = %+v, want %+v", i, got, w)
		}
	}
	t.Run("filter by action", func(t *testing.T) {
		var l api.List[auditEvent]
		e.do(t, req{method: "GET", path: base + "/audit-events?action=api_key.create", token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &l)
		if len(l.Data) != 1 || l.Data[0].Target != k.ID {
			t.Fatalf("%+v", l.Data)
		}
	})
	t.Run("filter by actor", func(t *testing.T) {
		var l api.List[auditEvent]
		e.do(t, req{method: "GET", path: base + "/audit-events?actor_id=" + k.ID, token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &l)
		if len(l.Data) != 1 || l.Data[0].Action != "org.update" {
			t.Fatalf("%+v", l.Data)
		}
	})
	t.Run("paginated newest first", func(t *testing.T) {
		var p1, p2 api.List[auditEvent]
		e.do(t, req{method: "GET", path: base + "/audit-events?limit=2", token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &p1)
		if len(p1.Data) != 2 || p1.NextCursor == nil {
			t.Fatalf("page 1 %+v", p1)
		}
		e.do(t, req{method: "GET", path: base + "/audit-events?limit=2&cursor=" + *p1.NextCursor, token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &p2)
		if len(p2.Data) != 1 || p2.NextCursor != nil || p2.Data[0].Action != "org.create" {
			t.Fatalf("page 2 %+v", p2)
		}
	})
	t.Run("every mutating route is audited", func(t *testing.T) {
		v := e.signup(t, "v@example.com", "V")
		e.do(t, req{method: "POST", path: base + "/invitations", token: o.AccessToken, body: map[string]string{"email": "v@example.com", "role": "viewer"}}).expect(t, http.StatusCreated)
		e.do(t, req{method: "POST", path: "/v1/invitations/accept", token: v.AccessToken, body: map[string]string{"token": e.mailedToken(t, "v@example.com")}}).expect(t, http.StatusOK)
		e.do(t, req{method: "PATCH", path: base + "/members/" + v.User.ID, token: o.AccessToken, body: map[string]string{"role": "admin"}}).expect(t, http.StatusOK)
		e.do(t, req{method: "DELETE", path: base + "/members/" + v.User.ID, token: o.AccessToken}).expect(t, http.StatusNoContent)
		e.do(t, req{method: "DELETE", path: base + "/api-keys/" + k.ID, token: o.AccessToken}).expect(t, http.StatusNoContent)
		var l api.List[auditEvent]
		e.do(t, req{method: "GET", path: base + "/audit-events?limit=5", token: o.AccessToken}).expect(t, http.StatusOK).decode(t, &l)
		got := []string{}
		for _, ev := range l.Data {
			got = append(got, ev.Action)
		}
		wantActions := []string{"api_key.delete", "member.delete", "member.update", "member.join", "member.invite"}
		for i := range wantActions {
			if i >= len(got) || got[i] != wantActions[i] {
				t.Fatalf("actions %v, want %v", got, wantActions)
			}
		}
	})
}
