package console

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCookiesSecure: console cookies carry Secure when the public URL is
// https (Deps.Secure), when the request came over TLS, and when a proxy
// says it did (X-Forwarded-Proto: https); never on plain HTTP otherwise.
func TestCookiesSecure(t *testing.T) {
	e := newEnv(t)
	plain := New(Deps{Tenancy: e.svc, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	public := New(Deps{Tenancy: e.svc, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Secure: true})
	for _, c := range []struct {
		name   string
		h      http.Handler
		tls    bool
		proto  string
		secure bool
	}{
		{"http public URL, plain request", plain, false, "", false},
		{"http public URL, TLS request", plain, true, "", true},
		{"http public URL, proxied TLS", plain, false, "https", true},
		{"https public URL, plain request", public, false, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/login", nil)
			if c.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if c.proto != "" {
				r.Header.Set("X-Forwarded-Proto", c.proto)
			}
			w := httptest.NewRecorder()
			c.h.ServeHTTP(w, r)
			cookies := w.Result().Header["Set-Cookie"]
			if len(cookies) == 0 {
				t.Fatalf("GET /login set no cookie (%d)", w.Code)
			}
			for _, ck := range cookies {
				if got := strings.Contains(ck, "; Secure"); got != c.secure {
					t.Errorf("cookie %q: Secure %v, want %v", strings.SplitN(ck, "=", 2)[0], got, c.secure)
				}
			}
		})
	}
}
