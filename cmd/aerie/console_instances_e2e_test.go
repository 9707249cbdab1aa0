package main_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/internal/browsertest"
	"github.com/aeriemq/aerie/internal/pgtest"
)

// TestConsoleInstanceToDevice: headless chromium drives the console of a
// real `aerie serve`: sign up → create the first instance → wait for it to
// run → create a credential → read the password shown once; then a real
// MQTT 5 client connects with the username and password taken from the page
// and publishes and subscribes. The instance pages stay readable at 375 px.
func TestConsoleInstanceToDevice(t *testing.T) {
	dataDir := newDataDir(t)
	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t)), append([]string{"serve", "--data-dir", dataDir}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http

	const wait = 30 * time.Second
	do := func(b *browsertest.Browser, step string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := b.Do(wait, steps...); err != nil {
			b.Shot("failed-" + step)
			t.Fatalf("%s: %v", step, err)
		}
	}
	text := func(b *browsertest.Browser, sel string) string {
		t.Helper()
		s, err := browsertest.Get(b, wait, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			b.Shot("failed-text")
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	eval := func(b *browsertest.Browser, expr string) int {
		t.Helper()
		n, err := browsertest.Get(b, wait, chromedp.Evaluate[int](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return n
	}

	owner := browsertest.New(t, 1280, 900)
	do(owner, "sign up",
		chromedp.Navigate(base+"/signup"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="signup-form"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-email`), "dev@example.com"),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct-horse-1"),
		chromedp.SendKeys(chromedp.CSS(`#f-org_name`), "Acme IoT"),
		chromedp.Click(chromedp.CSS(`[data-testid="signup-form"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="create-first-instance"]`)),
	)
	owner.Shot("01-overview-no-instance")

	do(owner, "create instance",
		chromedp.Click(chromedp.CSS(`[data-testid="create-first-instance"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="create-instance"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-name`), "home"),
		chromedp.Click(chromedp.CSS(`[data-testid="create-instance"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="instance-id"]`)),
	)
	instID := text(owner, `[data-testid="instance-id"]`)
	detail, err := browsertest.Get(owner, wait, chromedp.Evaluate[string](`location.href`))
	if err != nil {
		t.Fatal(err)
	}
	_, mqttPort, _ := net.SplitHostPort(pp.mqtt)
	if ep := text(owner, `[data-testid="endpoint-mqtt"]`); !strings.HasSuffix(ep, ":"+mqttPort) {
		t.Errorf("mqtt endpoint %q, want the node's port %s", ep, mqttPort)
	}
	if got := text(owner, `[data-testid="username-format"]`); got != "<username>@"+instID {
		t.Errorf("username format %q", got)
	}
	if sn := text(owner, `#s-mosquitto`); !strings.Contains(sn, "-p "+mqttPort) {
		t.Errorf("mosquitto snippet lacks the port:\n%s", sn)
	}
	// The node applies the config within moments: reload until running.
	deadline := time.Now().Add(20 * time.Second)
	for eval(owner, `document.querySelectorAll('h1 .badge.running').length`) == 0 {
		if time.Now().After(deadline) {
			owner.Shot("failed-not-running")
			t.Fatal("instance never shown running")
		}
		time.Sleep(200 * time.Millisecond)
		do(owner, "reload", chromedp.Navigate(detail), chromedp.WaitVisible(chromedp.CSS(`[data-testid="instance-id"]`)))
	}
	if eval(owner, `document.querySelectorAll('[data-testid="dashboard"] figure.chart').length`) != 4 {
		t.Error("the dashboard does not show its four charts")
	}
	owner.Shot("02-instance-running")

	do(owner, "create credential",
		chromedp.Click(chromedp.CSS(`nav.tabs a[href$="/credentials"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="create-credential"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-username`), "sensor-1"),
		chromedp.Click(chromedp.CSS(`[data-testid="create-credential"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="new-password"]`)),
	)
	owner.Shot("03-credential-created")
	user := text(owner, `[data-testid="new-username"]`)
	pass := text(owner, `[data-testid="new-password"]`)
	if user != "sensor-1@"+instID || len(pass) < 20 {
		t.Fatalf("page shows username %q password %q", user, pass)
	}

	// A real device connects with what the page showed.
	time.Sleep(300 * time.Millisecond) // the node applies the push
	got := make(chan *paho.Publish, 1)
	sub, code := connect5(t, pp.mqtt, "browser-sub", user, pass, func(m *paho.Publish) {
		select { // the first message is checked; the load after it is not
		case got <- m:
		default:
		}
	})
	if code != 0 {
		t.Fatalf("subscriber refused 0x%02x", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "test/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub, code := connect5(t, pp.mqtt, "browser-pub", user, pass, nil)
	if code != 0 {
		t.Fatalf("publisher refused 0x%02x", code)
	}
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "test/hello", QoS: 1, Payload: []byte("from the console")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Topic != "test/hello" || string(m.Payload) != "from the console" {
			t.Fatalf("got %q %q", m.Topic, m.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message delivered")
	}

	// The device publishes 100 messages and stays connected; the dashboard
	// shows it and them within 30 s (the node reports every 10 s).
	for i := range 100 {
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: "test/load", QoS: 0, Payload: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond) // the Free plan's 20 publishes/s per client
	}
	do(owner, "open dashboard", chromedp.Navigate(detail), chromedp.WaitVisible(chromedp.CSS(`[data-testid="totals"]`)))
	deadline = time.Now().Add(30 * time.Second)
	for {
		in := text(owner, `[data-testid="total-messages-in"]`)
		conns := text(owner, `[data-testid="total-connections"]`)
		if n, _ := strconv.Atoi(in); n >= 101 && conns != "0" {
			t.Logf("dashboard: %s connections, %s messages in", conns, in)
			break
		}
		if time.Now().After(deadline) {
			owner.Shot("failed-dashboard")
			t.Fatalf("dashboard shows %s connections and %s messages in after 30 s", conns, in)
		}
		// The page refreshes the charts by itself; reload to be independent of it.
		time.Sleep(2 * time.Second)
		do(owner, "reload dashboard", chromedp.Navigate(detail), chromedp.WaitVisible(chromedp.CSS(`[data-testid="totals"]`)))
	}
	owner.Shot("04-dashboard-with-traffic")
	// The org overview adds up every instance.
	do(owner, "org overview", chromedp.Navigate(strings.SplitAfter(detail, "/instances/")[0][:len(strings.SplitAfter(detail, "/instances/")[0])-len("instances/")]),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="org-dashboard"]`)))
	if in, _ := strconv.Atoi(text(owner, `[data-testid="org-dashboard"] [data-testid="total-messages-in"]`)); in < 101 {
		t.Errorf("org overview shows %d messages in", in)
	}
	if n := eval(owner, `document.querySelectorAll('[data-testid="org-dashboard"] figure.chart').length`); n != 4 {
		t.Errorf("org overview shows %d charts", n)
	}
	owner.Shot("05-org-overview")
	do(owner, "back to the instance", chromedp.Navigate(detail), chromedp.WaitVisible(chromedp.CSS(`[data-testid="instance-id"]`)))

	// Shown once: a reload lists the credential without its password.
	do(owner, "reload credentials",
		chromedp.Click(chromedp.CSS(`nav.tabs a[href$="/credentials"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="cred-sensor-1"]`)),
	)
	if n := eval(owner, `document.body.innerText.includes(`+jsQuote(pass)+`) ? 1 : 0`); n != 0 {
		t.Error("password shown again after a reload")
	}
	// A wrong password is refused (the page's one was really needed).
	if c, code := connect5(t, pp.mqtt, "browser-bad", user, pass+"x", nil); c != nil || code == 0 {
		t.Error("a wrong password was accepted")
	}

	// On a 375 px phone every instance page fits the screen.
	phone := browsertest.New(t, 375, 800)
	do(phone, "log in on phone",
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-form"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-email`), "dev@example.com"),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct-horse-1"),
		chromedp.Click(chromedp.CSS(`[data-testid="login-form"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="org-name"]`)),
	)
	for i, page := range []string{"", "/credentials", "/acl", "/quotas"} {
		do(phone, "phone "+page, chromedp.Navigate(detail+page), chromedp.WaitVisible(chromedp.CSS(`nav.tabs a[aria-current="page"]`)))
		if w := eval(phone, `document.documentElement.scrollWidth`); w > 375 {
			t.Errorf("instance page %q is %d px wide at 375 px", page, w)
		}
		phone.Shot("phone-" + string(rune('0'+i)) + strings.TrimPrefix(page, "/"))
	}
	do(phone, "phone list", chromedp.Navigate(strings.TrimSuffix(detail, "/"+instID)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="instances"]`)))
	if w := eval(phone, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("instance list is %d px wide at 375 px", w)
	}
}

// jsQuote quotes s as a JavaScript string literal.
func jsQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
