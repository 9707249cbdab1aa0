package main_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// TestPublicURL: --public-url is printed at start-up with the console
// address, every emailed link (verification, password reset, invitation)
// points at it, and console cookies are Secure because it is https. A
// malformed --public-url is a usage error.
func TestPublicURL(t *testing.T) {
	const public = "https://aerie.example.com:8443"
	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t), "AERIE_PUBLIC_URL="+public+"/"),
		append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	started := ""
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, "aerie started") {
			started = l
		}
	}
	if !strings.Contains(started, `"console":"`+public+`/"`) || !strings.Contains(started, `"public_url":"`+public+`"`) {
		t.Errorf("start-up line does not name the public URL: %s", started)
	}

	c, org := signup(t, base, "links@example.com")
	api{base: base}.call(t, "POST", "/v1/auth/password-reset", map[string]any{"email": "links@example.com"}, 202, nil)
	c.call(t, "POST", "/v1/orgs/"+org+"/invitations", map[string]any{"email": "friend@example.com", "role": "viewer"}, 201, nil)
	deadline := time.Now().Add(5 * time.Second)
	for _, path := range []string{"/verify-email?token=", "/reset-password?token=", "/invitations/accept?token="} {
		for !strings.Contains(p.stderr.String(), public+path) {
			if time.Now().After(deadline) {
				t.Fatalf("no mail links to %s%s", public, path)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if strings.Contains(p.stderr.String(), "localhost:8080") {
		t.Errorf("a link still points at localhost:8080")
	}

	res, err := http.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if len(res.Cookies()) == 0 {
		t.Fatal("GET /login set no cookie")
	}
	for _, ck := range res.Cookies() {
		if !ck.Secure {
			t.Errorf("cookie %s is not Secure under an https public URL", ck.Name)
		}
	}

	bad := start(t, cleanEnv(), "serve", "--data-dir", newDataDir(t), "--public-url", "ftp://x")
	if code := bad.wait(t, 30*time.Second); code != 2 {
		t.Errorf("--public-url ftp://x exited %d, want 2 (usage)", code)
	}
}
