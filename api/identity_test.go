package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

// TestSpecLoadsAndCoversEveryRoute: openapi.yaml loads and validates with no
// errors, and every /v1 route the router serves is an operation in it.
func TestSpecLoadsAndCoversEveryRoute(t *testing.T) {
	doc, _ := loadSpec(t)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	e := newEnv(t)
	n := 0
	err := chi.Walk(e.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !strings.HasPrefix(route, "/v1/") {
			return nil
		}
		n++
		p := strings.TrimSuffix(route, "/")
		item := doc.Paths.Find(p)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("%s %s is served but not in openapi.yaml", method, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ops := 0
	for _, item := range doc.Paths.Map() {
		ops += len(item.Operations())
	}
	if n != ops {
		t.Errorf("router serves %d /v1 routes, spec has %d operations", n, ops)
	}
}

// TestSignupLoginRefreshLogout walks the whole session life cycle and shows
// that replaying a spent refresh token revokes its family.
func TestSignupLoginRefreshLogout(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "  Alice@Example.com ", "Alice Inc")
	if s.User.Email != "alice@example.com" || s.Org == nil || s.Org.Role != "owner" || s.Org.Name != "Alice Inc" {
		t.Fatalf("signup session %+v", s)
	}
	if s.AccessToken == "" || s.RefreshToken == "" || s.ExpiresIn != 900 || s.TokenType != "Bearer" {
		t.Fatalf("signup tokens %+v", s)
	}

	t.Run("email is unique after normalisation", func(t *testing.T) {
		e.do(t, req{method: "POST", path: "/v1/signup", body: map[string]string{"email": "ALICE@example.com", "password": password, "org_name": "x"}}).
			problem(t, http.StatusConflict, "conflict")
	})
	t.Run("short password is a field error", func(t *testing.T) {
		p := e.do(t, req{method: "POST", path: "/v1/signup", invalidRequest: true,
			body: map[string]string{"email": "bob@example.com", "password": "short", "org_name": "x"}}).
			problem(t, http.StatusBadRequest, "validation-error")
		if len(p.Errors) != 1 || p.Errors[0].Field != "password" {
			t.Fatalf("errors %+v", p.Errors)
		}
	})
	t.Run("email verification through the mailer", func(t *testing.T) {
		tok := e.mailedToken(t, "alice@example.com")
		e.do(t, req{method: "POST", path: "/v1/auth/verify-email", body: map[string]string{"token": tok}}).expect(t, http.StatusNoContent)
		var me struct {
			EmailVerified bool `json:"email_verified"`
		}
		e.do(t, req{method: "GET", path: "/v1/me", token: s.AccessToken}).expect(t, http.StatusOK).decode(t, &me)
		if !me.EmailVerified {
			t.Fatal("email not verified")
		}
		e.do(t, req{method: "POST", path: "/v1/auth/verify-email", body: map[string]string{"token": tok}}).
			problem(t, http.StatusUnauthorized, "unauthenticated")
	})

	var login session
	t.Run("login", func(t *testing.T) {
		e.do(t, req{method: "POST", path: "/v1/auth/login", body: map[string]string{"email": "alice@example.com", "password": "wrong password!"}}).
			problem(t, http.StatusUnauthorized, "unauthenticated")
		e.do(t, req{method: "POST", path: "/v1/auth/login", body: map[string]string{"email": "alice@example.com", "password": password}}).
			expect(t, http.StatusOK).decode(t, &login)
		var me struct {
			ID string `json:"id"`
		}
		e.do(t, req{method: "GET", path: "/v1/me", token: login.AccessToken}).expect(t, http.StatusOK).decode(t, &me)
		if me.ID != s.User.ID {
			t.Fatalf("me = %s, want %s", me.ID, s.User.ID)
		}
	})

	t.Run("refresh rotates; reuse of the old token revokes the family", func(t *testing.T) {
		var r1 session
		e.do(t, req{method: "POST", path: "/v1/auth/refresh", body: map[string]string{"refresh_token": login.RefreshToken}}).
			expect(t, http.StatusOK).decode(t, &r1)
		if r1.RefreshToken == login.RefreshToken || r1.AccessToken == "" {
			t.Fatal("refresh did not rotate")
		}
		e.do(t, req{method: "GET", path: "/v1/me", token: r1.AccessToken}).expect(t, http.StatusOK)
		// Replay the spent token: refused, and the family (r1 too) is revoked.
		e.do(t, req{method: "POST", path: "/v1/auth/refresh", body: map[string]string{"refresh_token": login.RefreshToken}}).
			problem(t, http.StatusUnauthorized, "unauthenticated")
		e.do(t, req{method: "POST", path: "/v1/auth/refresh", body: map[string]string{"refresh_token": r1.RefreshToken}}).
			problem(t, http.StatusUnauthorized, "unauthenticated")
		// Another login's family (the sign-up session) is untouched.
		e.do(t, req{method: "POST", path: "/v1/auth/refresh", body: map[string]string{"refresh_token": s.RefreshToken}}).expect(t, http.StatusOK)
	})

	t.Run("logout revokes the session", func(t *testing.T) {
		var l session
		e.do(t, req{method: "POST", path: "/v1/auth/login", body: map[string]string{"email": "alice@example.com", "password": password}}).
			expect(t, http.StatusOK).decode(t, &l)
		e.do(t, req{method: "POST", path: "/v1/auth/logout", body: map[string]string{"refresh_token": l.RefreshToken}}).expect(t, http.StatusNoContent)
		e.do(t, req{method: "POST", path: "/v1/auth/refresh", body: map[string]string{"refresh_token": l.RefreshToken}}).
			problem(t, http.StatusUnauthorized, "unauthenticated")
	})

	t.Run("refresh tokens are stored hashed", func(t *testing.T) {
		var n int
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM refresh_tokens WHERE position($1::bytea in token_hash) > 0`,
			[]byte(login.RefreshToken)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatal("a refresh token is stored in plaintext")
		}
	})
}

// TestPasswordReset: the mailed token sets a new password once and signs
// out existing sessions; unknown emails get the same 202.
func TestPasswordReset(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "carol@example.com", "Carol")
	e.do(t, req{method: "POST", path: "/v1/auth/password-reset", body: map[string]string{"email": "nobody@example.com"}}).expect(t, http.StatusAccepted)
	if _, ok := e.outbox.Last("nobody@example.com"); ok {
		t.Fatal("mailed an unknown address")
	}
	e.do(t, req{method: "POST", path: "/v1/auth/password-reset", body: map[string]string{"email": "carol@example.com"}}).expect(t, http.StatusAccepted)
	tok := e.mailedToken(t, "carol@example.com")
	e.do(t, req{method: "POST", path: "/v1/auth/password-reset/confirm", body: map[string]string{"token": tok, "password": "a brand new password"}}).
		expect(t, http.StatusNoContent)
	e.do(t, req{method: "POST", path: "/v1/auth/password-reset/confirm", body: map[string]string{"token": tok, "password": "yet another password"}}).
		problem(t, http.StatusUnauthorized, "unauthenticated")
	e.do(t, req{method: "POST", path: "/v1/auth/refresh", body: map[string]string{"refresh_token": s.RefreshToken}}).
		problem(t, http.StatusUnauthorized, "unauthenticated")
	e.do(t, req{method: "POST", path: "/v1/auth/login", body: map[string]string{"email": "carol@example.com", "password": password}}).
		problem(t, http.StatusUnauthorized, "unauthenticated")
	e.do(t, req{method: "POST", path: "/v1/auth/login", body: map[string]string{"email": "carol@example.com", "password": "a brand new password"}}).
		expect(t, http.StatusOK)
}
