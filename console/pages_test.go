package console

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/a-h/templ"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/tenancy"
)

// Component tests: each page rendered alone and checked with goquery.

func renderDoc(t *testing.T, c templ.Component) *goquery.Document {
	t.Helper()
	var buf bytes.Buffer
	if err := c.Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	doc, err := goquery.NewDocumentFromReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	checkCommon(t, doc)
	return doc
}

// checkCommon: the layout's skip link and landmark, our own assets only, and
// a label for every form control.
func checkCommon(t *testing.T, doc *goquery.Document) {
	t.Helper()
	if doc.Find(`a.skip[href="#main"]`).Length() != 1 || doc.Find(`main#main`).Length() != 1 {
		t.Error("no skip link to main")
	}
	if doc.Find(`link[rel="stylesheet"][href="/static/aerie.css"]`).Length() != 1 {
		t.Error("stylesheet missing")
	}
	doc.Find(`script[src], link[href]`).Each(func(_ int, s *goquery.Selection) {
		src := s.AttrOr("src", s.AttrOr("href", ""))
		if !strings.HasPrefix(src, "/static/") {
			t.Errorf("asset not served by the console: %s", src)
		}
	})
	doc.Find(`input:not([type="hidden"]), select, textarea`).Each(func(_ int, s *goquery.Selection) {
		id := s.AttrOr("id", "")
		if s.ParentsFiltered("label").Length() > 0 || (id != "" && doc.Find(`label[for="`+id+`"]`).Length() == 1) {
			return
		}
		t.Errorf("form control %s (id %q) has no label", s.AttrOr("name", "?"), id)
	})
	doc.Find(`form[method="post"]`).Each(func(_ int, s *goquery.Selection) {
		if s.Find(`input[name="csrf_token"][value="tok"]`).Length() != 1 {
			t.Errorf("form %s has no CSRF token", s.AttrOr("action", "?"))
		}
	})
}

var (
	testUser = &tenancy.User{ID: "u-1", Email: "dev@example.com"}
	testNow  = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
)

func testPage(role tenancy.Role, section string) Page {
	o := &tenancy.Org{ID: "o-1", Name: "Acme", Role: role}
	return Page{Title: "T", Section: section, User: testUser, Org: o, CSRF: "tok", Billing: true,
		Orgs: []tenancy.Org{*o, {ID: "o-2", Name: "Other", Role: tenancy.RoleViewer}}}
}

func anonPage() Page { return Page{Title: "T", CSRF: "tok"} }

func TestLayoutRender(t *testing.T) {
	doc := renderDoc(t, OverviewPage(testPage(tenancy.RoleOwner, "overview"), Overview{Members: 2, APIKeys: 1, Plan: "Free"}))
	if doc.Find(`nav a[aria-current="page"]`).Text() != "Overview" {
		t.Error("current section not marked")
	}
	opts := doc.Find(`[data-testid="org-switcher"] option`)
	if opts.Length() != 2 || doc.Find(`[data-testid="org-switcher"] option[selected]`).AttrOr("value", "") != "o-1" {
		t.Errorf("org switcher: %d options", opts.Length())
	}
	if doc.Find(`form[action="/logout"] [data-testid="logout"]`).Length() != 1 {
		t.Error("no logout button")
	}
	if doc.Find(`[data-testid="member-count"]`).Text() != "2" || doc.Find(`[data-testid="plan-name"]`).Text() != "Free" {
		t.Error("overview numbers missing")
	}
	p := testPage(tenancy.RoleOwner, "")
	p.Flash, p.Error = "Saved.", "Nope."
	doc = renderDoc(t, ErrorPage(p, 403))
	if doc.Find(`[role="status"][data-testid="flash"]`).Text() != "Saved." || doc.Find(`[role="alert"][data-testid="page-error"]`).Text() != "Nope." {
		t.Error("flash or error not shown with their roles")
	}
	if !strings.HasPrefix(doc.Find("h1").Text(), "403") {
		t.Errorf("error heading %q", doc.Find("h1").Text())
	}
	doc = renderDoc(t, LoginPage(anonPage(), Form{}))
	if doc.Find(`nav a[href="/signup"]`).Length() != 1 || doc.Find(`[data-testid="org-switcher"]`).Length() != 0 {
		t.Error("anonymous layout shows the wrong navigation")
	}
}

func TestAuthPagesRender(t *testing.T) {
	f := Form{Values: map[string]string{"email": "bad"}, Errors: map[string]string{"email": "is not an email", "password": "too short"}}
	doc := renderDoc(t, SignupPage(anonPage(), f))
	form := doc.Find(`form[action="/signup"][method="post"]`)
	for _, n := range []string{"email", "password", "org_name"} {
		if form.Find(`input[name="`+n+`"][required]`).Length() != 1 {
			t.Errorf("signup: no required %s input", n)
		}
	}
	if form.Find(`#f-email[aria-invalid="true"][aria-describedby="e-email"]`).Length() != 1 || form.Find(`#e-email`).Text() != "is not an email" {
		t.Error("signup: email error not next to its field")
	}
	if form.Find(`#f-password`).AttrOr("autocomplete", "") != "new-password" {
		t.Error("signup: password autocomplete")
	}

	doc = renderDoc(t, LoginPage(anonPage(), Form{Values: map[string]string{"next": "/orgs/o-1/"}}))
	if doc.Find(`form[action="/login"] input[name="next"][value="/orgs/o-1/"]`).Length() != 1 ||
		doc.Find(`a[href="/reset-password"]`).Length() != 1 {
		t.Error("login: next or reset link missing")
	}

	doc = renderDoc(t, ResetPage(anonPage(), Form{}, false))
	if doc.Find(`form[action="/reset-password"] #f-email`).Length() != 1 {
		t.Error("reset: no email form")
	}
	doc = renderDoc(t, ResetPage(anonPage(), Form{Values: map[string]string{"token": "abc"}}, false))
	if doc.Find(`form[action="/reset-password/confirm"] input[name="token"][value="abc"]`).Length() != 1 ||
		doc.Find(`#f-password[type="password"]`).Length() != 1 {
		t.Error("reset: no new-password form")
	}
	doc = renderDoc(t, ResetPage(anonPage(), Form{Values: map[string]string{"email": "a@b.c"}}, true))
	if !strings.Contains(doc.Find(`[data-testid="reset-sent"]`).Text(), "a@b.c") {
		t.Error("reset: no sent note")
	}

	doc = renderDoc(t, VerifyPage(anonPage(), "tok123", false))
	if doc.Find(`form[action="/verify-email"] input[name="token"][value="tok123"]`).Length() != 1 {
		t.Error("verify: no confirm form")
	}
	doc = renderDoc(t, VerifyPage(anonPage(), "", true))
	if doc.Find(`[data-testid="verified"]`).Length() != 1 {
		t.Error("verify: no done note")
	}
	doc = renderDoc(t, AcceptPage(testPage(tenancy.RoleOwner, ""), "inv"))
	if doc.Find(`form[action="/invitations/accept"] input[name="token"][value="inv"]`).Length() != 1 ||
		!strings.Contains(doc.Find("main").Text(), "dev@example.com") {
		t.Error("accept: form or signed-in email missing")
	}
}

func TestOrgPagesRenderByRole(t *testing.T) {
	members := []tenancy.Member{{UserID: "u-1", Email: "dev@example.com", Role: tenancy.RoleOwner, CreatedAt: testNow},
		{UserID: "u-2", Email: "v@example.com", Role: tenancy.RoleViewer, CreatedAt: testNow}}
	used := testNow
	keys := []tenancy.APIKey{{ID: "k-1", Name: "ci", Prefix: "abcde", Scopes: []tenancy.Scope{tenancy.ScopeWrite}, CreatedAt: testNow, LastUsedAt: &used}}

	doc := renderDoc(t, MembersPage(testPage(tenancy.RoleOwner, "members"), members, []tenancy.Invitation{{ID: "inv-1", Email: "new@example.com", Role: tenancy.RoleAdmin, CreatedAt: testNow, ExpiresAt: testNow}}, Form{}, nil))
	if doc.Find(`[data-testid="members"] tbody tr`).Length() != 2 || doc.Find(`[data-testid="invite-form"]`).Length() != 1 ||
		doc.Find(`[data-testid="remove-v@example.com"]`).Length() != 1 ||
		doc.Find(`#role-u-2 option[selected]`).AttrOr("value", "") != "viewer" {
		t.Error("members (owner): rows, invite form, remove button or role select missing")
	}
	if !strings.Contains(doc.Find(`[data-testid="invitation-new@example.com"]`).Text(), "admin") {
		t.Error("members: pending invitation not listed")
	}
	doc = renderDoc(t, MembersPage(testPage(tenancy.RoleViewer, "members"), members, nil, Form{}, nil))
	if doc.Find(`[data-testid="members"] tbody tr`).Length() != 2 || doc.Find(`form[method="post"]:not(.logout)`).Length() != 0 {
		t.Error("members (viewer): write forms shown")
	}

	doc = renderDoc(t, APIKeysPage(testPage(tenancy.RoleAdmin, "api-keys"), keys, Form{Values: map[string]string{"scope": "read"}}, &NewSecret{Name: "ci", Secret: "aer_abcde_s3cr3t"}))
	if doc.Find(`[data-testid="secret-value"]#new-secret-value`).Text() != "aer_abcde_s3cr3t" || doc.Find(`button[data-copy="#new-secret-value"]`).Length() != 1 {
		t.Error("api keys: secret or copy button missing")
	}
	row := doc.Find(`[data-testid="key-ci"]`)
	if !strings.Contains(row.Text(), "aer_abcde_") || !strings.Contains(row.Text(), "write") || row.Find(`[data-testid="revoke-ci"]`).Length() != 1 {
		t.Error("api keys: row incomplete")
	}
	if doc.Find(`[data-testid="create-api-key"] input[name="scope"]`).Length() != 4 || doc.Find(`input[name="scope"][value="consume"]`).Length() != 1 || doc.Find(`input[name="scope"][value="read"][checked]`).Length() != 1 {
		t.Error("api keys: scope choices")
	}
	doc = renderDoc(t, APIKeysPage(testPage(tenancy.RoleViewer, "api-keys"), keys, Form{}, nil))
	if doc.Find(`[data-testid="key-ci"]`).Length() != 1 || doc.Find(`form[method="post"]:not(.logout)`).Length() != 0 {
		t.Error("api keys (viewer): list missing or write forms shown")
	}

	doc = renderDoc(t, SettingsPage(testPage(tenancy.RoleAdmin, "settings"), Form{Values: map[string]string{"name": "Acme"}}))
	if doc.Find(`[data-testid="rename-form"] input[name="expect"][value="Acme"]`).Length() != 1 || doc.Find(`button[data-copy="#org-id"]`).Length() != 1 {
		t.Error("settings (admin): rename form or copy button missing")
	}
	doc = renderDoc(t, SettingsPage(testPage(tenancy.RoleViewer, "settings"), Form{}))
	if doc.Find(`[data-testid="rename-form"]`).Length() != 0 {
		t.Error("settings (viewer): rename form shown")
	}

	evs := []tenancy.AuditEvent{{Action: "api_key.create", Target: "k-1", ActorType: "user", ActorID: "u-1", CreatedAt: testNow}}
	doc = renderDoc(t, AuditPage(testPage(tenancy.RoleViewer, "audit"), evs, "", "42", true))
	if doc.Find(`[data-testid="audit-events"] tbody tr`).Length() != 1 ||
		doc.Find(`[data-testid="older"]`).AttrOr("href", "") != "/orgs/o-1/audit?action=&after=42" {
		t.Errorf("audit: rows or older link (%q)", doc.Find(`[data-testid="older"]`).AttrOr("href", ""))
	}
}

func TestBillingPagesRender(t *testing.T) {
	free := billing.Plan{ID: "free", Name: "Free", Currency: "eur"}
	pro := billing.Plan{ID: "pro", Name: "Pro", Currency: "eur", BaseCents: 4900}
	v := BillingView{Sub: billing.Subscription{PlanID: "free", PlanSince: testNow}, Plan: free, Pending: "", Plans: []billing.Plan{free, pro},
		Draft:    billing.Draft{Period: "2026-11", Currency: "eur", TotalCents: 123, Lines: []billing.Line{{Description: "Base", Quantity: 1, Unit: "month", AmountCents: 123}}},
		Invoices: []billing.Invoice{{ID: "in-1", Number: 7, Period: "2026-10", Currency: "eur", TotalCents: 4900, Status: "open", DueAt: testNow}}}
	doc := renderDoc(t, BillingPage(testPage(tenancy.RoleOwner, "billing"), v))
	if doc.Find(`[data-testid="current-plan"]`).Text() != "Free" || doc.Find(`[data-testid="change-plan"] option`).Length() != 2 {
		t.Error("billing: plan or choices missing")
	}
	if doc.Find(`[data-testid="draft-lines-total"]`).Text() != "1.23 EUR" {
		t.Errorf("billing: draft total %q", doc.Find(`[data-testid="draft-lines-total"]`).Text())
	}
	if doc.Find(`[data-testid="invoices"] a[href="/orgs/o-1/invoices/in-1"]`).Text() != "7" {
		t.Error("billing: invoice link")
	}
	doc = renderDoc(t, BillingPage(testPage(tenancy.RoleViewer, "billing"), v))
	if doc.Find(`[data-testid="change-plan"]`).Length() != 0 {
		t.Error("billing (viewer): change-plan form shown")
	}
	paid := testNow
	inv := billing.Invoice{ID: "in-1", Number: 7, Period: "2026-10", Start: testNow, End: testNow, Currency: "eur", TotalCents: 4900,
		Status: "paid", PaidAt: &paid, Lines: []billing.Line{{Description: "Pro", Quantity: 1, Unit: "month", AmountCents: 4900}}}
	doc = renderDoc(t, InvoicePage(testPage(tenancy.RoleViewer, "billing"), inv))
	if doc.Find(`[data-testid="invoice-lines-total"]`).Text() != "49.00 EUR" || !strings.Contains(doc.Find(`[data-testid="invoice-status"]`).Text(), "paid 2026-11-24") {
		t.Error("invoice: total or status")
	}
}
