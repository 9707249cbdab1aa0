package main_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/aeriemq/aerie/internal/browsertest"
	"github.com/aeriemq/aerie/internal/pgtest"
)

// TestConsoleRulesTab (issue 17 item 4, rules) against a real `aerie
// serve` in headless chromium with a real device and a real HTTPS
// receiver: a webhook rule added in the Rules tab shows its signing secret
// once and its live status; while the receiver fails, the tab shows the
// rule failing with the last error, and the messages past the rule's
// maximum age land in its dead letters; "Replay all" delivers them once
// the receiver is back; pause and resume change its state. Screenshots at
// 1280 and 375 px; no element wider than the viewport.
func TestConsoleRulesTab(t *testing.T) {
	recv := newHook(t)
	recv.set(func(h *hook) { h.status = http.StatusServiceUnavailable })
	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t), "AERIE_FORWARD_CA_FILE="+caFile(t, recv), "AERIE_FORWARD_ALLOW_PRIVATE=true"),
		append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	s := browserSteps{t: t, wait: 30 * time.Second}
	const email = "rules@example.com"
	owner, org := signup(t, base, email)
	var inst instanceOut
	owner.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "plant"}, 201, &inst)
	waitRunning(t, owner, org, inst.ID)
	var cred credOut
	prefer(t, owner, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "dev"}, &cred)

	b := browsertest.New(t, 1280, 900)
	login := func(b *browsertest.Browser) {
		s.do(b, "log in",
			chromedp.Navigate(base+"/login"),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-form"]`)),
			chromedp.SendKeys(chromedp.CSS(`#f-email`), email),
			chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct horse battery"),
			chromedp.Click(chromedp.CSS(`[data-testid="login-form"] button[type="submit"]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid="org-name"]`)),
		)
	}
	login(b)
	rules := base + "/orgs/" + org + "/instances/" + inst.ID + "/rules"
	s.do(b, "rules tab", chromedp.Navigate(rules), chromedp.WaitVisible(chromedp.CSS(`[data-testid="no-forwarding-rules"]`)))
	s.do(b, "add a rule",
		chromedp.SendKeys(chromedp.CSS(`#f-name`), "alerts"),
		chromedp.SendKeys(chromedp.CSS(`#f-filter`), "alerts/#"),
		chromedp.SendKeys(chromedp.CSS(`#f-url`), recv.srv.URL+"/in"),
		chromedp.SetValue(chromedp.CSS(`#f-max_age_seconds`), "1"),
		chromedp.Click(chromedp.CSS(`[data-testid="add-forwarding-rule"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="rule-secret-value"]`)),
	)
	secret := s.text(b, `[data-testid="rule-secret-value"]`)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret %q", secret)
	}
	recv.set(func(h *hook) { h.secret = []byte(secret) })
	s.shotAndFit(b, "01-rule-created-1280")
	// reloadUntil reloads the tab until the rule's row satisfies cond.
	reloadUntil := func(what, cond string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			// A reload may abort a navigation still under way (the form
			// the last click submitted): that is retried, not a failure.
			err := b.Do(s.wait, chromedp.Navigate(rules), chromedp.WaitVisible(chromedp.CSS(`[data-testid="frule-alerts"]`)))
			if err == nil && s.evalInt(b, "("+cond+") ? 1 : 0") == 1 {
				return
			}
			if time.Now().After(deadline) {
				if err != nil {
					t.Errorf("last reload: %v", err)
				}
				b.Shot("failed-" + strings.ReplaceAll(what, " ", "-"))
				t.Fatalf("never saw %s", what)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	row := `document.querySelector('[data-testid="frule-alerts"] [data-testid="%s"]').textContent`
	q := func(id string) string { return strings.Replace(row, "%s", id, 1) }
	reloadUntil("the rule active", q("rule-state")+`.trim() === "active"`)
	if strings.Contains(s.evalString(b, `document.body.textContent`), secret) {
		t.Fatal("the secret is shown again")
	}

	dev, err := connect3(pp.mqtt, "dev", cred.MQTTUsername, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if tk := dev.Publish("alerts/boiler", 1, false, "a:"+strconv.Itoa(i)); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
	}
	dev.Disconnect(100)
	reloadUntil("two dead letters and the error", q("rule-dead-letters")+`.trim() === "2" && `+q("rule-last-error")+`.includes("503")`)
	s.shotAndFit(b, "02-rule-failing-1280")
	s.do(b, "dead letters", chromedp.Click(chromedp.CSS(`[data-testid="frule-alerts"] [data-testid="rule-dead-letters"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="dead-letters"]`)))
	if n := s.evalInt(b, `document.querySelectorAll('[data-testid="dead-letter"]').length`); n != 2 {
		t.Fatalf("%d dead letters listed", n)
	}
	s.shotAndFit(b, "03-dead-letters-1280")
	recv.set(func(h *hook) { h.status = 0 })
	s.do(b, "replay", chromedp.Click(chromedp.CSS(`[data-testid="replay-dead-letters"]`)), chromedp.WaitVisible(chromedp.CSS(`h2`)))
	if !within(10*time.Second, func() bool { return recv.distinct() == 2 }) {
		t.Fatalf("replay delivered %d of 2", recv.distinct())
	}
	if evs, bad := recv.events(); len(bad) > 0 || evs[0].Subject != "alerts/boiler" {
		t.Fatalf("received %+v, refused %v", evs, bad)
	}
	reloadUntil("no dead letters", q("rule-dead-letters")+`.trim() === "0"`)
	s.do(b, "pause", chromedp.Click(chromedp.CSS(`[data-testid="frule-alerts"] button[data-testid^="pause-"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="frule-alerts"] button[data-testid^="resume-"]`)))
	reloadUntil("the rule paused", q("rule-state")+`.trim() === "paused"`)
	s.shotAndFit(b, "04-rule-paused-1280")

	phone := browsertest.New(t, 375, 800)
	login(phone)
	s.do(phone, "phone rules", chromedp.Navigate(rules), chromedp.WaitVisible(chromedp.CSS(`[data-testid="frule-alerts"]`)))
	s.shotAndFit(phone, "05-rules-375")
	s.do(phone, "phone resume", chromedp.Click(chromedp.CSS(`[data-testid="frule-alerts"] button[data-testid^="resume-"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="frule-alerts"] button[data-testid^="pause-"]`)))
}
