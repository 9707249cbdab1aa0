package console

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/aeriemq/aerie/internal/browsertest"
)

// TestConsoleInBrowser drives headless chromium through the console as a
// person would: sign up → create an API key (secret shown once) → see it
// listed → invite a viewer; then the viewer, on a 375 px phone, joins and
// sees the key but no write controls. Screenshots of every step are saved
// (see the log for the directory).
func TestConsoleInBrowser(t *testing.T) {
	e := newEnv(t)
	const wait = 30 * time.Second
	text := func(b *browsertest.Browser, sel string) string {
		t.Helper()
		s, err := browsertest.Get(b, wait, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	count := func(b *browsertest.Browser, sel string) int {
		t.Helper()
		n, err := browsertest.Get(b, wait, chromedp.Evaluate[int](`document.querySelectorAll(`+jsString(sel)+`).length`))
		if err != nil {
			t.Fatalf("count %s: %v", sel, err)
		}
		return n
	}
	do := func(b *browsertest.Browser, step string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := b.Do(wait, steps...); err != nil {
			b.Shot("failed-" + step)
			t.Fatalf("%s: %v", step, err)
		}
	}

	owner := browsertest.New(t, 1280, 900)
	// 1. Sign up.
	do(owner, "sign up",
		chromedp.Navigate(e.srv.URL+"/signup"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="signup-form"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-email`), "dev@example.com"),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct-horse-1"),
		chromedp.SendKeys(chromedp.CSS(`#f-org_name`), "Acme IoT"),
	)
	owner.Shot("01-signup-form")
	do(owner, "submit sign-up",
		chromedp.Click(chromedp.CSS(`[data-testid="signup-form"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="org-name"]`)),
	)
	owner.Shot("02-signed-up")
	if got := text(owner, `[data-testid="org-name"]`); got != "Acme IoT" {
		t.Errorf("overview shows %q", got)
	}
	if got := text(owner, `[data-testid="flash"]`); !strings.Contains(got, "Welcome") {
		t.Errorf("flash %q", got)
	}

	// 2. Create an API key; the secret is shown once with a copy button.
	do(owner, "create api key",
		chromedp.Click(chromedp.CSS(`nav a[href$="/api-keys"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="create-api-key"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-name`), "ci deploy"),
		chromedp.Click(chromedp.CSS(`input[name="scope"][value="write"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid="create-api-key"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="secret-value"]`)),
	)
	owner.Shot("03-api-key-created")
	secret := text(owner, `[data-testid="secret-value"]`)
	if !strings.HasPrefix(secret, "aer_") {
		t.Fatalf("secret %q", secret)
	}
	if count(owner, `button[data-copy="#new-secret-value"]`) != 1 {
		t.Error("no copy button next to the secret")
	}

	// 3. It is listed; the secret is not shown again.
	do(owner, "list api keys",
		chromedp.Click(chromedp.CSS(`nav a[href$="/api-keys"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="key-ci deploy"]`)),
	)
	owner.Shot("04-api-keys-listed")
	if row := text(owner, `[data-testid="key-ci deploy"]`); !strings.Contains(row, "write") || !strings.Contains(row, secret[:10]) {
		t.Errorf("key row %q", row)
	}
	if count(owner, `[data-testid="secret-value"]`) != 0 {
		t.Error("secret shown again")
	}

	// 4. Invite a viewer.
	do(owner, "invite viewer",
		chromedp.Click(chromedp.CSS(`nav a[href$="/members"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="invite-form"]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid="invite-form"] #f-email`), "viewer@example.com"),
		chromedp.SetValue(chromedp.CSS(`#f-role`), "viewer"),
		chromedp.Click(chromedp.CSS(`[data-testid="invite-form"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="flash"]`)),
	)
	owner.Shot("05-viewer-invited")
	if got := text(owner, `[data-testid="flash"]`); !strings.Contains(got, "viewer@example.com") {
		t.Errorf("invite flash %q", got)
	}
	m, ok := e.out.Last("viewer@example.com")
	if !ok {
		t.Fatal("no invitation mail")
	}

	// 5. The viewer, on a phone: signs up, joins through the mailed link.
	viewer := browsertest.New(t, 375, 800)
	do(viewer, "viewer sign up",
		chromedp.Navigate(e.srv.URL+"/signup"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="signup-form"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-email`), "viewer@example.com"),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct-horse-2"),
		chromedp.SendKeys(chromedp.CSS(`#f-org_name`), "Viewer's own"),
		chromedp.Click(chromedp.CSS(`[data-testid="signup-form"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="org-name"]`)),
		chromedp.Navigate(e.srv.URL+linkPath(t, m.Body)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="accept-invitation"]`)),
	)
	viewer.Shot("06-viewer-invitation")
	do(viewer, "accept",
		chromedp.Click(chromedp.CSS(`[data-testid="accept-invitation"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="my-role"]`)),
	)
	viewer.Shot("07-viewer-joined")
	if got := text(viewer, `[data-testid="org-name"]`); got != "Acme IoT" {
		t.Errorf("viewer landed on %q", got)
	}
	if got := text(viewer, `[data-testid="my-role"]`); got != "viewer" {
		t.Errorf("viewer's role shown as %q", got)
	}

	// 6. The viewer sees the key, and no write controls anywhere.
	// At 375 px the navigation sits behind the menu toggle.
	do(viewer, "viewer api keys",
		chromedp.Click(chromedp.CSS(`[data-testid="menu-toggle"]`)),
		chromedp.Click(chromedp.CSS(`nav a[href$="/api-keys"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="key-ci deploy"]`)),
	)
	viewer.Shot("08-viewer-api-keys")
	// Readable at 375 px: nothing wider than the screen (wide tables scroll
	// inside their own box).
	if w := mustInt(t, viewer, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("API keys page is %d px wide at 375 px", w)
	}
	if n := count(viewer, `[data-testid="create-api-key"], button.danger`); n != 0 {
		t.Errorf("viewer sees %d write controls on the API keys page", n)
	}
	for _, page := range []string{"/members", "/settings", "/billing"} {
		do(viewer, "viewer "+page,
			chromedp.Click(chromedp.CSS(`[data-testid="menu-toggle"]`)),
			chromedp.Click(chromedp.CSS(`nav a[href$="`+page+`"]`)),
			chromedp.WaitReady(chromedp.CSS(`nav a[aria-current="page"][href$="`+page+`"]`)),
		)
		if n := count(viewer, `form[method="post"]:not(.logout)`); n != 0 {
			t.Errorf("viewer sees %d write forms on %s", n, page)
		}
		if w := mustInt(t, viewer, `document.documentElement.scrollWidth`); w > 375 {
			t.Errorf("%s is %d px wide at 375 px", page, w)
		}
	}
	viewer.Shot("09-viewer-billing")
	// The menu toggle shows the navigation, which fits the phone's width.
	do(viewer, "open menu",
		chromedp.Click(chromedp.CSS(`[data-testid="menu-toggle"]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav a[href$="/instances"]`)),
	)
	if got, _ := browsertest.Get(viewer, wait, chromedp.Evaluate[string](`document.querySelector('[data-testid="menu-toggle"]').getAttribute('aria-expanded')`)); got != "true" {
		t.Errorf("menu toggle aria-expanded %q after opening", got)
	}
	if w := mustInt(t, viewer, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("open menu is %d px wide at 375 px", w)
	}
	viewer.Shot("09b-viewer-menu-open")
	// Keyboard: the first Tab reaches the skip link.
	do(viewer, "tab", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`main`)), chromedp.KeyEvent("\t"))
	if cls, err := browsertest.Get(viewer, wait, chromedp.Evaluate[string](`document.activeElement.className`)); err != nil || cls != "skip" {
		t.Errorf("first Tab focuses %q (%v), want the skip link", cls, err)
	}
	viewer.Shot("10-viewer-skip-link-focused")

	// 7. Log out.
	do(owner, "log out",
		chromedp.Click(chromedp.CSS(`[data-testid="logout"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-form"]`)),
	)
	owner.Shot("11-logged-out")
	if got := text(owner, `[data-testid="flash"]`); !strings.Contains(got, "logged out") {
		t.Errorf("logout flash %q", got)
	}
}

func mustInt(t *testing.T, b *browsertest.Browser, expr string) int {
	t.Helper()
	n, err := browsertest.Get(b, 10*time.Second, chromedp.Evaluate[int](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return n
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
