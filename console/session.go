package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aeriemq/aerie/tenancy"
)

// Session cookies: the access JWT and the refresh token the tenancy service
// issued at login, both HttpOnly and SameSite=Lax (Secure under TLS).
const (
	accessCookie  = "aerie_at"
	refreshCookie = "aerie_rt"
	flashCookie   = "aerie_flash"
	refreshMaxAge = 30 * 24 * time.Hour
)

func (c *Console) cookie(name, value string, maxAge time.Duration) *http.Cookie {
	ck := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode}
	if maxAge < 0 {
		ck.MaxAge = -1
	} else {
		ck.MaxAge = int(maxAge / time.Second)
	}
	return ck
}

func (c *Console) setSession(w http.ResponseWriter, s tenancy.Session) {
	http.SetCookie(w, c.cookie(accessCookie, s.AccessToken, s.ExpiresIn))
	http.SetCookie(w, c.cookie(refreshCookie, s.RefreshToken, refreshMaxAge))
}

func (c *Console) clearSession(w http.ResponseWriter) {
	http.SetCookie(w, c.cookie(accessCookie, "", -1))
	http.SetCookie(w, c.cookie(refreshCookie, "", -1))
}

// session puts the signed-in user in the context: from the access JWT, or,
// when it expired, by rotating the refresh token (tenancy.Service.Refresh)
// and setting the new pair of cookies.
func (c *Console) session(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/static/") {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		uid := ""
		if ck, err := r.Cookie(accessCookie); err == nil && ck.Value != "" {
			uid, _ = c.svc.VerifyAccessToken(ctx, ck.Value)
		}
		if uid == "" {
			if ck, err := r.Cookie(refreshCookie); err == nil && ck.Value != "" {
				s, err := c.refresher.refresh(ctx, ck.Value)
				switch {
				case errors.Is(err, tenancy.ErrUnauthenticated):
					c.clearSession(w) // spent, revoked or expired: sign in again
				case err != nil:
					c.log.WarnContext(ctx, "console: refresh session", "error", err)
				default:
					c.setSession(w, s)
					uid = s.User.ID
				}
			}
		}
		if uid != "" {
			u, err := c.svc.User(ctx, uid)
			if err == nil {
				ctx = context.WithValue(ctx, userKey, &u)
			}
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// requireUser sends anonymous visitors to the login page (and back after).
func (c *Console) requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if userFrom(r.Context()) != nil {
			next.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("X-Partial") != "" {
			http.Error(w, "signed out", http.StatusUnauthorized)
			return
		}
		to := "/login"
		if r.Method == http.MethodGet {
			to += "?next=" + url.QueryEscape(r.URL.RequestURI())
		}
		seeOther(w, r, to)
	})
}

// refresher rotates refresh tokens once per token: when several requests of
// one browser arrive with the same expired access token (auto-refreshing
// charts, parallel tabs), the first rotates and the others get its result
// instead of presenting the spent token again, which the service would treat
// as theft and answer by revoking the whole login.
type refresher struct {
	svc    *tenancy.Service
	mu     sync.Mutex
	recent map[string]refreshed
}

type refreshed struct {
	s  tenancy.Session
	at time.Time
}

const refreshGrace = 30 * time.Second

func newRefresher(svc *tenancy.Service) *refresher {
	return &refresher{svc: svc, recent: map[string]refreshed{}}
}

func (f *refresher) refresh(ctx context.Context, token string) (tenancy.Session, error) {
	sum := sha256.Sum256([]byte(token))
	key := hex.EncodeToString(sum[:])
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for k, v := range f.recent {
		if now.Sub(v.at) > refreshGrace {
			delete(f.recent, k)
		}
	}
	if v, ok := f.recent[key]; ok {
		return v.s, nil
	}
	s, err := f.svc.Refresh(ctx, token)
	if err != nil {
		return tenancy.Session{}, err
	}
	f.recent[key] = refreshed{s: s, at: now}
	return s, nil
}

// setFlash shows msg once, on the next page rendered.
func setFlash(w http.ResponseWriter, msg string, secure bool) {
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: url.QueryEscape(msg), Path: "/", HttpOnly: true,
		Secure: secure, SameSite: http.SameSiteLaxMode, MaxAge: 60})
}

func takeFlash(w http.ResponseWriter, r *http.Request, secure bool) string {
	ck, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: "/", HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	msg, err := url.QueryUnescape(ck.Value)
	if err != nil || len(msg) > 300 {
		return ""
	}
	return msg
}

// safeNext keeps a post-login redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}
