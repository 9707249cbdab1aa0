package console

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/aeriemq/aerie/internal/browsertest"
	"github.com/aeriemq/aerie/tenancy"
)

// fitJS lists the elements wider than the viewport (or reaching past its
// right edge) outside boxes that scroll on their own; "" when the page fits.
const fitJS = `(function(){var w=document.documentElement.clientWidth,out=[];
document.querySelectorAll('body *').forEach(function(el){
  if(el.closest('.table-wrap,pre,.sr-only,[hidden]'))return;
  var r=el.getBoundingClientRect(); if(r.width===0&&r.height===0)return;
  if(r.width>w+1||r.right>w+1)out.push(el.tagName.toLowerCase()+' '+Math.round(r.right));
});
if(document.documentElement.scrollWidth>w)out.push('document '+document.documentElement.scrollWidth);
return out.slice(0,8).join(', ');})()`

// steps are a browser test's helpers.
type steps struct {
	t *testing.T
}

const stepWait = 30 * time.Second

func (s steps) do(b *browsertest.Browser, name string, acts ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	if err := b.Do(stepWait, acts...); err != nil {
		b.Shot("failed-" + strings.ReplaceAll(name, " ", "-"))
		s.t.Fatalf("%s: %v", name, err)
	}
}

func (s steps) str(b *browsertest.Browser, expr string) string {
	s.t.Helper()
	v, err := browsertest.Get(b, stepWait, chromedp.Evaluate[string](expr))
	if err != nil {
		s.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

func (s steps) text(b *browsertest.Browser, sel string) string {
	s.t.Helper()
	return strings.TrimSpace(s.str(b, `(function(){var e=document.querySelector(`+jsString(sel)+`);return e?e.innerText:'(none)'})()`))
}

// until polls a JavaScript condition.
func (s steps) until(b *browsertest.Browser, what, cond string) {
	s.t.Helper()
	deadline := time.Now().Add(stepWait)
	for s.str(b, "(("+cond+") ? 'y' : 'n')") != "y" {
		if time.Now().After(deadline) {
			b.Shot("failed-" + strings.ReplaceAll(what, " ", "-"))
			s.t.Fatalf("never saw %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shotAndFit saves a screenshot and fails when anything is wider than the
// viewport.
func (s steps) shotAndFit(b *browsertest.Browser, name string) {
	s.t.Helper()
	b.Shot(name)
	if bad := s.str(b, fitJS); bad != "" {
		s.t.Errorf("%s: wider than the viewport: %s", name, bad)
	}
}

// samePage marks the page; samePageKept reports whether it was not
// reloaded since.
func (s steps) samePage(b *browsertest.Browser) { s.str(b, `(window.__same = 'y')`) }
func (s steps) samePageKept(b *browsertest.Browser) bool {
	return s.str(b, `(window.__same || 'n')`) == "y"
}

// TestConsoleLiveBadgesAndConfirmations (issue 18, items 1, 4 and 6) in
// headless chromium:
//   - the instance page's status badges (header and State panel) and the
//     instances list's badges follow a status change made elsewhere,
//     without a reload;
//   - revoking an API key asks first, saying who stops working and when the
//     key was last used; Cancel keeps it, Yes revokes it (the key is then
//     refused);
//   - removing a member asks first, saying they lose access and that the API
//     keys they created stop working; Yes removes them and their key is
//     refused.
func TestConsoleLiveBadgesAndConfirmations(t *testing.T) {
	e := newEnv(t)
	withNode(t, e)
	ctx := context.Background()
	s := steps{t: t}
	b := browsertest.New(t, 1280, 900)
	s.do(b, "sign up",
		chromedp.Navigate(e.srv.URL+"/signup"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="signup-form"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-email`), "own@example.com"),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct-horse-1"),
		chromedp.SendKeys(chromedp.CSS(`#f-org_name`), "Live Co"),
		chromedp.Click(chromedp.CSS(`[data-testid="signup-form"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="org-name"]`)),
	)
	org := strings.Split(s.str(b, `location.pathname`), "/")[2]
	s.do(b, "create instance",
		chromedp.Navigate(e.srv.URL+"/orgs/"+org+"/instances"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="create-instance"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-name`), "plant"),
		chromedp.Click(chromedp.CSS(`[data-testid="create-instance"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="instance-id"]`)),
	)
	inst := s.text(b, `[data-testid="instance-id"]`)
	waitRunning(t, e, org, inst)
	setStatus := func(st string) {
		t.Helper()
		if _, err := e.svc.UpdateInstance(ctx, tenancy.Actor{}, org, inst, tenancy.InstancePatch{Status: &st}, nil); err != nil {
			t.Fatal(err)
		}
	}

	// The instance page: both badges follow a change made elsewhere.
	s.until(b, "the header badge running", `document.querySelector('[data-testid="live-status"] .badge.running') !== null`)
	s.until(b, "the state badge running", `document.querySelector('[data-testid="state-status"] .badge.running') !== null`)
	s.samePage(b)
	setStatus(tenancy.InstanceSuspended)
	s.until(b, "the header badge suspended", `document.querySelector('[data-testid="live-status"] .badge.suspended') !== null`)
	s.until(b, "the state badge suspended", `document.querySelector('[data-testid="state-status"] .badge.suspended') !== null`)
	if !s.samePageKept(b) {
		t.Error("the instance page reloaded to show the status")
	}

	// The list: the row's badge follows too.
	s.do(b, "list", chromedp.Navigate(e.srv.URL+"/orgs/"+org+"/instances"), chromedp.WaitVisible(chromedp.CSS(`[data-testid="instance-plant"] .badge.suspended`)))
	s.samePage(b)
	setStatus(tenancy.InstanceRunning)
	began := time.Now()
	s.until(b, "the list badge running", `document.querySelector('[data-testid="instance-plant"] .badge.running') !== null`)
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("the list badge changed %v after the status, want within a few seconds", took)
	}
	if !s.samePageKept(b) {
		t.Error("the list reloaded to show the status")
	}
	s.shotAndFit(b, "01-list-live-1280")

	// API key: Revoke asks, saying who stops working and the last use.
	s.do(b, "create key",
		chromedp.Navigate(e.srv.URL+"/orgs/"+org+"/api-keys"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="create-api-key"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-name`), "ci"),
		chromedp.Click(chromedp.CSS(`input[name="scope"][value="write"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid="create-api-key"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="secret-value"]`)),
	)
	secret := s.text(b, `[data-testid="secret-value"]`)
	s.do(b, "revoke asks",
		chromedp.Navigate(e.srv.URL+"/orgs/"+org+"/api-keys"),
		chromedp.Click(chromedp.CSS(`[data-testid="revoke-ci"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="confirm-ask"]`)),
	)
	if got := s.text(b, `[data-testid="confirm-ask"]`); !strings.Contains(got, "stop working at once") || !strings.Contains(got, "never been used") {
		t.Errorf("revoke confirmation %q", got)
	}
	s.do(b, "cancel", chromedp.Click(chromedp.CSS(`[data-testid="confirm-ask"] button.secondary`)), chromedp.WaitNotPresent(chromedp.CSS(`[data-testid="confirm-ask"]`)))
	if _, err := e.svc.AuthenticateAPIKey(ctx, secret); err != nil {
		t.Fatalf("the key stopped working although Cancel was pressed: %v", err)
	}
	s.do(b, "revoke asks again",
		chromedp.Navigate(e.srv.URL+"/orgs/"+org+"/api-keys"),
		chromedp.Click(chromedp.CSS(`[data-testid="revoke-ci"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="confirm-ask"]`)),
	)
	if got := s.text(b, `[data-testid="confirm-ask"]`); !strings.Contains(got, "It was last used "+time.Now().UTC().Format("2006-01-02")) {
		t.Errorf("revoke confirmation of a used key %q", got)
	}
	s.shotAndFit(b, "02-revoke-confirm-1280")
	s.do(b, "yes", chromedp.Click(chromedp.CSS(`[data-testid="confirm-yes"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="flash"]`)))
	if got := s.text(b, `[data-testid="flash"]`); got != "API key revoked." {
		t.Errorf("flash %q", got)
	}
	if _, err := e.svc.AuthenticateAPIKey(ctx, secret); err == nil {
		t.Error("the revoked key still works")
	}

	// Member: Remove asks, saying their API keys stop working too.
	owner := e.client(t)
	owner.get("/login")
	owner.post("/login", url.Values{"email": {"own@example.com"}, "password": {"correct-horse-1"}})
	member := e.joinAs(t, owner, org, "mem@example.com", tenancy.RoleAdmin)
	member.get("/orgs/" + org + "/api-keys")
	_, doc := member.post("/orgs/"+org+"/api-keys", url.Values{"name": {"mem-key"}, "scope": {"read"}})
	memSecret := strings.TrimSpace(doc.Find(`[data-testid="secret-value"]`).Text())
	if _, err := e.svc.AuthenticateAPIKey(ctx, memSecret); err != nil {
		t.Fatalf("the member's key: %v", err)
	}
	s.do(b, "remove asks",
		chromedp.Navigate(e.srv.URL+"/orgs/"+org+"/members"),
		chromedp.Click(chromedp.CSS(`[data-testid="remove-mem@example.com"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="confirm-ask"]`)),
	)
	if got := s.text(b, `[data-testid="confirm-ask"]`); !strings.Contains(got, "They lose access at once, and the 1 API key they created stops working.") {
		t.Errorf("remove confirmation %q", got)
	}
	s.shotAndFit(b, "03-remove-confirm-1280")
	s.do(b, "remove", chromedp.Click(chromedp.CSS(`[data-testid="confirm-yes"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="flash"]`)))
	if n := s.str(b, `String(document.querySelectorAll('[data-testid="remove-mem@example.com"]').length)`); n != "0" {
		t.Error("the removed member is still listed")
	}
	if _, err := e.svc.AuthenticateAPIKey(ctx, memSecret); err == nil {
		t.Error("the removed member's API key still works")
	}
}
