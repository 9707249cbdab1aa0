package console

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/internal/mailer"
	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/internal/ratelimit"
	"github.com/aeriemq/aerie/tenancy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// env is a console over real services and a fresh database, served by a
// real HTTP server.
type env struct {
	svc  *tenancy.Service
	bill *billing.Service
	out  *mailer.Outbox
	db   *pgtest.DB
	srv  *httptest.Server
}

type envOption func(*Deps)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	db := pgtest.New(t)
	out := mailer.NewOutbox()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &env{db: db, out: out}
	e.srv = httptest.NewUnstartedServer(nil)
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	e.svc = tenancy.NewService(db.Pool, log, tenancy.WithMailer(out), tenancy.WithBaseURL(e.srv.URL),
		tenancy.WithPasswordParams(tenancy.PasswordParams{Memory: 1024, Iterations: 1, Parallelism: 1}), tenancy.WithPlans(billing.NewPlans(db.Pool)))
	e.bill = billing.NewService(db.Pool, nil, e.svc, log)
	d := Deps{Tenancy: e.svc, Billing: e.bill, Log: log,
		AbuseLimits: ratelimit.AbuseLimits{SignupsPerAddrBurst: 1000, SignupsPerAddrEvery: 1, InvitesPerOrgBurst: 1000, InvitesPerOrgEvery: 1, ResetsPerAddrBurst: 1000, ResetsPerAddrEvery: 1}}
	for _, o := range opts {
		o(&d)
	}
	e.srv.Config.Handler = New(d)
	return e
}

// client is one browser: a cookie jar, and redirects followed.
type client struct {
	t    *testing.T
	e    *env
	http *http.Client
	last *goquery.Document
}

func (e *env) client(t *testing.T) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, e: e, http: &http.Client{Jar: jar}}
}

// get fetches path and parses the page.
func (c *client) get(path string) (*http.Response, *goquery.Document) {
	c.t.Helper()
	res, err := c.http.Get(c.e.srv.URL + path)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	return c.parse(res)
}

func (c *client) parse(res *http.Response) (*http.Response, *goquery.Document) {
	c.t.Helper()
	defer res.Body.Close()
	doc, err := goquery.NewDocumentFromReader(res.Body)
	if err != nil {
		c.t.Fatalf("parse %s: %v", res.Request.URL, err)
	}
	c.last = doc
	return res, doc
}

// csrf is the form token of the last page (fetching the login page first
// when none was loaded yet).
func (c *client) csrf() string {
	c.t.Helper()
	if c.last == nil {
		c.get("/login")
	}
	v, ok := c.last.Find(`input[name="csrf_token"]`).First().Attr("value")
	if !ok || v == "" {
		c.t.Fatal("no csrf token on the last page")
	}
	return v
}

// post submits a form with the CSRF token of the last page.
func (c *client) post(path string, vals url.Values) (*http.Response, *goquery.Document) {
	c.t.Helper()
	if vals == nil {
		vals = url.Values{}
	}
	vals.Set("csrf_token", c.csrf())
	return c.postRaw(path, vals)
}

// postRaw submits a form as is (no token added).
func (c *client) postRaw(path string, vals url.Values) (*http.Response, *goquery.Document) {
	c.t.Helper()
	res, err := c.http.PostForm(c.e.srv.URL+path, vals)
	if err != nil {
		c.t.Fatalf("POST %s: %v", path, err)
	}
	return c.parse(res)
}

// signup signs a new user up through the console and returns their org ID.
func (c *client) signup(email, org string) string {
	c.t.Helper()
	c.get("/signup")
	res, doc := c.post("/signup", url.Values{"email": {email}, "password": {"correct-horse-1"}, "org_name": {org}})
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Request.URL.Path, "/orgs/") {
		c.t.Fatalf("signup %s: %d at %s: %s", email, res.StatusCode, res.Request.URL, doc.Find("main").Text())
	}
	return strings.Split(res.Request.URL.Path, "/")[2]
}

func (c *client) cookie(name string) *http.Cookie {
	u, _ := url.Parse(c.e.srv.URL)
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}

func (c *client) setCookie(name, value string) {
	u, _ := url.Parse(c.e.srv.URL)
	c.http.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// invite has owner invite email with role through the console, and returns
// the invitation token from the mail.
func (e *env) inviteToken(t *testing.T, owner *client, orgID, email string, role tenancy.Role) string {
	t.Helper()
	owner.get("/orgs/" + orgID + "/members")
	res, doc := owner.post("/orgs/"+orgID+"/invitations", url.Values{"email": {email}, "role": {string(role)}})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("invite: %d %s", res.StatusCode, doc.Find("main").Text())
	}
	m, ok := e.out.Last(email)
	if !ok {
		t.Fatal("no invitation mail")
	}
	return linkToken(t, m.Body)
}

// linkToken extracts ?token= from the first link of a mail body.
func linkToken(t *testing.T, body string) string {
	t.Helper()
	i := strings.Index(body, "http")
	if i < 0 {
		t.Fatalf("no link in %q", body)
	}
	u, err := url.Parse(strings.Fields(body[i:])[0])
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("token")
}

// linkPath is the path and query of the first link of a mail body.
func linkPath(t *testing.T, body string) string {
	t.Helper()
	i := strings.Index(body, "http")
	u, err := url.Parse(strings.Fields(body[i:])[0])
	if err != nil || i < 0 {
		t.Fatalf("no link in %q", body)
	}
	return u.RequestURI()
}

// joinAs signs up a new user and joins orgID with role through an
// invitation, and returns their browser.
func (e *env) joinAs(t *testing.T, owner *client, orgID, email string, role tenancy.Role) *client {
	t.Helper()
	tok := e.inviteToken(t, owner, orgID, email, role)
	c := e.client(t)
	c.signup(email, "Own org of "+email)
	c.get("/invitations/accept?token=" + url.QueryEscape(tok))
	res, doc := c.post("/invitations/accept", url.Values{"token": {tok}})
	if res.StatusCode != http.StatusOK || res.Request.URL.Path != "/orgs/"+orgID+"/" {
		t.Fatalf("accept: %d at %s: %s", res.StatusCode, res.Request.URL, doc.Find("main").Text())
	}
	return c
}
