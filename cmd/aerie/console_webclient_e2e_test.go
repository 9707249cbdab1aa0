package main_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/aeriemq/aerie/internal/browsertest"
	"github.com/aeriemq/aerie/internal/pgtest"
)

// TestConsoleWebClient (issue 18, item 3) against a real `aerie serve` in
// headless chromium: the instance's web client connects over the node's
// WebSocket endpoint with a device token minted for the signed-in user
// (audit-logged), subscribes to test/# and shows a message mosquitto_pub
// sends within 1 s; a message published from the page reaches
// mosquitto_sub; a filter and a topic the ACL denies are refused in the
// page with the reason. Screenshots at 1280 and 375 px; nothing wider
// than the viewport.
func TestConsoleWebClient(t *testing.T) {
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (make deps): %v", tool, err)
		}
	}
	dataDir := newDataDir(t)
	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t)), append([]string{"serve", "--data-dir", dataDir}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	s := browserSteps{t: t, wait: 30 * time.Second}

	const email = "web@example.com"
	owner, org := signup(t, base, email)
	var inst instanceOut
	owner.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "lab"}, 201, &inst)
	waitRunning(t, owner, org, inst.ID)
	var cred credOut
	owner.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "cli"}, 201, &cred)
	owner.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/acl-rules", map[string]any{"effect": "deny", "action": "all", "filter": "secret/#"}, 201, nil)
	time.Sleep(300 * time.Millisecond) // the node applies the pushes
	port := portOf(t, pp.mqtt)

	b := browsertest.New(t, 1280, 900)
	s.do(b, "log in",
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-form"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-email`), email),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`[data-testid="login-form"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="org-name"]`)),
	)
	page := base + "/orgs/" + org + "/instances/" + inst.ID + "/webclient"
	s.do(b, "web client", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`[data-testid="wc-connect"]`)))
	s.do(b, "connect", chromedp.Click(chromedp.CSS(`[data-testid="wc-connect"]`)))
	logHas := func(what, sub string) {
		t.Helper()
		s.waitTrue(b, what, `document.querySelector('[data-testid="wc-log"]').innerText.includes(`+jsQuote(sub)+`)`)
	}
	s.waitTrue(b, "connected", `document.querySelector('[data-testid="wc-state"]').innerText === 'connected'`)
	s.do(b, "subscribe", chromedp.Click(chromedp.CSS(`[data-testid="wc-subscribe"]`)))
	logHas("the subscription", "subscribed to test/# (QoS 1)")

	// mosquitto_pub → the page, within 1 s.
	sent := time.Now()
	if out, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-i", "cli-pub",
		"-u", cred.MQTTUsername, "-P", cred.Password, "-t", "test/from-cli", "-m", "hello from mosquitto_pub", "-q", "1").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	logHas("the message from mosquitto_pub", "test/from-cli hello from mosquitto_pub")
	if took := time.Since(sent); took > time.Second {
		t.Errorf("the message showed in the page %v after mosquitto_pub sent it, want ≤ 1 s", took)
	} else {
		t.Logf("mosquitto_pub → page: %v", took.Round(time.Millisecond))
	}

	// The page → mosquitto_sub.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var subOut bytes.Buffer
	sub := exec.CommandContext(ctx, "mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv311", "-i", "cli-sub",
		"-u", cred.MQTTUsername, "-P", cred.Password, "-t", "test/from-page", "-C", "1", "-v")
	sub.Stdout = &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for { // subscribed once it lists its filter (read live from the node)
		var list struct {
			Data []struct {
				ClientID      string   `json:"client_id"`
				Subscriptions []string `json:"subscriptions"`
			}
		}
		owner.call(t, "GET", "/v1/orgs/"+org+"/instances/"+inst.ID+"/clients?q=cli-sub", nil, 200, &list)
		if len(list.Data) == 1 && len(list.Data[0].Subscriptions) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("mosquitto_sub never subscribed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.do(b, "publish from the page",
		chromedp.SetValue(chromedp.CSS(`[data-testid="wc-topic"]`), "test/from-page"),
		chromedp.SetValue(chromedp.CSS(`[data-testid="wc-payload"]`), "hello from the browser"),
		chromedp.Click(chromedp.CSS(`[data-testid="wc-publish"]`)),
	)
	logHas("the publish acknowledged", "published to test/from-page")
	if err := sub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v (%q)", err, subOut.String())
	}
	if got := strings.TrimSpace(subOut.String()); got != "test/from-page hello from the browser" {
		t.Errorf("mosquitto_sub got %q", got)
	}

	// The ACL applies: refused in the page, with the reason.
	s.do(b, "subscribe denied",
		chromedp.SetValue(chromedp.CSS(`[data-testid="wc-filter"]`), "secret/#"),
		chromedp.Click(chromedp.CSS(`[data-testid="wc-subscribe"]`)),
	)
	logHas("the refused subscription", "subscription to secret/# refused: 0x87 not authorized")
	s.do(b, "publish denied",
		chromedp.SetValue(chromedp.CSS(`[data-testid="wc-topic"]`), "secret/plans"),
		chromedp.Click(chromedp.CSS(`[data-testid="wc-publish"]`)),
	)
	logHas("the refused publish", "publish to secret/plans refused: 0x87 not authorized")
	s.shotAndFit(b, "01-webclient-1280")

	// The token was minted for the user and audit-logged.
	var audit struct {
		Data []struct{ Action string }
	}
	owner.call(t, "GET", "/v1/orgs/"+org+"/audit-events", nil, 200, &audit)
	found := false
	for _, e := range audit.Data {
		found = found || e.Action == "device_token.issue"
	}
	if !found {
		t.Errorf("no device_token.issue in the audit log: %+v", audit.Data)
	}

	phone := browsertest.New(t, 375, 800)
	s.do(phone, "phone log in",
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-form"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-email`), email),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`[data-testid="login-form"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="org-name"]`)),
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="wc-connect"]`)),
	)
	s.shotAndFit(phone, "02-webclient-375")
}
