package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
)

// csrfCookie holds a random per-browser value; forms carry an HMAC of it in
// the csrfField field. An attacker's page can neither read the cookie nor
// compute the HMAC, so it cannot forge a form post.
const (
	csrfCookie = "aerie_csrf"
	csrfField  = "csrf_token"
	csrfHeader = "X-CSRF-Token"
)

// CSRF protects the console's state-changing requests.
type CSRF struct {
	key    []byte
	secure bool
	origin *http.CrossOriginProtection
}

// NewCSRF returns a CSRF guard keyed by key (≥ 32 random bytes). secure
// marks the cookie Secure (when the console is served over TLS).
func NewCSRF(key []byte, secure bool) *CSRF {
	return &CSRF{key: key, secure: secure, origin: http.NewCrossOriginProtection()}
}

// Token returns the form token for r, setting the browser cookie on w if r
// has none yet.
func (c *CSRF) Token(w http.ResponseWriter, r *http.Request) string {
	v := ""
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) >= 32 {
		v = ck.Value
	} else {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		v = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", HttpOnly: true,
			Secure: c.secure, SameSite: http.SameSiteLaxMode})
	}
	return c.sign(v)
}

func (c *CSRF) sign(v string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(v))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Valid reports whether r carries a token matching its cookie.
func (c *CSRF) Valid(r *http.Request) bool {
	ck, err := r.Cookie(csrfCookie)
	if err != nil || len(ck.Value) < 32 {
		return false
	}
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	want := c.sign(ck.Value)
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Middleware refuses unsafe requests (POST, PUT, PATCH, DELETE) that are
// cross-origin or lack a valid token, with 403.
func (c *CSRF) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		if err := c.origin.Check(r); err != nil || !c.Valid(r) {
			http.Error(w, "This form has expired or did not come from Aerie's console. Reload the page and try again.", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
