package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// withNode gives the env one live data-plane node following the config in
// process (as `aerie serve` does), so instances get placed and turn
// running; it returns the node's config state.
func withNode(t *testing.T, e *env) *configsync.State {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	feed := nodelink.NewFeed(e.svc, log)
	go feed.Run(ctx)
	node, _, err := e.svc.EnsureNode(ctx, "test-node", map[string]string{"mqtt": "mqtt://localhost:1883", "ws": "ws://localhost:8083/mqtt"})
	if err != nil {
		t.Fatal(err)
	}
	state := configsync.NewState()
	cl, err := configsync.NewClient(configsync.Options{Source: nodelink.LocalSource{Hub: api.NewHub(api.Deps{Log: log, Tenancy: e.svc, Feed: feed}), NodeID: node.ID}, State: state,
		Dir: t.TempDir(), Log: log, Endpoints: node.Endpoints})
	if err != nil {
		t.Fatal(err)
	}
	// Stop the client and wait for its last snapshot write before its
	// directory is removed (cleanups run last-registered first).
	done := make(chan struct{})
	go func() { cl.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return state
}

// createInstance creates an instance through the console's form and returns
// its ID (from the detail page it lands on).
func (c *client) createInstance(orgID, name string) string {
	c.t.Helper()
	c.get("/orgs/" + orgID + "/instances")
	res, doc := c.post("/orgs/"+orgID+"/instances", url.Values{"name": {name}})
	prefix := "/orgs/" + orgID + "/instances/"
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Request.URL.Path, prefix) {
		c.t.Fatalf("create instance: %d at %s: %s", res.StatusCode, res.Request.URL, doc.Find("main").Text())
	}
	return strings.TrimPrefix(res.Request.URL.Path, prefix)
}

func waitRunning(t *testing.T, e *env, orgID, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, err := e.svc.Instance(context.Background(), orgID, id)
		if err == nil && in.Status == tenancy.InstanceRunning {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s not running: %+v %v", id, in, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAuth waits until the node's config answers want for the credential.
func waitAuth(t *testing.T, st *configsync.State, instID, user, pw string, want configsync.AuthResult) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, got := st.CheckPassword(instID, user, []byte(pw), "dev-1", time.Now())
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node auth for %s: %v, want %v", user, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestInstanceCreateListAndDetail(t *testing.T) {
	e := newEnv(t)
	withNode(t, e)
	ctx := context.Background()
	c := e.client(t)
	orgID := c.signup("dev@example.com", "Dev Co")

	// No instance yet: the overview calls to create the first one.
	_, doc := c.get("/orgs/" + orgID + "/")
	if href := doc.Find(`[data-testid="create-first-instance"]`).AttrOr("href", ""); href != "/orgs/"+orgID+"/instances" {
		t.Errorf("overview's call to action links to %q", href)
	}
	if doc.Find(`nav a[href="/orgs/`+orgID+`/instances"]`).Length() != 1 {
		t.Error("no Instances entry in the navigation")
	}
	_, doc = c.get("/orgs/" + orgID + "/instances")
	if doc.Find(`[data-testid="no-instances"]`).Length() != 1 || !strings.Contains(doc.Find(`#create-instance-h`).Text(), "first instance") {
		t.Error("empty list: no empty note or first-instance form")
	}
	if doc.Find(`nav a[aria-current="page"]`).Text() != "Instances" {
		t.Error("Instances not marked current in the navigation")
	}

	// Invalid name: error next to the field, nothing created.
	res, doc := c.post("/orgs/"+orgID+"/instances", url.Values{"name": {""}})
	if res.StatusCode != http.StatusUnprocessableEntity || doc.Find(`label[for="f-name"] #e-name`).Length() != 1 {
		t.Errorf("empty name: %d, error next to field %d", res.StatusCode, doc.Find(`#e-name`).Length())
	}

	id := c.createInstance(orgID, "home")
	list, _, err := e.svc.ListInstances(ctx, orgID, tenancy.Page{})
	if err != nil || len(list) != 1 || list[0].ID != id || list[0].Name != "home" {
		t.Fatalf("service lists %+v %v", list, err)
	}
	// The name is unique in the org: error next to the field.
	c.get("/orgs/" + orgID + "/instances")
	res, doc = c.post("/orgs/"+orgID+"/instances", url.Values{"name": {"home"}})
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(doc.Find(`#e-name`).Text(), "exists") {
		t.Errorf("duplicate name: %d %q", res.StatusCode, doc.Find(`#e-name`).Text())
	}

	waitRunning(t, e, orgID, id)
	_, doc = c.get("/orgs/" + orgID + "/instances")
	row := doc.Find(`[data-testid="instance-home"]`)
	if row.Length() != 1 || row.Find(`.badge.running`).Text() != "running" || !strings.Contains(row.Text(), "mqtt://localhost:1883") ||
		row.Find(`a[href="/orgs/`+orgID+`/instances/`+id+`"]`).Length() != 1 {
		t.Errorf("list row: %q", row.Text())
	}

	res, doc = c.get("/orgs/" + orgID + "/instances/" + id)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("detail: %d", res.StatusCode)
	}
	if doc.Find(`[data-testid="endpoint-mqtt"]`).Text() != "mqtt://localhost:1883" || doc.Find(`[data-testid="endpoint-ws"]`).Text() != "ws://localhost:8083/mqtt" {
		t.Error("endpoints not shown")
	}
	if doc.Find(`[data-testid="username-format"]`).Text() != "<username>@"+id {
		t.Errorf("username format %q", doc.Find(`[data-testid="username-format"]`).Text())
	}
	for _, sn := range []struct{ id, want string }{
		{"s-mosquitto", "mosquitto_sub -V mqttv5 -h localhost -p 1883"},
		{"s-mosquitto", "-u '<username>@" + id + "'"},
		{"s-python", `client.connect("localhost", 1883)`},
		{"s-python", `client.username_pw_set("<username>@` + id + `"`},
		{"s-go", `AddBroker("tcp://localhost:1883")`},
		{"s-go", `github.com/eclipse/paho.mqtt.golang`},
		{"s-js", `mqtt.connect("ws://localhost:8083/mqtt"`},
	} {
		code := doc.Find(`pre code#` + sn.id)
		if !strings.Contains(code.Text(), sn.want) {
			t.Errorf("snippet %s lacks %q:\n%s", sn.id, sn.want, code.Text())
		}
		if doc.Find(`button[data-copy="#`+sn.id+`"]`).Length() != 1 {
			t.Errorf("snippet %s has no copy button", sn.id)
		}
	}
	// What the plan's per-client rate is, and what a client over it sees
	// (issue 14). The org is on Free: 20 a second per client.
	if note := doc.Find(`[data-testid="rate-note-s"]`).Text(); !strings.Contains(note, "up to 20 publishes a second per client") ||
		!strings.Contains(note, "slowed down") || !strings.Contains(note, "0x96") || !strings.Contains(note, "30 s") {
		t.Errorf("rate note %q", note)
	}
	if doc.Find(`[data-testid="dashboard"]`).Length() != 0 {
		t.Error("dashboard shown without a meter")
	}
	_, doc = c.get("/orgs/" + orgID + "/")
	if doc.Find(`[data-testid="instance-count"]`).Text() != "1" || doc.Find(`[data-testid="create-first-instance"]`).Length() != 0 {
		t.Error("overview does not count the instance")
	}
}

func TestCreateInstanceWithoutNode(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	orgID := c.signup("dev@example.com", "Dev Co")
	c.get("/orgs/" + orgID + "/instances")
	res, doc := c.post("/orgs/"+orgID+"/instances", url.Values{"name": {"home"}})
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(doc.Find(`#e-name`).Text(), "No data-plane node") {
		t.Errorf("no node: %d %q", res.StatusCode, doc.Find(`#e-name`).Text())
	}
}

func TestCredentialsShownOnceDisableRotateDelete(t *testing.T) {
	e := newEnv(t)
	st := withNode(t, e)
	ctx := context.Background()
	c := e.client(t)
	orgID := c.signup("dev@example.com", "Dev Co")
	id := c.createInstance(orgID, "home")
	waitRunning(t, e, orgID, id)
	base := "/orgs/" + orgID + "/instances/" + id + "/credentials"

	_, doc := c.get(base)
	if doc.Find(`[data-testid="no-credentials"]`).Length() != 1 || doc.Find(`[data-testid="create-credential"]`).Length() != 1 {
		t.Fatal("empty credentials page: no note or form")
	}
	// Invalid input: errors next to their fields.
	res, doc := c.post(base, url.Values{"username": {"bad name!"}, "client_id_pattern": {"[x"}, "expires_at": {"soon"}})
	if res.StatusCode != http.StatusUnprocessableEntity || doc.Find(`label[for="f-expires_at"] #e-expires_at`).Length() != 1 {
		t.Errorf("bad expiry: %d", res.StatusCode)
	}
	res, doc = c.post(base, url.Values{"username": {"bad name!"}, "client_id_pattern": {"[x"}})
	if res.StatusCode != http.StatusUnprocessableEntity || doc.Find(`label[for="f-username"] #e-username`).Length() != 1 ||
		doc.Find(`label[for="f-client_id_pattern"] #e-client_id_pattern`).Length() != 1 {
		t.Errorf("bad username/pattern: %d", res.StatusCode)
	}
	if doc.Find(`#f-username`).AttrOr("value", "") != "bad name!" {
		t.Error("username not kept in the form")
	}

	// Create: the password is shown once, with the full MQTT username.
	exp := time.Now().Add(48 * time.Hour).UTC().Format("2006-01-02T15:04")
	res, doc = c.post(base, url.Values{"username": {"sensor-1"}, "client_id_pattern": {"dev-*"}, "expires_at": {exp}})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create credential: %d %s", res.StatusCode, doc.Find("main").Text())
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q on the password page", cc)
	}
	pw := strings.TrimSpace(doc.Find(`[data-testid="new-password"]`).Text())
	if len(pw) < 20 {
		t.Fatalf("password not shown: %q", pw)
	}
	if got := doc.Find(`[data-testid="new-username"]`).Text(); got != "sensor-1@"+id {
		t.Errorf("MQTT username %q", got)
	}
	if !strings.Contains(doc.Find(`[data-testid="new-passwords"]`).Text(), "only this once") {
		t.Error("no shown-once warning")
	}
	if !strings.Contains(doc.Find(`#n-mosquitto`).Text(), "-P '"+pw+"'") || !strings.Contains(doc.Find(`#n-python`).Text(), `"sensor-1@`+id+`"`) {
		t.Error("snippets for the new credential are not filled in")
	}
	row := doc.Find(`[data-testid="cred-sensor-1"]`)
	if row.Length() != 1 || row.Find(`[data-testid="cred-state"]`).Text() != "enabled" || !strings.Contains(row.Text(), "dev-*") {
		t.Errorf("credential row %q", row.Text())
	}
	waitAuth(t, st, id, "sensor-1", pw, configsync.AuthOK)
	creds, _, err := e.svc.ListCredentials(ctx, orgID, id, tenancy.Page{})
	if err != nil || len(creds) != 1 || creds[0].ExpiresAt == nil {
		t.Fatalf("service lists %+v %v", creds, err)
	}
	credID := creds[0].ID

	// Reload: listed, password gone, nowhere in cookies.
	_, doc = c.get(base)
	if doc.Find(`[data-testid="new-password"]`).Length() != 0 || strings.Contains(doc.Text(), pw) {
		t.Error("password shown again")
	}
	u, _ := url.Parse(e.srv.URL)
	for _, ck := range c.http.Jar.Cookies(u) {
		if strings.Contains(ck.Value, pw) {
			t.Errorf("password stored in cookie %s", ck.Name)
		}
	}

	// Disable, then enable.
	res, doc = c.post(base+"/"+credID+"/enabled", url.Values{"enabled": {"false"}})
	if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="cred-sensor-1"] [data-testid="cred-state"]`).Text() != "disabled" ||
		doc.Find(`[data-testid="enable-sensor-1"]`).Length() != 1 {
		t.Errorf("disable: %d", res.StatusCode)
	}
	waitAuth(t, st, id, "sensor-1", pw, configsync.AuthDisabled)
	res, doc = c.post(base+"/"+credID+"/enabled", url.Values{"enabled": {"true"}})
	if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="cred-sensor-1"] [data-testid="cred-state"]`).Text() != "enabled" {
		t.Errorf("enable: %d", res.StatusCode)
	}
	waitAuth(t, st, id, "sensor-1", pw, configsync.AuthOK)

	// Rotate: a new password, shown once; the old one stops working.
	res, doc = c.post(base+"/"+credID+"/rotate", nil)
	pw2 := strings.TrimSpace(doc.Find(`[data-testid="new-password"]`).Text())
	if res.StatusCode != http.StatusOK || len(pw2) < 20 || pw2 == pw {
		t.Fatalf("rotate: %d, new password %q", res.StatusCode, pw2)
	}
	if res.Header.Get("Cache-Control") != "no-store" {
		t.Error("rotated password page may be cached")
	}
	waitAuth(t, st, id, "sensor-1", pw2, configsync.AuthOK)
	waitAuth(t, st, id, "sensor-1", pw, configsync.AuthBadCredentials)
	if _, doc = c.get(base); strings.Contains(doc.Text(), pw2) {
		t.Error("rotated password shown again")
	}

	// Delete.
	res, doc = c.post(base+"/"+credID+"/delete", nil)
	if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="cred-sensor-1"]`).Length() != 0 {
		t.Errorf("delete: %d", res.StatusCode)
	}
	if creds, _, _ := e.svc.ListCredentials(ctx, orgID, id, tenancy.Page{}); len(creds) != 0 {
		t.Errorf("still %d credentials", len(creds))
	}
	waitAuth(t, st, id, "sensor-1", pw2, configsync.AuthBadCredentials)
}

func TestBulkCredentials(t *testing.T) {
	e := newEnv(t)
	st := withNode(t, e)
	ctx := context.Background()
	c := e.client(t)
	orgID := c.signup("dev@example.com", "Dev Co")
	id := c.createInstance(orgID, "fleet")
	waitRunning(t, e, orgID, id)
	base := "/orgs/" + orgID + "/instances/" + id + "/credentials"
	c.get(base)

	// One bad line: nothing is created, the error names the line.
	res, doc := c.post(base+"/bulk", url.Values{"csv": {"a-1\nbad name\na-3"}})
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(doc.Find(`label[for="f-csv"] #e-csv`).Text(), "line 2") {
		t.Errorf("bad line: %d %q", res.StatusCode, doc.Find(`#e-csv`).Text())
	}
	if doc.Find(`#f-csv`).Text() != "a-1\nbad name\na-3" {
		t.Errorf("upload not kept: %q", doc.Find(`#f-csv`).Text())
	}
	if creds, _, _ := e.svc.ListCredentials(ctx, orgID, id, tenancy.Page{}); len(creds) != 0 {
		t.Fatalf("%d created by a refused upload", len(creds))
	}
	// Too many lines.
	res, doc = c.post(base+"/bulk", url.Values{"csv": {strings.Repeat("x\n", tenancy.MaxBulkCredentials+1)}})
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(doc.Find(`#e-csv`).Text(), "at most 1000") {
		t.Errorf("too many: %d %q", res.StatusCode, doc.Find(`#e-csv`).Text())
	}

	// A CSV file uploaded with the form (multipart) works like the textarea.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("csrf_token", c.csrf())
	fw, _ := mw.CreateFormFile("csv_file", "devices.csv")
	_, _ = fw.Write([]byte("f-1\nf-2,f-2-*\n"))
	mw.Close()
	upRes, err := c.http.Post(c.e.srv.URL+base+"/bulk", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	upRes, upDoc := c.parse(upRes)
	if upRes.StatusCode != http.StatusCreated || upDoc.Find(`[data-testid="new-credentials"] tbody tr`).Length() != 2 {
		t.Fatalf("CSV file upload: %d %s", upRes.StatusCode, upDoc.Find("main").Text())
	}

	res, doc = c.post(base+"/bulk", url.Values{"csv": {"# devices\r\nb-1\r\n\r\nb-2, dev-*\r\nb-3\r\n"}})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("bulk: %d %s", res.StatusCode, doc.Find("main").Text())
	}
	rows := doc.Find(`[data-testid="new-credentials"] tbody tr`)
	if rows.Length() != 3 {
		t.Fatalf("%d passwords shown, want 3", rows.Length())
	}
	pws := map[string]string{}
	rows.Each(func(_ int, s *goquery.Selection) {
		cells := s.Find("td")
		pws[cells.Eq(0).Text()] = cells.Eq(1).Text()
	})
	for _, u := range []string{"b-1", "b-2", "b-3"} {
		pw := pws[u+"@"+id]
		if pw == "" || !strings.Contains(doc.Find(`[data-testid="new-csv"]`).Text(), u+"@"+id+","+pw) {
			t.Errorf("%s: password %q not shown (or not in the CSV)", u, pw)
			continue
		}
		waitAuth(t, st, id, u, pw, configsync.AuthOK)
	}
	creds, _, _ := e.svc.ListCredentials(ctx, orgID, id, tenancy.Page{})
	patterns := map[string]string{}
	for _, cr := range creds {
		patterns[cr.Username] = cr.ClientIDPattern
	}
	if len(creds) != 5 || patterns["b-2"] != "dev-*" || patterns["b-1"] != "" || patterns["f-2"] != "f-2-*" { // 3 typed + 2 uploaded
		t.Errorf("service lists %+v", creds)
	}
	_, doc = c.get(base)
	for _, pw := range pws {
		if strings.Contains(doc.Text(), pw) {
			t.Error("a bulk password is shown again")
		}
	}
}

func TestACLRulesPage(t *testing.T) {
	e := newEnv(t)
	withNode(t, e)
	ctx := context.Background()
	c := e.client(t)
	orgID := c.signup("dev@example.com", "Dev Co")
	id := c.createInstance(orgID, "home")
	base := "/orgs/" + orgID + "/instances/" + id + "/acl"
	c.get("/orgs/" + orgID + "/instances/" + id + "/credentials")
	c.post("/orgs/"+orgID+"/instances/"+id+"/credentials", url.Values{"username": {"cam"}})
	creds, _, _ := e.svc.ListCredentials(ctx, orgID, id, tenancy.Page{})

	_, doc := c.get(base)
	def := doc.Find(`[data-testid="acl-rules"] tbody tr`)
	if def.Length() != 1 || def.Find(`[data-testid="default-rule"]`).Length() != 1 || !strings.Contains(def.Text(), "all credentials") {
		t.Errorf("default rule not shown plainly: %q", def.Text())
	}
	if !strings.Contains(doc.Find(`[data-testid="acl-note"]`).Text(), "allows everything until you narrow it") {
		t.Error("no note that a new instance allows everything")
	}

	res, doc := c.post(base, url.Values{"effect": {"deny"}, "action": {"publish"}, "filter": {"a/#/b"}})
	if res.StatusCode != http.StatusUnprocessableEntity || doc.Find(`label[for="f-filter"] #e-filter`).Length() != 1 {
		t.Errorf("bad filter: %d", res.StatusCode)
	}
	if doc.Find(`#f-effect option[selected]`).AttrOr("value", "") != "deny" {
		t.Error("effect not kept")
	}
	res, doc = c.post(base, url.Values{"effect": {"deny"}, "action": {"publish"}, "filter": {"secret/#"}, "credential_id": {creds[0].ID}})
	if res.StatusCode != http.StatusOK || !strings.Contains(doc.Find(`[data-testid="flash"]`).Text(), "Rule added") {
		t.Fatalf("add rule: %d", res.StatusCode)
	}
	rules, _, _ := e.svc.ListACLRules(ctx, orgID, id, tenancy.Page{})
	if len(rules) != 2 {
		t.Fatalf("%d rules", len(rules))
	}
	var added tenancy.ACLRule
	for _, r := range rules {
		if r.Filter == "secret/#" {
			added = r
		}
	}
	if added.Effect != "deny" || added.Action != "publish" || added.CredentialID != creds[0].ID {
		t.Errorf("added %+v", added)
	}
	row := doc.Find(`[data-testid="rule-` + added.ID + `"]`)
	if !strings.Contains(row.Text(), "secret/#") || !strings.Contains(row.Text(), "cam") {
		t.Errorf("rule row %q", row.Text())
	}
	res, doc = c.post(base+"/"+added.ID+"/delete", nil)
	if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="rule-`+added.ID+`"]`).Length() != 0 {
		t.Errorf("delete rule: %d", res.StatusCode)
	}
	if rules, _, _ := e.svc.ListACLRules(ctx, orgID, id, tenancy.Page{}); len(rules) != 1 {
		t.Errorf("%d rules after delete", len(rules))
	}
}

func TestQuotasPage(t *testing.T) {
	e := newEnv(t)
	withNode(t, e)
	ctx := context.Background()
	c := e.client(t)
	orgID := c.signup("dev@example.com", "Dev Co")
	id := c.createInstance(orgID, "home")
	base := "/orgs/" + orgID + "/instances/" + id + "/quotas"
	cur, ceil, err := e.svc.InstanceQuotas(ctx, orgID, id)
	if err != nil {
		t.Fatal(err)
	}
	if ceil.MaxConnections <= 0 {
		t.Fatalf("plan has no connection ceiling: %+v", ceil)
	}
	_, doc := c.get(base)
	if doc.Find(`[data-testid="quotas-form"] input[type="number"]`).Length() != len(quotaKeys()) {
		t.Errorf("%d quota fields, want %d", doc.Find(`[data-testid="quotas-form"] input[type="number"]`).Length(), len(quotaKeys()))
	}
	if v := doc.Find(`#f-max_connections`).AttrOr("value", ""); v != strconv.Itoa(cur.MaxConnections) {
		t.Errorf("max_connections prefilled %q, want %d", v, cur.MaxConnections)
	}
	if !strings.Contains(doc.Find(`#h-max_connections`).Text(), strconv.Itoa(ceil.MaxConnections)) {
		t.Errorf("ceiling not shown: %q", doc.Find(`#h-max_connections`).Text())
	}

	vals := url.Values{}
	doc.Find(`[data-testid="quotas-form"] input[type="number"]`).Each(func(_ int, s *goquery.Selection) {
		vals.Set(s.AttrOr("name", ""), s.AttrOr("value", ""))
	})
	over := cloneValues(vals)
	over.Set("max_connections", strconv.Itoa(ceil.MaxConnections+1))
	over.Set("max_inflight", "lots")
	res, doc := c.post(base, over)
	if res.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("over the plan: %d", res.StatusCode)
	}
	if got := doc.Find(`label[for="f-max_inflight"] #e-max_inflight`).Text(); got != "must be a whole number" {
		t.Errorf("not a number: %q", got)
	}
	over.Set("max_inflight", vals.Get("max_inflight"))
	res, doc = c.post(base, over)
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(doc.Find(`label[for="f-max_connections"] #e-max_connections`).Text(), "at most") {
		t.Errorf("over the plan: %d %q", res.StatusCode, doc.Find(`#e-max_connections`).Text())
	}
	if doc.Find(`#f-max_connections`).AttrOr("value", "") != strconv.Itoa(ceil.MaxConnections+1) {
		t.Error("submitted value not kept")
	}
	ok := cloneValues(vals)
	ok.Set("max_connections", "3")
	res, doc = c.post(base, ok)
	if res.StatusCode != http.StatusOK || doc.Find(`#f-max_connections`).AttrOr("value", "") != "3" {
		t.Errorf("save: %d", res.StatusCode)
	}
	if q, _, _ := e.svc.InstanceQuotas(ctx, orgID, id); q.MaxConnections != 3 || q.MaxInflight != cur.MaxInflight {
		t.Errorf("saved %+v", q)
	}
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func TestInstanceSuspendProtectDelete(t *testing.T) {
	e := newEnv(t)
	st := withNode(t, e)
	ctx := context.Background()
	c := e.client(t)
	orgID := c.signup("dev@example.com", "Dev Co")
	id := c.createInstance(orgID, "home")
	waitRunning(t, e, orgID, id)
	base := "/orgs/" + orgID + "/instances/" + id

	_, doc := c.get(base)
	if doc.Find(`[data-testid="suspend"]`).Length() != 1 || doc.Find(`[data-testid="delete-instance"]`).Length() != 1 {
		t.Fatal("owner sees no suspend or delete button")
	}
	res, doc := c.post(base+"/status", url.Values{"status": {"suspended"}})
	if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="resume"]`).Length() != 1 {
		t.Errorf("suspend: %d", res.StatusCode)
	}
	if in, _ := e.svc.Instance(ctx, orgID, id); in.Status != tenancy.InstanceSuspended {
		t.Errorf("status %s after suspend", in.Status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if in, ok := st.Instance(id); ok && in.Status == tenancy.InstanceSuspended {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node never saw the suspension")
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, _ = c.post(base+"/status", url.Values{"status": {"running"}})
	if in, _ := e.svc.Instance(ctx, orgID, id); res.StatusCode != http.StatusOK || in.Status != tenancy.InstanceRunning {
		t.Errorf("resume: %d %s", res.StatusCode, in.Status)
	}
	if res, _ := c.post(base+"/status", url.Values{"status": {"deleting"}}); res.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("bad status: %d", res.StatusCode)
	}

	// Protection on: delete refused, with a clear message.
	c.get(base)
	res, doc = c.post(base+"/protection", url.Values{"protection": {"on"}})
	if res.StatusCode != http.StatusOK || !strings.Contains(doc.Find(`[data-testid="deletion-protection"]`).Text(), "on") {
		t.Errorf("protection on: %d", res.StatusCode)
	}
	res, doc = c.post(base+"/delete", nil)
	if res.StatusCode != http.StatusConflict || !strings.Contains(doc.Find(`[data-testid="page-error"]`).Text(), "Deletion protection is on") {
		t.Errorf("delete while protected: %d %q", res.StatusCode, doc.Find(`[data-testid="page-error"]`).Text())
	}
	if _, err := e.svc.Instance(ctx, orgID, id); err != nil {
		t.Fatalf("protected instance gone: %v", err)
	}
	c.get(base)
	c.post(base+"/protection", url.Values{"protection": {"off"}})
	// Without the typed name (or with a wrong one) nothing is deleted.
	for _, typed := range []url.Values{nil, {"confirm_name": {"not-the-name"}}} {
		res, doc = c.post(base+"/delete", typed)
		if res.StatusCode != http.StatusOK || !strings.Contains(doc.Find(`[data-testid="flash"]`).Text(), "Nothing was deleted") {
			t.Errorf("delete without the name: %d %q", res.StatusCode, doc.Find(`[data-testid="flash"]`).Text())
		}
		if _, err := e.svc.Instance(ctx, orgID, id); err != nil {
			t.Fatalf("instance deleted without its name typed: %v", err)
		}
		c.get(base)
	}
	in, _ := e.svc.Instance(ctx, orgID, id)
	res, doc = c.post(base+"/delete", url.Values{"confirm_name": {in.Name}})
	if res.StatusCode != http.StatusOK || res.Request.URL.Path != "/orgs/"+orgID+"/instances" || doc.Find(`[data-testid="instance-home"]`).Length() != 0 {
		t.Errorf("delete: %d at %s", res.StatusCode, res.Request.URL)
	}
	if _, err := e.svc.Instance(ctx, orgID, id); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("deleted instance: %v", err)
	}
	if res, _ := c.get(base); res.StatusCode != http.StatusNotFound {
		t.Errorf("deleted instance's page: %d", res.StatusCode)
	}
}

// TestInstanceViewerOtherOrgAndCSRF: a viewer sees the instance pages with
// no write controls and is refused every write (403, nothing changed);
// another org's member gets 404 for the instance; posts without the CSRF
// token are refused.
func TestInstanceViewerOtherOrgAndCSRF(t *testing.T) {
	e := newEnv(t)
	withNode(t, e)
	ctx := context.Background()
	owner := e.client(t)
	orgID := owner.signup("owner@example.com", "Acme")
	id := owner.createInstance(orgID, "home")
	base := "/orgs/" + orgID + "/instances/" + id
	owner.get(base + "/credentials")
	owner.post(base+"/credentials", url.Values{"username": {"cam"}})
	creds, _, _ := e.svc.ListCredentials(ctx, orgID, id, tenancy.Page{})
	rules, _, _ := e.svc.ListACLRules(ctx, orgID, id, tenancy.Page{})
	if len(creds) != 1 || len(rules) != 1 {
		t.Fatalf("setup: %d creds %d rules", len(creds), len(rules))
	}
	quotasBefore, _, _ := e.svc.InstanceQuotas(ctx, orgID, id)
	viewer := e.joinAs(t, owner, orgID, "viewer@example.com", tenancy.RoleViewer)

	writeControls := `form[method="post"]:not(.logout)`
	pages := []string{"/orgs/" + orgID + "/", "/orgs/" + orgID + "/instances", base, base + "/credentials", base + "/acl", base + "/quotas"}
	for _, page := range pages {
		res, doc := viewer.get(page)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("viewer GET %s: %d", page, res.StatusCode)
		}
		if n := doc.Find(writeControls).Length(); n != 0 {
			t.Errorf("viewer sees %d write form(s) on %s", n, page)
		}
		if n := doc.Find(`button.danger, [data-testid="create-first-instance"]`).Length(); n != 0 {
			t.Errorf("viewer sees %d write buttons on %s", n, page)
		}
	}
	_, doc := viewer.get(base + "/quotas")
	if doc.Find(`[data-testid="quotas"] tbody tr`).Length() != len(quotaKeys()) {
		t.Error("viewer does not see the quotas")
	}
	_, doc = viewer.get(base + "/credentials")
	if doc.Find(`[data-testid="cred-cam"]`).Length() != 1 {
		t.Error("viewer does not see the credential")
	}
	// The owner does see them (the check above is not vacuous).
	for _, page := range pages[1:] {
		if _, doc := owner.get(page); doc.Find(writeControls).Length() == 0 {
			t.Errorf("owner sees no write form on %s", page)
		}
	}

	writes := []struct {
		path string
		vals url.Values
	}{
		{"/orgs/" + orgID + "/instances", url.Values{"name": {"sneaky"}}},
		{base + "/status", url.Values{"status": {"suspended"}}},
		{base + "/protection", url.Values{"protection": {"on"}}},
		{base + "/delete", nil},
		{base + "/credentials", url.Values{"username": {"sneaky"}}},
		{base + "/credentials/bulk", url.Values{"csv": {"sneaky"}}},
		{base + "/credentials/" + creds[0].ID + "/enabled", url.Values{"enabled": {"false"}}},
		{base + "/credentials/" + creds[0].ID + "/rotate", nil},
		{base + "/credentials/" + creds[0].ID + "/delete", nil},
		{base + "/acl", url.Values{"effect": {"deny"}, "action": {"all"}, "filter": {"#"}}},
		{base + "/acl/" + rules[0].ID + "/delete", nil},
		{base + "/quotas", url.Values{"max_connections": {"1"}}},
	}
	viewer.get(base)
	for _, w := range writes {
		res, doc := viewer.post(w.path, w.vals)
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("viewer POST %s: %d, want 403", w.path, res.StatusCode)
		} else if doc.Find(`[data-testid="page-error"]`).Length() != 1 {
			t.Errorf("viewer POST %s: no error message", w.path)
		}
	}
	// Delete needs admin: an admin may, a writer-only key could not (the
	// console has no such role, so only the viewer case applies here).
	assertUnchanged := func(when string) {
		t.Helper()
		list, _, _ := e.svc.ListInstances(ctx, orgID, tenancy.Page{})
		cs, _, _ := e.svc.ListCredentials(ctx, orgID, id, tenancy.Page{})
		rs, _, _ := e.svc.ListACLRules(ctx, orgID, id, tenancy.Page{})
		q, _, _ := e.svc.InstanceQuotas(ctx, orgID, id)
		if len(list) != 1 || list[0].Status == tenancy.InstanceSuspended || list[0].DeletionProtection ||
			len(cs) != 1 || !cs[0].Enabled || !cs[0].UpdatedAt.Equal(creds[0].UpdatedAt) || len(rs) != 1 || q != quotasBefore {
			t.Errorf("%s changed something: %+v %+v %+v %+v", when, list, cs, rs, q)
		}
	}
	assertUnchanged("a viewer's refused writes")

	// Another org's member: the instance does not exist for them, even
	// under their own org's path.
	stranger := e.client(t)
	otherOrg := stranger.signup("stranger@example.com", "Other")
	for _, path := range []string{"/orgs/" + otherOrg + "/instances/" + id, "/orgs/" + otherOrg + "/instances/" + id + "/credentials",
		"/orgs/" + otherOrg + "/instances/" + id + "/acl", "/orgs/" + otherOrg + "/instances/" + id + "/quotas", base} {
		if res, _ := stranger.get(path); res.StatusCode != http.StatusNotFound {
			t.Errorf("stranger GET %s: %d, want 404", path, res.StatusCode)
		}
	}
	stranger.get("/orgs/" + otherOrg + "/instances")
	for _, path := range []string{"/orgs/" + otherOrg + "/instances/" + id + "/delete", "/orgs/" + otherOrg + "/instances/" + id + "/credentials",
		"/orgs/" + otherOrg + "/instances/" + id + "/credentials/" + creds[0].ID + "/rotate", "/orgs/" + otherOrg + "/instances/" + id + "/acl/" + rules[0].ID + "/delete"} {
		if res, _ := stranger.post(path, url.Values{"username": {"x"}}); res.StatusCode != http.StatusNotFound {
			t.Errorf("stranger POST %s: %d, want 404", path, res.StatusCode)
		}
	}
	assertUnchanged("a stranger's requests")

	// No CSRF token (or a forged one): refused before anything happens.
	owner.get(base)
	for _, w := range writes {
		if res, _ := owner.postRaw(w.path, w.vals); res.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without token: %d, want 403", w.path, res.StatusCode)
		}
	}
	assertUnchanged("token-less posts")
	// Every form on the instance pages carries the token.
	for _, page := range pages {
		_, doc := owner.get(page)
		doc.Find(`form[method="post"]`).Each(func(_ int, f *goquery.Selection) {
			if f.Find(`input[name="csrf_token"]`).Length() != 1 {
				t.Errorf("%s: form %s has no csrf token", page, f.AttrOr("action", "?"))
			}
		})
	}
}

func TestInstanceDashboard(t *testing.T) {
	e := newEnv(t)
	withNode(t, e)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	meter := billing.NewMeter(e.db.Pool, e.svc, log)
	e.srv.Config.Handler = New(Deps{Tenancy: e.svc, Billing: e.bill, Meter: meter, Log: log})
	ctx := context.Background()
	c := e.client(t)
	orgID := c.signup("dev@example.com", "Dev Co")
	id := c.createInstance(orgID, "home")

	// Two reports of the last minute: 7 connections, 300 messages in.
	now := time.Now().UTC()
	for i, at := range []time.Time{now.Add(-70 * time.Second), now.Add(-40 * time.Second)} {
		from := at.Truncate(10 * time.Second)
		if _, err := meter.Ingest(ctx, billing.UsageReport{NodeID: "test-node", Seq: int64(i + 1), From: from, To: from.Add(10 * time.Second),
			Instances: []billing.InstanceUsage{{InstanceID: id, MessagesIn: 300, MessagesOut: 600, BytesIn: 3000, Connections: 7}}}); err != nil {
			t.Fatal(err)
		}
	}
	base := "/orgs/" + orgID + "/instances/" + id
	_, doc := c.get(base)
	for _, ch := range []string{"connections", "messages", "bytes"} {
		if doc.Find(`[data-testid="dashboard"] [data-testid="chart-`+ch+`"] svg path.line`).Length() == 0 {
			t.Errorf("chart %s missing", ch)
		}
	}
	if got := doc.Find(`[data-testid="dashboard"]`).AttrOr("data-refresh", ""); got != base+"/metrics?range=1h" {
		t.Errorf("dashboard refreshes from %q", got)
	}
	if doc.Find(`.ranges a[aria-current="true"]`).Text() != "1h" || doc.Find(`.ranges a`).Length() != 4 {
		t.Error("range links")
	}
	// 15 minutes in 10 s steps: the peak is 600 messages out in 10 s = 60
	// msg/s, the top of the axis.
	_, doc = c.get(base + "?range=15m")
	if doc.Find(`.ranges a[aria-current="true"]`).Text() != "15m" {
		t.Error("15m not current")
	}
	svg := doc.Find(`[data-testid="chart-messages"] svg`)
	if ticks := doc.Find(`[data-testid="chart-messages"] .chart-y span`); !strings.Contains(svg.AttrOr("aria-label", ""), "Messages") || ticks.Last().Text() != "60" {
		t.Errorf("messages chart's axis does not reach 60 msg/s: %q", ticks.Text())
	}

	// The auto-refresh fetches the charts alone.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+base+"/metrics?range=15m", nil)
	req.Header.Set("X-Partial", "1")
	res, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || strings.Contains(string(body), "<html") || !strings.Contains(string(body), `data-testid="chart-bytes"`) {
		t.Errorf("partial: %d %.200s", res.StatusCode, body)
	}
	// Without X-Partial it is the page.
	if res, _ := c.get(base + "/metrics?range=7d"); res.Request.URL.RequestURI() != base+"?range=7d" {
		t.Errorf("full metrics request went to %s", res.Request.URL)
	}
	// Another org's instance has no metrics for them.
	d := e.client(t)
	other := d.signup("d@example.com", "D")
	req, _ = http.NewRequest(http.MethodGet, e.srv.URL+"/orgs/"+other+"/instances/"+id+"/metrics", nil)
	req.Header.Set("X-Partial", "1")
	if res, err := d.http.Do(req); err != nil || res.StatusCode != http.StatusNotFound {
		t.Errorf("foreign metrics: %v %v", res.StatusCode, err)
	}
}

func TestDashboardChartsRates(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	pts := []billing.Point{{Time: t0, Connections: 7, MessagesIn: 300, MessagesOut: 600, BytesIn: 3000, BytesOut: 30,
		AuthFailures: 3, Drops: map[string]int64{"quota": 60, "too_large": 6}},
		{Time: t0.Add(30 * time.Second), Connections: 2}}
	charts := dashboardCharts(pts, 30*time.Second)
	if len(charts) != 4 {
		t.Fatalf("%d charts", len(charts))
	}
	want := map[string][][]float64{
		"connections": {{7, 2}},
		"messages":    {{10, 0}, {20, 0}},
		"bytes":       {{100, 0}, {1, 0}},
		// auth failures, then acl, quota, queue_full, too_large, expired
		"drops": {{0.1, 0}, {0, 0}, {2, 0}, {0, 0}, {0.2, 0}, {0, 0}},
	}
	for _, ch := range charts {
		for i, s := range ch.Series {
			w := want[ch.ID][i]
			if len(s.Values) != 2 || s.Values[0] != w[0] || s.Values[1] != w[1] || len(ch.Times) != 2 {
				t.Errorf("%s/%s: %v, want %v", ch.ID, s.Name, s.Values, w)
			}
		}
	}
}

// TestInstancePagesRender renders each instance page alone (labels on every
// control, CSRF token in every form, own assets only) for a writer and a
// viewer.
func TestInstancePagesRender(t *testing.T) {
	in := tenancy.Instance{ID: "i-abc", OrgID: "o-1", Name: "home", Plan: "free", Status: tenancy.InstanceRunning,
		Endpoints: map[string]string{"mqtts": "mqtts://mq.example.com:8883", "wss": "wss://mq.example.com/mqtt"}, CreatedAt: testNow}
	creds := []tenancy.Credential{{ID: "c-1", InstanceID: "i-abc", Username: "cam", Enabled: false, CreatedAt: testNow}}
	rules := []tenancy.ACLRule{{ID: "r-1", Effect: "allow", Action: "all", Filter: "#"}, {ID: "r-2", Effect: "deny", Action: "publish", Filter: "x/#", CredentialID: "c-1"}}
	dash := &Dashboard{Range: "1h", Charts: dashboardCharts([]billing.Point{{Time: testNow, Connections: 3}}, 30*time.Second)}
	for _, role := range []tenancy.Role{tenancy.RoleOwner, tenancy.RoleViewer} {
		writer := role != tenancy.RoleViewer
		p := testPage(role, "instances")
		docs := map[string]*goquery.Document{
			"list":        renderDoc(t, InstancesPage(p, []tenancy.Instance{in}, Form{})),
			"detail":      renderDoc(t, InstancePage(p, InstanceView{Inst: in, Snippets: snippetsFor(in, "<username>", "<password>"), Dashboard: dash})),
			"credentials": renderDoc(t, CredentialsPage(p, CredentialsView{Inst: in, Creds: creds, Form: Form{}, Bulk: Form{}})),
			"acl":         renderDoc(t, ACLPage(p, ACLView{Inst: in, Rules: rules, Creds: map[string]string{"c-1": "cam"}, List: creds, Form: Form{}})),
			"quotas":      renderDoc(t, QuotasPage(p, QuotasView{Inst: in, Fields: []QuotaField{{Key: "max_connections", Label: "Connections", Ceil: 100}}, Form: Form{Values: map[string]string{"max_connections": "10"}}})),
		}
		for name, doc := range docs {
			if got := doc.Find(`form[method="post"]:not(.logout)`).Length() > 0; got != writer {
				t.Errorf("%s as %s: write forms shown = %v", name, role, got)
			}
		}
		d := docs["detail"]
		if !strings.Contains(d.Find(`#s-mosquitto`).Text(), "-h mq.example.com -p 8883 --capath /etc/ssl/certs") ||
			!strings.Contains(d.Find(`#s-go`).Text(), `"ssl://mq.example.com:8883"`) || !strings.Contains(d.Find(`#s-python`).Text(), "client.tls_set()") ||
			!strings.Contains(d.Find(`#s-js`).Text(), `"wss://mq.example.com/mqtt"`) {
			t.Error("TLS endpoints not used in the snippets")
		}
		if d.Find(`[data-testid="dashboard"] figure.chart`).Length() != 4 {
			t.Error("dashboard charts missing")
		}
		if !strings.Contains(docs["acl"].Find(`[data-testid="rule-r-2"]`).Text(), "cam") || docs["acl"].Find(`[data-testid="default-rule"]`).Length() != 1 {
			t.Error("acl rows")
		}
		if docs["credentials"].Find(`[data-testid="cred-cam"] [data-testid="cred-state"]`).Text() != "disabled" {
			t.Error("credential state")
		}
	}
}

// TestDeletionProtectionDefaultInConsole: an instance created in the console
// on Free starts unprotected (the page says so, and offers the typed-name
// delete); on a paid plan it starts protected: the page offers no delete,
// says why, and a forced delete is refused (409) with the way out.
func TestDeletionProtectionDefaultInConsole(t *testing.T) {
	e := newEnv(t)
	withNode(t, e)
	ctx := context.Background()
	c := e.client(t)
	orgID := c.signup("plans@example.com", "Plans Co")
	free := c.createInstance(orgID, "free-one")
	_, doc := c.get("/orgs/" + orgID + "/instances/" + free)
	if got := doc.Find(`[data-testid="deletion-protection"] strong`).Text(); got != "off" {
		t.Errorf("Free instance protection %q, want off", got)
	}
	if got := doc.Find(`[data-testid="protection-default"]`).Text(); !strings.Contains(got, "Free start unprotected") || !strings.Contains(got, "paid plans protection starts on") {
		t.Errorf("default note %q", got)
	}
	if doc.Find(`[data-testid="delete-form"]`).Length() != 1 {
		t.Error("no delete form on an unprotected instance")
	}
	c.get("/orgs/" + orgID + "/billing")
	if res, _ := c.post("/orgs/"+orgID+"/billing/plan", url.Values{"plan": {"pro"}}); res.StatusCode != http.StatusOK {
		t.Fatalf("upgrade: %d", res.StatusCode)
	}
	paid := c.createInstance(orgID, "paid-one")
	base := "/orgs/" + orgID + "/instances/" + paid
	_, doc = c.get(base)
	if got := doc.Find(`[data-testid="deletion-protection"] strong`).Text(); got != "on" {
		t.Errorf("paid-plan instance protection %q, want on", got)
	}
	if doc.Find(`[data-testid="delete-form"]`).Length() != 0 || doc.Find(`[data-testid="delete-protected"]`).Length() != 1 {
		t.Error("a protected instance offers a delete form, or does not say why not")
	}
	res, doc := c.post(base+"/delete", url.Values{"confirm_name": {"paid-one"}})
	if res.StatusCode != http.StatusConflict || !strings.Contains(doc.Find(`[data-testid="page-error"]`).Text(), "turn it off first") {
		t.Errorf("forced delete of a protected instance: %d %q", res.StatusCode, doc.Find(`[data-testid="page-error"]`).Text())
	}
	if _, err := e.svc.Instance(ctx, orgID, paid); err != nil {
		t.Fatalf("the protected instance went: %v", err)
	}
}
