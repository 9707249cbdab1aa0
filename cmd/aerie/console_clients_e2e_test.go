package main_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/internal/browsertest"
	"github.com/aeriemq/aerie/internal/pgtest"
)

// browserSteps are the helpers a console browser test uses.
type browserSteps struct {
	t    *testing.T
	wait time.Duration
}

func (s browserSteps) do(b *browsertest.Browser, step string, steps ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	if err := b.Do(s.wait, steps...); err != nil {
		b.Shot("failed-" + strings.ReplaceAll(step, " ", "-"))
		s.t.Fatalf("%s: %v", step, err)
	}
}

func (s browserSteps) text(b *browsertest.Browser, sel string) string {
	s.t.Helper()
	v, err := browsertest.Get(b, s.wait, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.Shot("failed-text")
		s.t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(v)
}

func (s browserSteps) evalInt(b *browsertest.Browser, expr string) int {
	s.t.Helper()
	n, err := browsertest.Get(b, s.wait, chromedp.Evaluate[int](expr))
	if err != nil {
		s.t.Fatalf("%s: %v", expr, err)
	}
	return n
}

func (s browserSteps) evalString(b *browsertest.Browser, expr string) string {
	s.t.Helper()
	v, err := browsertest.Get(b, s.wait, chromedp.Evaluate[string](expr))
	if err != nil {
		s.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitTrue polls a JavaScript condition until it holds.
func (s browserSteps) waitTrue(b *browsertest.Browser, what, cond string) {
	s.t.Helper()
	deadline := time.Now().Add(s.wait)
	for s.evalInt(b, "("+cond+") ? 1 : 0") != 1 {
		if time.Now().After(deadline) {
			b.Shot("failed-" + strings.ReplaceAll(what, " ", "-"))
			s.t.Fatalf("never saw %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// overflowJS lists the elements wider than the viewport (or reaching past
// its right edge), outside boxes that scroll on their own (.table-wrap,
// pre): a page that fits the screen lists none.
const overflowJS = `(function(){var w=document.documentElement.clientWidth,out=[];
document.querySelectorAll('body *').forEach(function(el){
  if(el.closest('.table-wrap,pre,.sr-only,[hidden]'))return;
  var r=el.getBoundingClientRect(); if(r.width===0&&r.height===0)return;
  if(r.width>w+1||r.right>w+1)out.push(el.tagName.toLowerCase()+(el.id?'#'+el.id:'')+(el.className&&el.className.baseVal===undefined?'.'+String(el.className).split(' ').join('.'):'')+' '+Math.round(r.right));
});
if(document.documentElement.scrollWidth>w)out.push('document '+document.documentElement.scrollWidth);
return out.slice(0,8).join(', ');})()`

// shotAndFit saves a screenshot and fails the test if anything on the page
// is wider than the viewport.
func (s browserSteps) shotAndFit(b *browsertest.Browser, name string) {
	s.t.Helper()
	b.Shot(name)
	if bad := s.evalString(b, overflowJS); bad != "" {
		s.t.Errorf("%s: wider than the viewport: %s", name, bad)
	}
}

// TestConsoleClientsAndSafeDelete (issue 18, items 1 and 2) against a real
// `aerie serve` in headless chromium with real devices (mosquitto_sub,
// MQTT 3.1.1, and a paho MQTT 5 client):
//   - the instance's Clients tab lists both within 2 s of their connecting,
//     with protocol, remote address and subscriptions, read live from the node;
//     the REST API lists them too, and another org gets 404;
//   - "Disconnect" in the page cuts the MQTT 5 client off;
//   - the overview shows the live connection count; a protected instance
//     offers no delete and the API answers 409 deletion-protected; without
//     its name typed the delete does nothing; with it, devices are cut off.
//
// Screenshots at 1280 and 375 px; no element wider than the viewport.
func TestConsoleClientsAndSafeDelete(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Fatalf("mosquitto_sub not installed (make deps): %v", err)
	}
	dataDir := newDataDir(t)
	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t)), append([]string{"serve", "--data-dir", dataDir}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	s := browserSteps{t: t, wait: 30 * time.Second}

	const email = "ops@example.com"
	owner, org := signup(t, base, email)
	var inst instanceOut
	owner.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "plant"}, 201, &inst)
	waitRunning(t, owner, org, inst.ID)
	var cred credOut
	owner.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "dev"}, 201, &cred)
	time.Sleep(300 * time.Millisecond) // the node applies the push

	b := browsertest.New(t, 1280, 900)
	s.do(b, "log in",
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-form"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-email`), email),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`[data-testid="login-form"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="org-name"]`)),
	)
	detail := base + "/orgs/" + org + "/instances/" + inst.ID
	s.do(b, "clients tab", chromedp.Navigate(detail+"/clients"), chromedp.WaitVisible(chromedp.CSS(`[data-testid="no-clients"]`)))
	s.shotAndFit(b, "01-clients-empty-1280")

	// Two real devices connect while the page is open.
	connectedAt := time.Now()
	sub := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", portOf(t, pp.mqtt), "-V", "mqttv311", "-i", "sub-311",
		"-u", cred.MQTTUsername, "-P", cred.Password, "-t", "test/#", "-q", "1")
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })
	dev := connectV5(t, pp.mqtt, "dev-v5", cred.MQTTUsername, cred.Password)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := dev.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "sensors/+/temp", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	s.do(b, "both clients listed",
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="client-sub-311"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="client-dev-v5"] [data-testid="client-subs"] code`)),
	)
	if took := time.Since(connectedAt); took > 2*time.Second {
		t.Errorf("clients shown %v after connecting, want ≤ 2 s", took)
	} else {
		t.Logf("both clients shown %v after connecting", took.Round(time.Millisecond))
	}
	for _, c := range []struct{ id, proto, subs string }{{"sub-311", "MQTT 3.1.1", "test/#"}, {"dev-v5", "MQTT 5", "sensors/+/temp"}} {
		row := `[data-testid="client-` + c.id + `"] `
		if got := s.text(b, row+`[data-testid="client-protocol"]`); !strings.HasPrefix(got, c.proto) || !strings.Contains(got, "mqtt") {
			t.Errorf("%s protocol %q, want %s over mqtt", c.id, got, c.proto)
		}
		if got := s.text(b, row+`[data-testid="client-addr"]`); !strings.HasPrefix(got, "127.0.0.1:") {
			t.Errorf("%s address %q", c.id, got)
		}
		if got := s.text(b, row+`[data-testid="client-subs"]`); got != c.subs {
			t.Errorf("%s subscriptions %q, want %q", c.id, got, c.subs)
		}
		if got := s.text(b, row+`[data-testid="client-username"]`); got != "dev" {
			t.Errorf("%s username %q", c.id, got)
		}
	}
	s.shotAndFit(b, "02-clients-listed-1280")

	// The REST API reads the same from the node; another org gets 404.
	var list struct {
		Data []struct {
			ClientID        string   `json:"client_id"`
			ProtocolVersion int      `json:"protocol_version"`
			Transport       string   `json:"transport"`
			RemoteAddr      string   `json:"remote_addr"`
			Subscriptions   []string `json:"subscriptions"`
		}
		NextCursor *string `json:"next_cursor"`
	}
	owner.call(t, "GET", "/v1/orgs/"+org+"/instances/"+inst.ID+"/clients", nil, 200, &list)
	if len(list.Data) != 2 || list.Data[0].ClientID != "dev-v5" || list.Data[0].ProtocolVersion != 5 || list.Data[1].ProtocolVersion != 4 ||
		list.Data[1].Transport != "mqtt" || !strings.HasPrefix(list.Data[1].RemoteAddr, "127.0.0.1:") || list.NextCursor != nil {
		t.Errorf("API clients: %+v", list)
	}
	owner.call(t, "GET", "/v1/orgs/"+org+"/instances/"+inst.ID+"/clients?limit=1", nil, 200, &list)
	if len(list.Data) != 1 || list.NextCursor == nil {
		t.Errorf("first page of 1: %+v", list)
	}
	other, otherOrg := signup(t, base, "other@example.com")
	other.call(t, "GET", "/v1/orgs/"+org+"/instances/"+inst.ID+"/clients", nil, 404, nil)
	other.call(t, "GET", "/v1/orgs/"+otherOrg+"/instances/"+inst.ID+"/clients", nil, 404, nil)
	other.call(t, "DELETE", "/v1/orgs/"+otherOrg+"/instances/"+inst.ID+"/clients/dev-v5", nil, 404, nil)
	owner.call(t, "DELETE", "/v1/orgs/"+org+"/instances/"+inst.ID+"/clients/nobody", nil, 404, nil)

	// "Disconnect" in the page cuts the MQTT 5 client off.
	// Clicked from the page's script in one step: the list is replaced every
	// second, so a node found first and clicked after may be gone.
	s.evalInt(b, `(document.querySelector('[data-testid="client-dev-v5"] [data-testid="disconnect"]').click(), 1)`)
	s.do(b, "disconnect dev-v5", chromedp.WaitVisible(chromedp.CSS(`[data-testid="flash"]`)))
	select {
	case <-dev.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the disconnected client is still connected")
	}
	s.do(b, "row gone", chromedp.WaitNotPresent(chromedp.CSS(`[data-testid="client-dev-v5"]`)))
	s.shotAndFit(b, "03-client-disconnected-1280")

	// A persistent session: its backlog grows while it is offline and
	// drains after it reconnects; then it is discarded.
	persist := connectPersistent(t, pp.mqtt, "persist-1", cred.MQTTUsername, cred.Password)
	if _, err := persist.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "queue/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	_ = persist.Disconnect(&paho.Disconnect{})
	pub := connectV5(t, pp.mqtt, "pub-5", cred.MQTTUsername, cred.Password)
	backlog := func(want string) {
		t.Helper()
		s.waitTrue(b, "backlog "+want, `(function(){var r=document.querySelector('[data-testid="session-persist-1"] [data-testid="session-backlog"]');return r!==null&&r.innerText.trim()===`+jsQuote(want)+`})()`)
	}
	publishN := func(n int) {
		t.Helper()
		for i := range n {
			if _, err := pub.Publish(ctx, &paho.Publish{Topic: "queue/job", QoS: 1, Payload: []byte(fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.do(b, "clients page", chromedp.Navigate(detail+"/clients"), chromedp.WaitVisible(chromedp.CSS(`[data-testid="session-persist-1"]`)))
	publishN(3)
	backlog("3")
	if got := s.text(b, `[data-testid="session-persist-1"] [data-testid="session-state"]`); got != "offline" {
		t.Errorf("session state %q while disconnected", got)
	}
	publishN(2)
	backlog("5")
	s.shotAndFit(b, "03b-session-backlog-1280")
	persist = connectPersistent(t, pp.mqtt, "persist-1", cred.MQTTUsername, cred.Password)
	backlog("0")
	s.waitTrue(b, "the session online", `document.querySelector('[data-testid="session-persist-1"] [data-testid="session-state"]').innerText.trim() === 'online'`)
	owner.call(t, "DELETE", "/v1/orgs/"+org+"/instances/"+inst.ID+"/sessions/persist-1", nil, 409, nil)
	_ = persist.Disconnect(&paho.Disconnect{})
	var sessions struct {
		Data []struct {
			ClientID string `json:"client_id"`
			Online   bool
			Backlog  int
		}
	}
	offline := func() bool {
		owner.call(t, "GET", "/v1/orgs/"+org+"/instances/"+inst.ID+"/sessions?q=persist", nil, 200, &sessions)
		return len(sessions.Data) == 1 && sessions.Data[0].ClientID == "persist-1" && !sessions.Data[0].Online
	}
	deadline := time.Now().Add(5 * time.Second)
	for !offline() {
		if time.Now().After(deadline) {
			t.Fatalf("sessions after disconnect: %+v", sessions.Data)
		}
		time.Sleep(100 * time.Millisecond)
	}
	owner.call(t, "DELETE", "/v1/orgs/"+org+"/instances/"+inst.ID+"/sessions/persist-1", nil, 204, nil)
	owner.call(t, "GET", "/v1/orgs/"+org+"/instances/"+inst.ID+"/sessions?q=persist", nil, 200, &sessions)
	if len(sessions.Data) != 0 {
		t.Errorf("sessions after discard: %+v", sessions.Data)
	}
	_ = pub.Disconnect(&paho.Disconnect{})

	// The overview shows who is connected now; protection on: no delete in
	// the page, 409 from the API.
	dev2 := connectV5(t, pp.mqtt, "dev-v5b", cred.MQTTUsername, cred.Password)
	s.do(b, "overview", chromedp.Navigate(detail), chromedp.WaitVisible(chromedp.CSS(`[data-testid="live-connections"]`)))
	if got := s.text(b, `[data-testid="live-connections"]`); got != "2" {
		t.Errorf("live connections %q, want 2", got)
	}
	if got := s.text(b, `[data-testid="protection-default"]`); !strings.Contains(got, "Free start unprotected") {
		t.Errorf("protection default text %q", got)
	}
	s.do(b, "protect", chromedp.Click(chromedp.CSS(`[data-testid="protection-on"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="delete-protected"]`)))
	if n := s.evalInt(b, `document.querySelectorAll('[data-testid="delete-form"]').length`); n != 0 {
		t.Error("a protected instance offers a delete form")
	}
	owner.call(t, "DELETE", "/v1/orgs/"+org+"/instances/"+inst.ID, nil, 409, nil)
	s.shotAndFit(b, "04-protected-1280")
	s.do(b, "unprotect", chromedp.Click(chromedp.CSS(`[data-testid="protection-off"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="delete-zone"]`)))

	// Without the name: the button stays disabled, and a forced submit
	// deletes nothing.
	s.do(b, "open delete", chromedp.Click(chromedp.CSS(`[data-testid="delete-zone"] summary`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="delete-confirm"]`)))
	if got := s.text(b, `[data-testid="delete-impact"]`); !strings.Contains(got, "2 devices are connected now") {
		t.Errorf("delete impact %q", got)
	}
	if s.evalInt(b, `document.querySelector('[data-testid="delete-instance"]').disabled ? 1 : 0`) != 1 {
		t.Error("the delete button is enabled before the name is typed")
	}
	s.do(b, "wrong name", chromedp.SendKeys(chromedp.CSS(`[data-testid="delete-confirm"]`), "plan"))
	if s.evalInt(b, `document.querySelector('[data-testid="delete-instance"]').disabled ? 1 : 0`) != 1 {
		t.Error("the delete button is enabled with a wrong name")
	}
	s.shotAndFit(b, "05-delete-confirm-1280")
	s.evalInt(b, `(document.querySelector('[data-testid="delete-form"]').submit(), 1)`)
	s.waitTrue(b, "the refusal", `document.querySelector('[data-testid="flash"]') && document.querySelector('[data-testid="flash"]').innerText.includes('Nothing was deleted')`)
	owner.call(t, "GET", "/v1/orgs/"+org+"/instances/"+inst.ID, nil, 200, nil)
	select {
	case <-dev2.Done():
		t.Fatal("a device was cut off although nothing was deleted")
	default:
	}

	// Deleting the credential asks first, saying what it cuts off; Cancel
	// keeps it.
	s.do(b, "credential delete asks",
		chromedp.Navigate(detail+"/credentials"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="delete-dev"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid="delete-dev"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="confirm-ask"]`)),
	)
	if got := s.text(b, `[data-testid="confirm-ask"]`); !strings.Contains(got, "2 connections are open now and will be closed") {
		t.Errorf("credential delete confirmation %q", got)
	}
	s.shotAndFit(b, "05b-credential-confirm-1280")
	s.do(b, "cancel", chromedp.Click(chromedp.CSS(`[data-testid="confirm-ask"] button.secondary`)), chromedp.WaitNotPresent(chromedp.CSS(`[data-testid="confirm-ask"]`)))
	owner.call(t, "GET", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials/"+cred.ID, nil, 200, nil)
	s.do(b, "back to overview", chromedp.Navigate(detail), chromedp.WaitVisible(chromedp.CSS(`[data-testid="delete-zone"]`)))

	// On a phone, the same pages fit.
	phone := browsertest.New(t, 375, 800)
	s.do(phone, "phone log in",
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-form"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-email`), email),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`[data-testid="login-form"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="org-name"]`)),
	)
	for _, pg := range []struct{ path, sel, name string }{
		{"/clients", `[data-testid="client-sub-311"]`, "06-clients-375"},
		{"", `[data-testid="delete-zone"]`, "07-overview-375"},
	} {
		s.do(phone, "phone "+pg.name, chromedp.Navigate(detail+pg.path), chromedp.WaitVisible(chromedp.CSS(pg.sel)))
		s.shotAndFit(phone, pg.name)
	}

	// With the name typed: deleted, and the devices are cut off.
	s.do(b, "type the name",
		chromedp.Click(chromedp.CSS(`[data-testid="delete-zone"] summary`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="delete-confirm"]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid="delete-confirm"]`), "plant"),
	)
	if s.evalInt(b, `document.querySelector('[data-testid="delete-instance"]').disabled ? 1 : 0`) != 0 {
		t.Fatal("the delete button stays disabled with the right name")
	}
	s.do(b, "delete",
		chromedp.Click(chromedp.CSS(`[data-testid="delete-instance"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="no-instances"]`)),
	)
	s.shotAndFit(b, "08-deleted-1280")
	owner.call(t, "GET", "/v1/orgs/"+org+"/instances/"+inst.ID, nil, 404, nil)
	select {
	case <-dev2.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a device of the deleted instance is still connected")
	}
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// connectV5 connects an MQTT 5 client that must be accepted.
func connectV5(t *testing.T, addr, clientID, user, pass string) *paho.Client {
	t.Helper()
	c, code := connect5(t, addr, clientID, user, pass, nil)
	if c == nil {
		t.Fatalf("%s refused: %s", clientID, fmt.Sprintf("0x%02x", code))
	}
	return c
}

// connectPersistent connects an MQTT 5 client resuming (or starting) a
// session that outlives the connection by an hour.
func connectPersistent(t *testing.T, addr, clientID, user, pass string) *paho.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(paho.PublishReceived) (bool, error) { return true, nil }}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	expiry := uint32(3600)
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: false, KeepAlive: 30, UsernameFlag: true, Username: user,
		PasswordFlag: true, Password: []byte(pass), Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
		t.Fatalf("connect %s: %v", clientID, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}
