package console

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/internal/ratelimit"
	"github.com/aeriemq/aerie/tenancy"
)

func TestSignupLoginLogout(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)

	res, doc := c.get("/")
	if res.Request.URL.Path != "/login" {
		t.Fatalf("anonymous / went to %s, want /login", res.Request.URL.Path)
	}
	orgID := c.signup("dev@example.com", "Dev Co")
	_, doc = c.get("/orgs/" + orgID + "/")
	if got := doc.Find(`[data-testid="org-name"]`).Text(); got != "Dev Co" {
		t.Errorf("overview shows org %q", got)
	}
	if got := doc.Find(`[data-testid="my-role"]`).Text(); got != "owner" {
		t.Errorf("role %q, want owner", got)
	}
	at, rt := c.cookie(accessCookie), c.cookie(refreshCookie)
	if at == nil || rt == nil {
		t.Fatal("no session cookies after sign-up")
	}

	// Logout revokes the login's refresh family and clears the cookies.
	res, doc = c.post("/logout", nil)
	if res.Request.URL.Path != "/login" || !strings.Contains(doc.Find(`[data-testid="flash"]`).Text(), "logged out") {
		t.Fatalf("logout ended at %s", res.Request.URL)
	}
	if _, err := e.svc.Refresh(context.Background(), rt.Value); err == nil {
		t.Error("refresh token still valid after logout")
	}
	if res, _ := c.get("/orgs/" + orgID + "/"); res.Request.URL.Path != "/login" {
		t.Errorf("after logout an org page answered at %s", res.Request.URL)
	}

	// Wrong password: 401 with the error next to the password field.
	res, doc = c.post("/login", url.Values{"email": {"dev@example.com"}, "password": {"wrong-password"}})
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", res.StatusCode)
	}
	if doc.Find(`#f-password[aria-invalid="true"][aria-describedby="e-password"]`).Length() != 1 ||
		!strings.Contains(doc.Find(`#e-password`).Text(), "wrong") {
		t.Error("wrong-password error is not shown next to the password field")
	}
	// Right password, with next: back where the user was going.
	res, _ = c.post("/login", url.Values{"email": {"dev@example.com"}, "password": {"correct-horse-1"},
		"next": {"/orgs/" + orgID + "/members"}})
	if res.StatusCode != http.StatusOK || res.Request.URL.Path != "/orgs/"+orgID+"/members" {
		t.Errorf("login: %d at %s", res.StatusCode, res.Request.URL)
	}
	// An off-site next is ignored.
	if got := safeNext("//evil.example/x"); got != "/" {
		t.Errorf("safeNext(//evil) = %q", got)
	}
}

// TestInvitationLinkForNewUser: an invitee without an account follows the
// mailed link, is sent to log in, signs up from there and lands back on the
// invitation.
func TestInvitationLinkForNewUser(t *testing.T) {
	e := newEnv(t)
	owner := e.client(t)
	orgID := owner.signup("owner@example.com", "Acme")
	tok := e.inviteToken(t, owner, orgID, "new@example.com", "viewer")
	c := e.client(t)
	m, _ := e.out.Last("new@example.com")
	res, doc := c.get(linkPath(t, m.Body))
	if res.Request.URL.Path != "/login" {
		t.Fatalf("anonymous invitation link went to %s", res.Request.URL)
	}
	href := doc.Find(`main a[href^="/signup"]`).AttrOr("href", "")
	res, doc = c.get(href)
	if doc.Find(`input[name="next"]`).AttrOr("value", "") == "" {
		t.Fatalf("sign-up from %s lost where to go next", href)
	}
	res, doc = c.post("/signup", url.Values{"email": {"new@example.com"}, "password": {"correct-horse-1"}, "org_name": {"Mine"},
		"next": {doc.Find(`input[name="next"]`).AttrOr("value", "")}})
	if res.Request.URL.Path != "/invitations/accept" || doc.Find(`input[name="token"]`).AttrOr("value", "") != tok {
		t.Fatalf("after sign-up at %s", res.Request.URL)
	}
	res, doc = c.post("/invitations/accept", url.Values{"token": {tok}})
	if res.Request.URL.Path != "/orgs/"+orgID+"/" || doc.Find(`[data-testid="my-role"]`).Text() != "viewer" {
		t.Errorf("accept: at %s", res.Request.URL)
	}
	// An invitation is for its address only.
	other := e.client(t)
	other.signup("other@example.com", "O")
	tok2 := e.inviteToken(t, owner, orgID, "someone@example.com", "viewer")
	other.get("/")
	if res, _ := other.post("/invitations/accept", url.Values{"token": {tok2}}); res.StatusCode != http.StatusNotFound {
		t.Errorf("accepting another address's invitation: %d", res.StatusCode)
	}
}

func TestSignupErrorsNextToFields(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	c.signup("taken@example.com", "T")
	d := e.client(t)
	d.get("/signup")
	res, doc := d.post("/signup", url.Values{"email": {"not-an-email"}, "password": {"short"}, "org_name": {""}})
	if res.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("invalid sign-up: %d", res.StatusCode)
	}
	for _, f := range []string{"email", "password", "org_name"} {
		if doc.Find(`label[for="f-`+f+`"] #e-`+f).Length() != 1 || doc.Find(`#f-`+f+`[aria-invalid="true"]`).Length() != 1 {
			t.Errorf("no error shown inside the %s field's label", f)
		}
	}
	if v, _ := doc.Find(`#f-email`).Attr("value"); v != "not-an-email" {
		t.Errorf("email not kept: %q", v)
	}
	if _, ok := doc.Find(`#f-password`).Attr("value"); ok {
		t.Error("password echoed back into the form")
	}
	res, doc = d.post("/signup", url.Values{"email": {"taken@example.com"}, "password": {"correct-horse-1"}, "org_name": {"X"}})
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(doc.Find("#e-email").Text(), "already registered") {
		t.Errorf("taken email: %d %q", res.StatusCode, doc.Find("#e-email").Text())
	}
}

func TestSessionCookieFlags(t *testing.T) {
	for _, secure := range []bool{false, true} {
		e := newEnv(t, func(d *Deps) { d.Secure = secure })
		vals := url.Values{"email": {"x@example.com"}, "password": {"correct-horse-1"}, "org_name": {"X"}}
		c := e.client(t)
		vals.Set("csrf_token", c.csrf())
		c.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		res, err := c.http.PostForm(e.srv.URL+"/signup", vals)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("signup: %d", res.StatusCode)
		}
		seen := map[string]bool{}
		for _, ck := range res.Cookies() {
			if ck.Name != accessCookie && ck.Name != refreshCookie {
				continue
			}
			seen[ck.Name] = true
			if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure != secure || ck.Path != "/" {
				t.Errorf("secure=%v: cookie %s: HttpOnly=%v SameSite=%v Secure=%v", secure, ck.Name, ck.HttpOnly, ck.SameSite, ck.Secure)
			}
		}
		if !seen[accessCookie] || !seen[refreshCookie] {
			t.Errorf("secure=%v: session cookies set: %v", secure, seen)
		}
	}
}

func TestExpiredAccessTokenRefreshesTransparently(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	orgID := c.signup("r@example.com", "R")
	oldRT := c.cookie(refreshCookie).Value

	// The access token is gone (expired); only the refresh token is left.
	// Several requests arrive at once (auto-refreshing regions, tabs): all
	// are served, and the login survives (no reuse detection tripped).
	c.setCookie(accessCookie, "expired")
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/orgs/"+orgID+"/", nil)
			for _, ck := range c.http.Jar.Cookies(req.URL) {
				req.AddCookie(ck)
			}
			res, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			codes[i] = res.StatusCode
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusOK {
			t.Errorf("request %d with an expired access token: %d", i, code)
		}
	}
	res, doc := c.get("/orgs/" + orgID + "/")
	if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="org-name"]`).Text() != "R" {
		t.Fatalf("page after refresh: %d at %s", res.StatusCode, res.Request.URL)
	}
	newRT := c.cookie(refreshCookie).Value
	if newRT == oldRT {
		t.Fatal("refresh token was not rotated")
	}
	if _, err := e.svc.VerifyAccessToken(context.Background(), c.cookie(accessCookie).Value); err != nil {
		t.Errorf("new access cookie does not verify: %v", err)
	}
	// The rotated-out token is spent; the new one still works (the family was not revoked).
	if _, err := e.svc.Refresh(context.Background(), newRT); err != nil {
		t.Errorf("new refresh token refused: %v", err)
	}
}

func TestCSRFRefusedWithoutToken(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	orgID := c.signup("o@example.com", "O")
	c.get("/orgs/" + orgID + "/api-keys")
	for _, path := range []string{"/orgs/" + orgID + "/api-keys", "/orgs/" + orgID + "/settings", "/logout", "/login"} {
		res, _ := c.postRaw(path, url.Values{"name": {"k"}, "scope": {"read"}, "email": {"o@example.com"}, "password": {"correct-horse-1"}})
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without token: %d, want 403", path, res.StatusCode)
		}
		res, _ = c.postRaw(path, url.Values{"name": {"k"}, "scope": {"read"}, "csrf_token": {"forged"}})
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s with a forged token: %d, want 403", path, res.StatusCode)
		}
	}
	keys, _, err := e.svc.ListAPIKeys(context.Background(), orgID, tenancy.Page{})
	if err != nil || len(keys) != 0 {
		t.Errorf("a key was created by a refused post: %v %v", keys, err)
	}
	// Every form on the pages carries the token.
	for _, page := range []string{"/orgs/" + orgID + "/api-keys", "/orgs/" + orgID + "/members", "/orgs/" + orgID + "/settings", "/orgs/" + orgID + "/billing"} {
		_, doc := c.get(page)
		doc.Find(`form[method="post"]`).Each(func(_ int, f *goquery.Selection) {
			if f.Find(`input[name="csrf_token"]`).Length() != 1 {
				a, _ := f.Attr("action")
				t.Errorf("%s: form %s has no csrf token", page, a)
			}
		})
	}
}

func TestAPIKeySecretShownOnceAndUsable(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	orgID := c.signup("k@example.com", "K")
	c.get("/orgs/" + orgID + "/api-keys")
	res, doc := c.post("/orgs/"+orgID+"/api-keys", url.Values{"name": {"ci deploy"}, "scope": {"write"}})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create key: %d %s", res.StatusCode, doc.Find("main").Text())
	}
	secret := strings.TrimSpace(doc.Find(`[data-testid="secret-value"]`).Text())
	if !strings.HasPrefix(secret, "aer_") {
		t.Fatalf("secret not shown: %q", secret)
	}
	if doc.Find(`button[data-copy="#new-secret-value"]`).Length() != 1 {
		t.Error("no copy button for the secret")
	}
	ka, err := e.svc.AuthenticateAPIKey(context.Background(), secret)
	if err != nil || ka.Key.OrgID != orgID || ka.EffectiveScope() != tenancy.ScopeWrite {
		t.Fatalf("shown secret does not authenticate as a write key of the org: %+v %v", ka, err)
	}
	if doc.Find(`[data-testid="key-ci deploy"]`).Length() != 1 {
		t.Error("new key not listed")
	}
	// Shown once: not on the next load, not in any cookie.
	_, doc = c.get("/orgs/" + orgID + "/api-keys")
	if doc.Find(`[data-testid="secret-value"]`).Length() != 0 || strings.Contains(doc.Text(), secret) {
		t.Error("secret shown again")
	}
	u, _ := url.Parse(e.srv.URL)
	for _, ck := range c.http.Jar.Cookies(u) {
		if strings.Contains(ck.Value, secret[4:]) {
			t.Errorf("secret stored in cookie %s", ck.Name)
		}
	}
	// Invalid input: the error sits next to its field.
	res, doc = c.post("/orgs/"+orgID+"/api-keys", url.Values{"name": {""}, "scope": {"read"}})
	if res.StatusCode != http.StatusUnprocessableEntity || doc.Find(`#e-name`).Length() != 1 {
		t.Errorf("empty name: %d, error next to field: %d", res.StatusCode, doc.Find(`#e-name`).Length())
	}
	// Revoke.
	c.get("/orgs/" + orgID + "/api-keys")
	res, doc = c.post("/orgs/"+orgID+"/api-keys/"+ka.Key.ID+"/revoke", nil)
	if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="key-ci deploy"]`).Length() != 0 {
		t.Errorf("revoke: %d, still listed: %d", res.StatusCode, doc.Find(`[data-testid="key-ci deploy"]`).Length())
	}
	if _, err := e.svc.AuthenticateAPIKey(context.Background(), secret); err == nil {
		t.Error("revoked key still authenticates")
	}
}

// TestViewerCannotWrite: a viewer sees no write controls on any page, and the
// server refuses each write anyway (403, nothing changed).
func TestViewerCannotWrite(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	owner := e.client(t)
	orgID := owner.signup("owner@example.com", "Acme")
	owner.get("/orgs/" + orgID + "/api-keys")
	owner.post("/orgs/"+orgID+"/api-keys", url.Values{"name": {"existing"}, "scope": {"read"}})
	keys, _, _ := e.svc.ListAPIKeys(ctx, orgID, tenancy.Page{})
	if len(keys) != 1 {
		t.Fatalf("setup: %d keys", len(keys))
	}
	viewer := e.joinAs(t, owner, orgID, "viewer@example.com", tenancy.RoleViewer)
	ownerID := mustMember(t, e, orgID, "owner@example.com")

	base := "/orgs/" + orgID
	writeControls := `form[method="post"]:not(.logout)`
	for _, page := range []string{"/", "/members", "/api-keys", "/audit", "/settings", "/billing"} {
		res, doc := viewer.get(base + page)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("viewer GET %s: %d", page, res.StatusCode)
		}
		if n := doc.Find(writeControls).Length(); n != 0 {
			t.Errorf("viewer sees %d write form(s) on %s", n, page)
		}
	}
	// The owner does see them (the check above is not vacuous).
	for _, page := range []string{"/members", "/api-keys", "/settings", "/billing"} {
		if _, doc := owner.get(base + page); doc.Find(writeControls).Length() == 0 {
			t.Errorf("owner sees no write form on %s", page)
		}
	}

	viewer.get(base + "/")
	mailsBefore := len(e.out.Messages())
	writes := []struct {
		path string
		vals url.Values
	}{
		{base + "/api-keys", url.Values{"name": {"sneaky"}, "scope": {"read"}}},
		{base + "/api-keys/" + keys[0].ID + "/revoke", nil},
		{base + "/settings", url.Values{"name": {"Pwned"}, "expect": {"Acme"}}},
		{base + "/invitations", url.Values{"email": {"friend@example.com"}, "role": {"viewer"}}},
		{base + "/members/" + ownerID + "/role", url.Values{"role": {"viewer"}}},
		{base + "/members/" + ownerID + "/remove", nil},
		{base + "/billing/plan", url.Values{"plan": {"pro"}}},
		{base + "/billing/spend-limit", url.Values{"limit": {"1"}, "action": {"suspend"}}},
	}
	for _, w := range writes {
		res, doc := viewer.post(w.path, w.vals)
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("viewer POST %s: %d, want 403", w.path, res.StatusCode)
		} else if doc.Find(`[data-testid="page-error"]`).Length() != 1 {
			t.Errorf("viewer POST %s: no error message", w.path)
		}
	}
	keys, _, _ = e.svc.ListAPIKeys(ctx, orgID, tenancy.Page{})
	o, _ := e.svc.Org(ctx, orgID)
	role, _ := e.svc.MemberRole(ctx, orgID, ownerID)
	sub, _ := e.bill.Subscription(ctx, orgID)
	if len(keys) != 1 || o.Name != "Acme" || role != tenancy.RoleOwner || sub.PlanID == "pro" || sub.SpendLimitCents != nil || len(e.out.Messages()) != mailsBefore {
		t.Errorf("a refused write changed something: keys=%d name=%q owner role=%s plan=%s mails=%d",
			len(keys), o.Name, role, sub.PlanID, len(e.out.Messages()))
	}
	// A non-member sees the org as not existing.
	stranger := e.client(t)
	stranger.signup("stranger@example.com", "S")
	if res, _ := stranger.get(base + "/api-keys"); res.StatusCode != http.StatusNotFound {
		t.Errorf("stranger GET: %d, want 404", res.StatusCode)
	}
	stranger.get("/")
	if res, _ := stranger.post(base+"/api-keys", url.Values{"name": {"x"}, "scope": {"read"}}); res.StatusCode != http.StatusNotFound {
		t.Errorf("stranger POST: %d, want 404", res.StatusCode)
	}
}

func mustMember(t *testing.T, e *env, orgID, email string) string {
	t.Helper()
	ms, _, err := e.svc.ListMembers(context.Background(), orgID, tenancy.Page{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Email == email {
			return m.UserID
		}
	}
	t.Fatalf("%s is not a member", email)
	return ""
}

func TestMembersInviteChangeRoleRemove(t *testing.T) {
	e := newEnv(t)
	owner := e.client(t)
	orgID := owner.signup("owner@example.com", "Acme")
	admin := e.joinAs(t, owner, orgID, "admin@example.com", tenancy.RoleAdmin)
	adminID := mustMember(t, e, orgID, "admin@example.com")
	base := "/orgs/" + orgID

	// The pending invitation is listed until accepted.
	owner.get(base + "/members")
	owner.post(base+"/invitations", url.Values{"email": {"later@example.com"}, "role": {"viewer"}})
	_, doc := owner.get(base + "/members")
	if doc.Find(`[data-testid="invitation-later@example.com"]`).Length() != 1 || doc.Find(`[data-testid="invitation-admin@example.com"]`).Length() != 0 {
		t.Error("pending invitations: want later@ listed and the accepted admin@ not")
	}
	// Admin cannot invite an owner: error next to the role field.
	admin.get(base + "/members")
	res, doc := admin.post(base+"/invitations", url.Values{"email": {"x@example.com"}, "role": {"owner"}})
	if res.StatusCode != http.StatusUnprocessableEntity || doc.Find(`#e-role`).Length() != 1 {
		t.Errorf("admin inviting an owner: %d, role error %d", res.StatusCode, doc.Find(`#e-role`).Length())
	}
	// Owner demotes the admin to viewer.
	owner.get(base + "/members")
	res, doc = owner.post(base+"/members/"+adminID+"/role", url.Values{"role": {"viewer"}})
	if res.StatusCode != http.StatusOK || !strings.Contains(doc.Find(`[data-testid="flash"]`).Text(), "admin@example.com is now viewer") {
		t.Errorf("change role: %d %q", res.StatusCode, doc.Find(`[data-testid="flash"]`).Text())
	}
	// Last owner cannot leave.
	ownerID := mustMember(t, e, orgID, "owner@example.com")
	if res, _ := owner.post(base+"/members/"+ownerID+"/remove", nil); res.StatusCode != http.StatusConflict {
		t.Errorf("removing the last owner: %d, want 409", res.StatusCode)
	}
	owner.get(base + "/members")
	res, doc = owner.post(base+"/members/"+adminID+"/remove", nil)
	if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="member-admin@example.com"]`).Length() != 0 {
		t.Errorf("remove: %d", res.StatusCode)
	}
	// The removed user's org switcher no longer offers the org.
	_, doc = admin.get("/")
	if doc.Find(`[data-testid="org-switcher"] option[value="`+orgID+`"]`).Length() != 0 {
		t.Error("removed member still has the org in the switcher")
	}
}

func TestOrgSwitcherAndRename(t *testing.T) {
	e := newEnv(t)
	owner := e.client(t)
	orgA := owner.signup("owner@example.com", "Alpha")
	other := e.client(t)
	orgB := other.signup("other@example.com", "Beta")
	tok := e.inviteToken(t, other, orgB, "owner@example.com", tenancy.RoleAdmin)
	owner.get("/invitations/accept?token=" + tok)
	owner.post("/invitations/accept", url.Values{"token": {tok}})

	_, doc := owner.get("/orgs/" + orgA + "/")
	opts := doc.Find(`[data-testid="org-switcher"] option`)
	if opts.Length() != 2 {
		t.Fatalf("switcher offers %d orgs, want 2", opts.Length())
	}
	if sel, _ := doc.Find(`[data-testid="org-switcher"] option[selected]`).Attr("value"); sel != orgA {
		t.Errorf("switcher selects %q, want %s", sel, orgA)
	}
	res, doc := owner.get("/switch-org?org=" + orgB)
	if res.Request.URL.Path != "/orgs/"+orgB+"/" || doc.Find(`[data-testid="my-role"]`).Text() != "admin" {
		t.Errorf("switch to B: at %s as %q", res.Request.URL, doc.Find(`[data-testid="my-role"]`).Text())
	}
	third := e.client(t)
	orgC := third.signup("third@example.com", "Gamma")
	if res, _ := owner.get("/switch-org?org=" + orgC); res.StatusCode != http.StatusNotFound {
		t.Errorf("switch to a foreign org: %d", res.StatusCode)
	}

	owner.get("/orgs/" + orgA + "/settings")
	res, doc = owner.post("/orgs/"+orgA+"/settings", url.Values{"name": {"Alpha Two"}, "expect": {"Alpha"}})
	if res.StatusCode != http.StatusOK || doc.Find(`#f-name`).AttrOr("value", "") != "Alpha Two" {
		t.Errorf("rename: %d", res.StatusCode)
	}
	// A stale form (renamed meanwhile) is reported next to the field.
	res, doc = owner.post("/orgs/"+orgA+"/settings", url.Values{"name": {"Alpha Three"}, "expect": {"Alpha"}})
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(doc.Find(`#e-name`).Text(), "meanwhile") {
		t.Errorf("stale rename: %d %q", res.StatusCode, doc.Find(`#e-name`).Text())
	}
}

func TestVerifyEmailAndPasswordReset(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.client(t)
	c.signup("v@example.com", "V")
	m, _ := e.out.Last("v@example.com")
	res, doc := c.get(linkPath(t, m.Body))
	if res.StatusCode != http.StatusOK || doc.Find(`form[action="/verify-email"]`).Length() != 1 {
		t.Fatalf("verify link page: %d", res.StatusCode)
	}
	u, _ := e.svc.CheckPassword(ctx, "v@example.com", "correct-horse-1")
	if u.EmailVerified {
		t.Fatal("following the link alone verified the email (should need the button)")
	}
	res, doc = c.post("/verify-email", url.Values{"token": {linkToken(t, m.Body)}})
	if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="verified"]`).Length() != 1 {
		t.Errorf("verify: %d", res.StatusCode)
	}
	if u, _ = e.svc.CheckPassword(ctx, "v@example.com", "correct-horse-1"); !u.EmailVerified {
		t.Error("email not verified")
	}
	res, doc = c.post("/verify-email", url.Values{"token": {linkToken(t, m.Body)}})
	if res.StatusCode != http.StatusBadRequest || doc.Find(`[data-testid="page-error"]`).Length() != 1 {
		t.Errorf("reused verify token: %d", res.StatusCode)
	}

	// Password reset, signed out.
	anon := e.client(t)
	anon.get("/reset-password")
	res, doc = anon.post("/reset-password", url.Values{"email": {"v@example.com"}})
	if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="reset-sent"]`).Length() != 1 {
		t.Fatalf("request reset: %d", res.StatusCode)
	}
	m, _ = e.out.Last("v@example.com")
	if !strings.Contains(m.Subject, "Reset") {
		t.Fatalf("no reset mail: %q", m.Subject)
	}
	_, doc = anon.get(linkPath(t, m.Body))
	if doc.Find(`form[action="/reset-password/confirm"] #f-password`).Length() != 1 {
		t.Fatal("reset link shows no new-password form")
	}
	res, doc = anon.post("/reset-password/confirm", url.Values{"token": {linkToken(t, m.Body)}, "password": {"short"}})
	if res.StatusCode != http.StatusUnprocessableEntity || doc.Find(`#e-password`).Length() != 1 {
		t.Errorf("short new password: %d", res.StatusCode)
	}
	res, _ = anon.post("/reset-password/confirm", url.Values{"token": {linkToken(t, m.Body)}, "password": {"a-new-password-2"}})
	if res.Request.URL.Path != "/login" {
		t.Errorf("after reset at %s", res.Request.URL)
	}
	// The old browser session was signed out everywhere.
	c.setCookie(accessCookie, "expired")
	if res, _ := c.get("/"); res.Request.URL.Path != "/login" {
		t.Errorf("old session still signed in at %s", res.Request.URL)
	}
	res, _ = anon.post("/login", url.Values{"email": {"v@example.com"}, "password": {"a-new-password-2"}})
	if !strings.HasPrefix(res.Request.URL.Path, "/orgs/") {
		t.Errorf("login with the new password ended at %s", res.Request.URL)
	}
}

func TestLoginRateLimited(t *testing.T) {
	e := newEnv(t, func(d *Deps) {
		d.LoginLimits = ratelimit.LoginLimits{PerEmailBurst: 2, PerEmailEvery: time.Hour, PerAddrBurst: 100, PerAddrEvery: time.Second}
	})
	c := e.client(t)
	c.signup("l@example.com", "L")
	c.post("/logout", nil)
	for i := 0; i < 2; i++ {
		if res, _ := c.post("/login", url.Values{"email": {"l@example.com"}, "password": {"wrong-password"}}); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, res.StatusCode)
		}
	}
	res, doc := c.post("/login", url.Values{"email": {"L@example.com"}, "password": {"correct-horse-1"}})
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" ||
		!strings.Contains(doc.Find("#e-email").Text(), "Too many attempts") {
		t.Errorf("third attempt: %d %q", res.StatusCode, doc.Find("#e-email").Text())
	}
}

func TestAuditLogPaginated(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	orgID := c.signup("a@example.com", "A")
	uid := mustMember(t, e, orgID, "a@example.com")
	for i := 0; i < 30; i++ {
		if err := e.svc.RecordAudit(context.Background(), tenancy.Actor{UserID: uid}, orgID, "test.event", "t"); err != nil {
			t.Fatal(err)
		}
	}
	_, doc := c.get("/orgs/" + orgID + "/audit")
	rows := doc.Find(`[data-testid="audit-events"] tbody tr`)
	if rows.Length() != 25 {
		t.Fatalf("first page: %d rows, want 25", rows.Length())
	}
	older, ok := doc.Find(`[data-testid="older"]`).Attr("href")
	if !ok {
		t.Fatal("no link to older events")
	}
	_, doc = c.get(older)
	// 31 events: 30 test events and the org.create of sign-up.
	if n := doc.Find(`[data-testid="audit-events"] tbody tr`).Length(); n != 6 {
		t.Errorf("second page: %d rows, want 6", n)
	}
	if doc.Find(`[data-testid="older"]`).Length() != 0 {
		t.Error("last page links to older events")
	}
	if !strings.Contains(doc.Find(`[data-testid="audit-events"]`).Text(), "org.create") {
		t.Error("oldest event missing on the last page")
	}
	_, doc = c.get("/orgs/" + orgID + "/audit?action=org.create")
	if n := doc.Find(`[data-testid="audit-events"] tbody tr`).Length(); n != 1 {
		t.Errorf("filtered: %d rows, want 1", n)
	}
}

func TestBillingAndInvoicePages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.client(t)
	orgID := c.signup("b@example.com", "B")
	res, doc := c.get("/orgs/" + orgID + "/billing")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("billing: %d", res.StatusCode)
	}
	sub, _ := e.bill.Subscription(ctx, orgID)
	plan, _ := e.bill.Plans().Get(ctx, sub.PlanID)
	if got := doc.Find(`[data-testid="current-plan"]`).Text(); got != plan.Name {
		t.Errorf("current plan %q, want %q", got, plan.Name)
	}
	if doc.Find(`[data-testid="draft-lines-total"]`).Length() != 1 || doc.Find(`[data-testid="no-invoices"]`).Length() != 1 {
		t.Error("draft total or empty-invoices note missing")
	}
	plans, _ := e.bill.Plans().List(ctx)
	var higher billing.Plan
	for _, p := range plans {
		if p.Position > plan.Position {
			higher = p
			break
		}
	}
	if higher.ID != "" {
		res, doc = c.post("/orgs/"+orgID+"/billing/plan", url.Values{"plan": {higher.ID}})
		if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="current-plan"]`).Text() != higher.Name {
			t.Errorf("upgrade: %d, plan %q", res.StatusCode, doc.Find(`[data-testid="current-plan"]`).Text())
		}
	}
	// Spend limit: invalid amount refused next to its field; a valid one saved.
	c.get("/orgs/" + orgID + "/billing")
	res, doc = c.post("/orgs/"+orgID+"/billing/spend-limit", url.Values{"limit": {"lots"}, "action": {"suspend"}})
	if res.StatusCode != http.StatusUnprocessableEntity || doc.Find(`#f-limit[aria-invalid="true"]`).Length() != 1 {
		t.Errorf("invalid spend limit: %d", res.StatusCode)
	}
	res, doc = c.post("/orgs/"+orgID+"/billing/spend-limit", url.Values{"limit": {"49.90"}, "action": {"suspend"}})
	if sub, _ := e.bill.Subscription(ctx, orgID); sub.SpendLimitCents == nil || *sub.SpendLimitCents != 4990 || sub.LimitAction != "suspend" {
		t.Errorf("spend limit not saved: %+v", sub)
	}
	if res.StatusCode != http.StatusOK || !strings.Contains(doc.Find(`[data-testid="spend-limit"]`).Text(), "49.90") ||
		doc.Find(`#f-limit`).AttrOr("value", "") != "49.90" || doc.Find(`input[name="action"][value="suspend"][checked]`).Length() != 1 {
		t.Errorf("spend limit page: %d %q", res.StatusCode, doc.Find(`[data-testid="spend-limit"]`).Text())
	}
	now := time.Now()
	inv, err := e.bill.Finalize(ctx, orgID, billing.PeriodOf(now), billing.PeriodOf(now).End.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, doc = c.get("/orgs/" + orgID + "/billing")
	if href, _ := doc.Find(`[data-testid="invoices"] a`).Attr("href"); href != "/orgs/"+orgID+"/invoices/"+inv.ID {
		t.Errorf("invoice link %q", href)
	}
	_, doc = c.get("/orgs/" + orgID + "/invoices/" + inv.ID)
	if got := doc.Find(`[data-testid="invoice-lines-total"]`).Text(); got != money(inv.TotalCents, inv.Currency) {
		t.Errorf("invoice total %q, want %q", got, money(inv.TotalCents, inv.Currency))
	}
	if doc.Find(`[data-testid="invoice-lines"] tbody tr`).Length() != len(inv.Lines) {
		t.Error("invoice lines missing")
	}
	// Another org's invoice is not found.
	d := e.client(t)
	d.signup("d@example.com", "D")
	if res, _ := d.get("/orgs/" + orgID + "/invoices/" + inv.ID); res.StatusCode != http.StatusNotFound {
		t.Errorf("foreign invoice: %d", res.StatusCode)
	}
}

// TestMountedNextToAPI serves the console and the API from one router, as
// cmd/aerie does: the API keeps /v1 and the health endpoints.
func TestMountedNextToAPI(t *testing.T) {
	e := newEnv(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := api.NewRouter(api.Deps{Log: log, Tenancy: e.svc, DB: e.db.Pool})
	r.Mount("/", New(Deps{Tenancy: e.svc, Billing: e.bill, Log: log}))
	srv := httptest.NewServer(r)
	defer srv.Close()
	for _, tc := range []struct {
		path, ctype string
		code        int
	}{
		{"/healthz", "", http.StatusOK},
		{"/v1/me", "application/problem+json", http.StatusUnauthorized},
		{"/v1/nope", "application/problem+json", http.StatusNotFound},
		{"/login", "text/html", http.StatusOK},
		{"/static/aerie.css", "text/css", http.StatusOK},
		{"/nope", "text/html", http.StatusNotFound},
	} {
		res, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.code || !strings.HasPrefix(res.Header.Get("Content-Type"), tc.ctype) {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, res.StatusCode, res.Header.Get("Content-Type"), tc.code, tc.ctype)
		}
	}
}
